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

// CursorName is the profile consumer's cursor.
const CursorName = "profiles"

// Consumer follows the log and folds events into profiles.
type Consumer struct {
	Store  *Store
	Log    EventReader
	Logger *slog.Logger
	// Batch caps the events applied per transaction (default 5000).
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
func (c *Consumer) Run(ctx context.Context) {
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	batch := c.Batch
	if batch <= 0 {
		batch = 5000
	}
	coalesce := c.Coalesce
	if coalesce == 0 {
		coalesce = 10 * time.Millisecond
	}
	cursor, err := c.Store.Cursor(ctx, CursorName)
	if err != nil {
		logger.Error("read profile cursor", "err", err)
		return
	}
	c.moved(cursor)
	// stored is the cursor as stored. Past events without identities it
	// moves in memory only, and is stored at most every cursorSaveEvery:
	// a commit of profiles.db for each wake-up that found nothing was most
	// of what an event without identities cost at low rates. Nothing is
	// lost: the events between stored and cursor have no identities, and
	// after a restart the consumer walks past them again in the index of
	// events with identities, which holds none of them.
	stored, savedAt := cursor, time.Now()
	var save <-chan time.Time
	backoff := time.Second
	// A log that tells of commits of events with identities apart wakes
	// the consumer for those alone.
	changes := c.Log.Changed
	if pl, ok := c.Log.(peopleLog); ok {
		changes = pl.PeopleChanged
	}
	for ctx.Err() == nil {
		changed := changes()
		// Everything up to head is visible to the read below, so when
		// nothing matches, the cursor can move to head.
		head := c.Log.Head()
		recs, err := c.Log.Read(ctx, eventlog.Query{WithIdentities: true, After: cursor, Limit: batch})
		if err == nil {
			next := head
			switch {
			case len(recs) == batch:
				next = recs[len(recs)-1].ID // more may follow
			case len(recs) > 0 && recs[len(recs)-1].ID > next:
				next = recs[len(recs)-1].ID // committed after Head was read
			}
			switch {
			case next > cursor && len(recs) == 0 && time.Since(savedAt) < cursorSaveEvery:
				cursor = next
				c.moved(next)
				if save == nil {
					save = time.After(cursorSaveEvery - time.Since(savedAt))
				}
			case next > cursor || (save == nil && cursor > stored):
				err = c.apply(ctx, recs, stored, next)
				if err == nil {
					cursor, stored, savedAt, save = next, next, time.Now(), nil
					c.moved(next)
				}
			}
		}
		if errors.Is(err, ErrCursorMoved) {
			// Another node folded these: go on from where it stopped.
			logger.Warn("the profile cursor was moved by another node; going on from it", "after", cursor.String())
			if cursor, err = c.Store.Cursor(ctx, CursorName); err == nil {
				stored, savedAt, save = cursor, time.Now(), nil
				c.moved(cursor)
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			logger.Error("apply events to profiles; retrying", "err", err, "after", cursor.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Minute)
			continue
		}
		backoff = time.Second
		if len(recs) == batch {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-save:
			save = nil // store the cursor in the next pass
			continue
		}
		// After a pass that folded something, let commits gather; after
		// one that found nothing (events without identities, or idle),
		// read at once: a timer per event is what low rates cannot share.
		if coalesce > 0 && len(recs) > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(coalesce):
			}
		}
	}
}

// cursorSaveEvery bounds how long the stored cursor stays behind past
// events without identities.
const cursorSaveEvery = time.Second

func (c *Consumer) apply(ctx context.Context, recs []eventlog.Record, from, next event.ID) error {
	// What a profile needs of an event, read straight from its stored
	// JSON: its index columns, identities and data.
	evs := make([]*event.Event, 0, len(recs))
	store := make([]event.Event, len(recs))
	for i, r := range recs {
		e := &store[i]
		e.ID, e.ProjectID, e.Key, e.Time = r.ID, r.ProjectID, r.Key, r.Time
		doc := gjson.ParseBytes(r.Body)
		doc.Get("identities").ForEach(func(_, id gjson.Result) bool {
			e.Identities = append(e.Identities, event.Identity{Type: id.Get("type").String(), Value: id.Get("value").String()})
			return true
		})
		if d := doc.Get("data"); d.Exists() {
			e.Data = []byte(d.Raw)
		}
		evs = append(evs, e)
	}
	st, err := c.Store.ApplyFrom(ctx, CursorName, from, next, evs)
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
