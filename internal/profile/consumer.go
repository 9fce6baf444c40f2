package profile

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

// EventReader is the part of the event log the consumer follows.
type EventReader interface {
	Read(ctx context.Context, q eventlog.Query) ([]eventlog.Record, error)
	Head() event.ID
	Changed() <-chan struct{}
}

// peopleLog is a log that keeps the events with identities apart: the
// head of those and a signal for their commits (the SQLite log). The
// consumer then wakes for those alone, and counts itself caught up once
// it has passed the last of them.
type peopleLog interface {
	PeopleHead() event.ID
	PeopleChanged() <-chan struct{}
}

// peopleTail is a log that keeps its latest events with identities in
// memory (the SQLite log): the consumer folds those without reading and
// parsing their stored JSON, and reads the log when memory does not hold
// them all (ok false).
type peopleTail interface {
	PeopleAfter(after, upTo event.ID, limit int) (evs []*event.Event, ok bool)
}

// CursorName is the profile consumer's cursor.
const CursorName = "profiles"

// Consumer follows the log and folds events into profiles.
type Consumer struct {
	Store  *Store
	Log    EventReader
	Logger *slog.Logger
	// Batch caps the events applied per transaction (default 5000; at
	// most eventlog.MaxLimit, what one read of the log returns).
	Batch int
	// Coalesce is how long the consumer lets commits gather after one
	// woke it (default 10ms): under load it then reads once for many
	// commits instead of once per commit.
	Coalesce time.Duration

	applied   prometheus.Counter
	merges    prometheus.Counter
	conflicts prometheus.Counter
	rebuilt   prometheus.Counter
	lag       prometheus.GaugeFunc
	cursor    atomic.Uint64 // for the lag gauge and Applied
	// fromMemory counts the events the log's tail gave (for tests).
	fromMemory atomic.Uint64

	mu      sync.Mutex
	passed  chan struct{} // closed when the cursor moves
	started bool
}

// Register adds the consumer's metrics to reg.
func (c *Consumer) Register(reg prometheus.Registerer) {
	c.applied = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_profiles_events_applied_total", Help: "Events with identities folded into profiles.",
	})
	c.merges = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_profiles_merges_total", Help: "Profiles merged into another because an event linked them.",
	})
	c.conflicts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_profiles_conflicts_total", Help: "Links refused by the merge rule: two values of one strong identity type.",
	})
	c.rebuilt = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_profiles_rebuilt_total", Help: "Profiles rebuilt from their events because an event arrived out of order.",
	})
	c.lag = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_profiles_lag_seconds",
		Help: "How far the profile consumer's cursor is behind the log head (by id time).",
	}, func() float64 {
		head, cur := c.Log.Head(), event.ID(c.cursor.Load())
		if head <= cur || cur == 0 || c.reached(head) {
			return 0
		}
		return float64(head.Millis()-cur.Millis()) / 1000
	})
	reg.MustRegister(c.applied, c.merges, c.conflicts, c.rebuilt, c.lag)
}

// Run follows the log until ctx ends.
//
// Two goroutines share the work: a reader reads the events with
// identities after the last batch it read and observes them (reading
// their identities and data from the stored JSON, building and ordering
// their observations), while the folder folds the batch before into the
// profiles and commits it with the cursor. Under sustained load the
// reading of one batch then overlaps the fold and commit of the last, so
// the consumer has two cores to keep up with ingest, not one.
func (c *Consumer) Run(ctx context.Context) {
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cursor, err := c.Store.Cursor(ctx, CursorName)
	if err != nil {
		logger.Error("read profile cursor", "err", err)
		return
	}
	c.moved(cursor)
	for ctx.Err() == nil {
		var moved bool
		if cursor, moved = c.fold(ctx, logger, cursor); moved {
			// Another node folded these: go on from where it stopped.
			logger.Warn("the profile cursor was moved by another node; going on from it", "after", cursor.String())
			c.moved(cursor)
		}
	}
}

// readBatch is what the reader hands the folder: the observations of the
// events with identities after the last batch, and next, where the cursor
// moves once they are folded.
type readBatch struct {
	next event.ID
	obs  []Observation
	full bool // the read's limit was reached: more may follow
}

