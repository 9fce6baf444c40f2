package eventlog

import (
	"context"
	"log/slog"
	"time"
)

// Retention deletes events older than Keep, every Every.
type Retention struct {
	Keep  time.Duration
	Every time.Duration
	Now   func() time.Time
	Log   *slog.Logger
	// Deleted, when set, is told how many events each pass removed.
	Deleted func(n int64)
	// Delete, when set, replaces the log's DeleteBefore (e.g. with
	// DeleteContentsBefore); What names what it deletes in logs.
	Delete func(ctx context.Context, t time.Time) (int64, error)
	What   string
}

// Run deletes expired events until ctx ends. The first pass runs at once.
func (r Retention) Run(ctx context.Context, l Log) {
	if r.Keep <= 0 {
		return
	}
	every := r.Every
	if every <= 0 {
		every = time.Hour
	}
	now := r.Now
	if now == nil {
		now = time.Now
	}
	logger := r.Log
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	del, what := r.Delete, r.What
	if del == nil {
		del = l.DeleteBefore
	}
	if what == "" {
		what = "events"
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		cutoff := now().Add(-r.Keep)
		n, err := del(ctx, cutoff)
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Error("retention pass", "of", what, "err", err)
		case n > 0:
			logger.Info("retention pass", "of", what, "deleted", n, "before", cutoff.UTC().Format(time.RFC3339))
		}
		if r.Deleted != nil && n > 0 {
			r.Deleted(n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
