package profile

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

// EventReader is the part of the event log the consumer follows.
type EventReader interface {
	Read(ctx context.Context, q eventlog.Query) ([]eventlog.Record, error)
	Head() event.ID
	Changed() <-chan struct{}
}

// CursorName is the profile consumer's cursor.
const CursorName = "profiles"

// Consumer follows the log and folds events into profiles.
type Consumer struct {
	Store  *Store
	Log    EventReader
	Logger *slog.Logger
	// Batch caps the events applied per transaction (default 1000).
	Batch int

	applied prometheus.Counter
	lag     prometheus.GaugeFunc
	cursor  atomic.Uint64 // for the lag gauge
}

// profileKeys selects the events that change profiles today.
const profileKeys = "in.s2s.user"

// Register adds the consumer's metrics to reg.
func (c *Consumer) Register(reg prometheus.Registerer) {
	c.applied = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_profiles_events_applied_total", Help: "Events folded into profiles.",
	})
	c.lag = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_profiles_lag_seconds",
		Help: "How far the profile consumer's cursor is behind the log head (by id time).",
	}, func() float64 {
		head, cur := c.Log.Head(), event.ID(c.cursor.Load())
		if head <= cur || cur == 0 {
			return 0
		}
		return float64(head.Millis()-cur.Millis()) / 1000
	})
	reg.MustRegister(c.applied, c.lag)
}

// Run follows the log until ctx ends.
func (c *Consumer) Run(ctx context.Context) {
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	batch := c.Batch
	if batch <= 0 {
		batch = 1000
	}
	cursor, err := c.Store.Cursor(ctx, CursorName)
	if err != nil {
		logger.Error("read profile cursor", "err", err)
		return
	}
	c.cursor.Store(uint64(cursor))
	backoff := time.Second
	for ctx.Err() == nil {
		changed := c.Log.Changed()
		// Everything up to head is visible to the read below, so when
		// nothing matches, the cursor can move to head.
		head := c.Log.Head()
		recs, err := c.Log.Read(ctx, eventlog.Query{KeyGlob: profileKeys, After: cursor, Limit: batch})
		if err == nil {
			next := head
			switch {
			case len(recs) == batch:
				next = recs[len(recs)-1].ID // more may follow
			case len(recs) > 0 && recs[len(recs)-1].ID > next:
				next = recs[len(recs)-1].ID // committed after Head was read
			}
			if next > cursor {
				err = c.apply(ctx, recs, next)
				if err == nil {
					cursor = next
					c.cursor.Store(uint64(next))
				}
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
		}
	}
}

func (c *Consumer) apply(ctx context.Context, recs []eventlog.Record, next event.ID) error {
	evs := make([]*event.Event, 0, len(recs))
	for _, r := range recs {
		e, err := event.Decode(r.Body)
		if err != nil {
			return err
		}
		evs = append(evs, e)
	}
	if err := c.Store.Apply(ctx, CursorName, next, evs); err != nil {
		return err
	}
	if c.applied != nil {
		c.applied.Add(float64(len(evs)))
	}
	return nil
}