// fold folds what the reader it starts reads after cursor, until ctx
// ends or another node moves the stored cursor (moved is then true and
// the cursor returned is that node's).
func (c *Consumer) fold(ctx context.Context, logger *slog.Logger, cursor event.ID) (_ event.ID, moved bool) {
	rctx, cancel := context.WithCancel(ctx)
	batches := make(chan readBatch, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.read(rctx, logger, cursor, batches)
	}()
	defer func() { cancel(); <-done }()
	// stored is the cursor as stored. Past events without identities it
	// moves in memory only, and is stored at most every cursorSaveEvery:
	// a commit of profiles.db for each wake-up that found nothing was most
	// of what an event without identities cost at low rates. Nothing is
	// lost: the events between stored and cursor have no identities, and
	// after a restart the consumer walks past them again in the index of
	// events with identities, which holds none of them.
	stored, savedAt := cursor, time.Now()
	var save <-chan time.Time
	for {
		var b readBatch
		select {
		case <-ctx.Done():
			return cursor, false
		case b = <-batches:
		case <-save:
			save = nil
			b = readBatch{next: cursor}
		}
		if len(b.obs) == 0 && b.next > cursor && time.Since(savedAt) < cursorSaveEvery {
			cursor = b.next
			c.moved(cursor)
			if save == nil {
				save = time.After(cursorSaveEvery - time.Since(savedAt))
			}
			continue
		}
		if b.next <= stored && len(b.obs) == 0 {
			continue
		}
		for backoff := time.Second; ; backoff = min(backoff*2, time.Minute) {
			err := c.apply(ctx, b.obs, stored, b.next)
			if err == nil {
				cursor, stored, savedAt, save = b.next, b.next, time.Now(), nil
				c.moved(cursor)
				break
			}
			if ctx.Err() != nil {
				return cursor, false
			}
			if errors.Is(err, ErrCursorMoved) {
				if at, err := c.Store.Cursor(ctx, CursorName); err == nil {
					return at, true
				}
			}
			logger.Error("apply events to profiles; retrying", "err", err, "after", stored.String())
			select {
			case <-ctx.Done():
				return cursor, false
			case <-time.After(backoff):
			}
		}
	}
}

// read reads the events with identities after cursor, batch by batch,
// observes them and hands them to out, until ctx ends.
func (c *Consumer) read(ctx context.Context, logger *slog.Logger, cursor event.ID, out chan<- readBatch) {
	limit := c.Batch
	if limit <= 0 {
		limit = 5000
	}
	// A read of more is refused by the log: the consumer would retry it
	// forever and fold nothing.
	limit = min(limit, eventlog.MaxLimit)
	coalesce := c.Coalesce
	if coalesce == 0 {
		coalesce = 10 * time.Millisecond
	}
	// A log that tells of commits of events with identities apart wakes
	// the consumer for those alone.
	changes := c.Log.Changed
	if pl, ok := c.Log.(peopleLog); ok {
		changes = pl.PeopleChanged
	}
	tail, _ := c.Log.(peopleTail)
	backoff := time.Second
	for ctx.Err() == nil {
		changed := changes()
		// Everything up to head is visible to the read below, so when
		// nothing matches, the cursor can move to head.
		head := c.Log.Head()
		b := readBatch{next: head}
		evs, inMemory := []*event.Event(nil), false
		if tail != nil {
			evs, inMemory = tail.PeopleAfter(cursor, head, limit)
		}
		if inMemory {
			c.fromMemory.Add(uint64(len(evs)))
		} else {
			recs, err := c.Log.Read(ctx, eventlog.Query{WithIdentities: true, After: cursor, Limit: limit})
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				logger.Error("read events for profiles; retrying", "err", err, "after", cursor.String())
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, time.Minute)
				continue
			}
			backoff = time.Second
			evs = eventsOf(recs)
		}
		// From memory, nothing is above head; a read may find events
		// committed after Head was read.
		b.full = len(evs) == limit
		if n := len(evs); n > 0 && (b.full || evs[n-1].ID > b.next) {
			b.next = evs[n-1].ID // more may follow, or beyond head
		}
		if !c.hand(ctx, out, &b, evs, &cursor) {
			return
		}
		if b.full {
			continue
		}
		if !c.wait(ctx, changed, len(evs) > 0, coalesce) {
			return
		}
	}
}

