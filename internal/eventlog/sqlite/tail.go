package sqlite

import (
	"sort"
	"sync"

	"github.com/sluicehq/sluice/internal/event"
)

// tail keeps the latest committed events with identities of this handle
// in memory, as the profile consumer needs them (ids, key, time,
// identities and data), so that it folds them without reading and
// parsing their stored JSON again: under load that read was half of the
// consumer's work. It holds every event with identities whose id is above
// from, in id order; what falls out of it (or comes from another handle,
// or a maintenance job that may have deleted events) moves from up, and a
// read below from goes to SQLite.
type tail struct {
	mu    sync.Mutex
	from  event.ID
	evs   []*event.Event // ids above from, ascending
	bytes int            // of their data
	// last is the highest id this handle stored (or the log held when
	// the tail was last reset): a stored id above it is another handle's.
	last event.ID
}

// Bounds of the tail: enough for a consumer a few batches behind.
const (
	tailEvents = 1 << 16
	tailBytes  = 32 << 20
)

// reset empties the tail: everything with identities up to at is read
// from SQLite.
func (t *tail) reset(at event.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.emptyUpTo(at)
}

// emptyUpTo empties the tail and moves from (and last) up to at; t.mu is
// held.
func (t *tail) emptyUpTo(at event.ID) {
	t.from, t.last = max(t.from, at), max(t.last, at)
	clear(t.evs)
	t.evs, t.bytes = t.evs[:0], 0
}

// drop empties the tail up to the last id stored.
func (t *tail) drop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.emptyUpTo(t.last)
}

// sawStored is told the largest stored id at the start of a commit (under
// the write lock): one above what this handle stored was written by
// another handle, whose events the tail does not have.
func (t *tail) sawStored(prev event.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if prev > t.last {
		t.emptyUpTo(prev)
	}
}

// add appends the events with identities of one commit, in id order.
func (t *tail) add(evs []*event.Event, last event.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last = max(t.last, last)
	for _, e := range evs {
		if n := len(t.evs); (n > 0 && e.ID <= t.evs[n-1].ID) || e.ID <= t.from {
			// Not in order (never expected): start over above it.
			t.emptyUpTo(e.ID)
			continue
		}
		t.evs = append(t.evs, e)
		t.bytes += len(e.Data)
	}
	// Drop the oldest half when over a bound: amortised, no ring to wrap.
	if len(t.evs) > tailEvents || t.bytes > tailBytes {
		drop := max(1, len(t.evs)/2) // one event alone past tailBytes goes too
		t.from = t.evs[drop-1].ID
		for _, e := range t.evs[:drop] {
			t.bytes -= len(e.Data)
		}
		n := copy(t.evs, t.evs[drop:])
		clear(t.evs[n:])
		t.evs = t.evs[:n]
	}
}

// after returns the events with identities with after < id <= upTo, at
// most limit of them, and ok true, when the tail holds all of them.
func (t *tail) after(after, upTo event.ID, limit int) ([]*event.Event, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if after < t.from || upTo > t.last {
		return nil, false
	}
	i := sort.Search(len(t.evs), func(i int) bool { return t.evs[i].ID > after })
	j := sort.Search(len(t.evs), func(i int) bool { return t.evs[i].ID > upTo })
	if j-i > limit {
		j = i + limit
	}
	if i >= j {
		return nil, true
	}
	return append([]*event.Event(nil), t.evs[i:j]...), true
}

// tailEvent is what the tail keeps of a stored event: its own copy of the
// fields the profile consumer reads (the caller's event is its own again
// once Append returns).
func tailEvent(e *event.Event, id event.ID) *event.Event {
	c := &event.Event{ID: id, ProjectID: e.ProjectID, Key: e.Key, Time: e.Time}
	c.Identities = append([]event.Identity(nil), e.Identities...)
	// The data as Encode stores it, so that the consumer reads the same
	// from memory as from SQLite (an observation's digest is of it).
	if len(e.Data) == 0 {
		c.Data = []byte("{}")
	} else {
		c.Data = append([]byte(nil), e.Data...)
	}
	return c
}