// hand observes evs and hands them to out as b when b moves the cursor,
// and moves it; false when ctx ended.
func (c *Consumer) hand(ctx context.Context, out chan<- readBatch, b *readBatch, evs []*event.Event, cursor *event.ID) bool {
	if b.next <= *cursor {
		return true
	}
	b.obs = ObserveAll(evs)
	select {
	case <-ctx.Done():
		return false
	case out <- *b:
	}
	*cursor = b.next
	return true
}

// wait waits for changed. After a read that found something, it lets
// commits gather; after one that found nothing (events without
// identities, or idle), it returns at once: a timer per event is what low
// rates cannot share. False when ctx ended.
func (c *Consumer) wait(ctx context.Context, changed <-chan struct{}, found bool, coalesce time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-changed:
	}
	if coalesce > 0 && found {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(coalesce):
		}
	}
	return true
}

// cursorSaveEvery bounds how long the stored cursor stays behind past
// events without identities.
const cursorSaveEvery = time.Second

// eventsOf reads what a profile needs of each record straight from its
// stored JSON: its index columns, identities and data. (Two GetBytes
// cost ~1.25 µs for an s2s event against ~1.6 µs for one ForEach over
// the document, which parses every value it passes.)
func eventsOf(recs []eventlog.Record) []*event.Event {
	evs := make([]*event.Event, len(recs))
	store := make([]event.Event, len(recs))
	for i, r := range recs {
		e := &store[i]
		e.ID, e.ProjectID, e.Key, e.Time = r.ID, r.ProjectID, r.Key, r.Time
		gjson.GetBytes(r.Body, "identities").ForEach(func(_, id gjson.Result) bool {
			e.Identities = append(e.Identities, event.Identity{Type: id.Get("type").String(), Value: id.Get("value").String()})
			return true
		})
		if d := gjson.GetBytes(r.Body, "data"); d.Exists() {
			e.Data = []byte(d.Raw)
		}
		evs[i] = e
	}
	return evs
}

func (c *Consumer) apply(ctx context.Context, obs []Observation, from, next event.ID) error {
	st, err := c.Store.ApplyObservedFrom(ctx, CursorName, from, next, obs)
	if err != nil {
		return err
	}
	if c.applied != nil {
		c.applied.Add(float64(st.Observations))
		c.merges.Add(float64(st.Merges))
		c.conflicts.Add(float64(st.Conflicts))
		c.rebuilt.Add(float64(st.Rebuilt))
	}
	return nil
}

// Follow keeps Applied and WaitFor up to date with the stored cursor on
// a node whose consumer runs elsewhere (another node holds its lease):
// it reads the cursor every 100ms while a caller of WaitFor waits, and
// every second otherwise, until ctx ends.
func (c *Consumer) Follow(ctx context.Context) {
	for n := 0; ; n++ {
		c.mu.Lock()
		waiting := c.passed != nil
		c.mu.Unlock()
		if waiting || n%10 == 0 {
			if at, err := c.Store.Cursor(ctx, CursorName); err == nil && (at > event.ID(c.cursor.Load()) || !c.isStarted()) {
				c.moved(at)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Consumer) isStarted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started
}

// moved records that everything up to id is folded, and wakes waiters.
func (c *Consumer) moved(id event.ID) {
	c.mu.Lock()
	c.cursor.Store(uint64(id))
	c.started = true
	if c.passed != nil {
		close(c.passed)
		c.passed = nil
	}
	c.mu.Unlock()
}

// Applied is the id up to which every event is folded into profiles.
func (c *Consumer) Applied() event.ID { return event.ID(c.cursor.Load()) }

// reached reports whether every event up to id is folded: the cursor
// passed it, or (on a peopleLog) id is durable and the cursor passed the
// last event with identities, the consumer having nothing to fold up to
// id.
func (c *Consumer) reached(id event.ID) bool {
	cur := event.ID(c.cursor.Load())
	if cur >= id {
		return true
	}
	pl, ok := c.Log.(peopleLog)
	return ok && id <= c.Log.Head() && cur >= pl.PeopleHead()
}

// WaitFor returns once every event up to id is folded into profiles (a
// hook delivering event id then sees a profile that includes it), or
// when ctx ends.
func (c *Consumer) WaitFor(ctx context.Context, id event.ID) error {
	for {
		c.mu.Lock()
		if c.started && c.reached(id) {
			c.mu.Unlock()
			return nil
		}
		if c.passed == nil {
			c.passed = make(chan struct{})
		}
		ch := c.passed
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}
