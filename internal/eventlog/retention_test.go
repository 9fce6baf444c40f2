package eventlog_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/logtest"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
)

func TestRetentionDeletesExpiredEvents(t *testing.T) {
	l, err := sqlite.Open(sqlite.Config{Path: filepath.Join(t.TempDir(), "events.db")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var evs []*event.Event
	for i := 0; i < 12000; i++ { // more than one deletion chunk
		evs = append(evs, logtest.Event(1, "k", i))
	}
	if _, err := l.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	fresh := logtest.Event(1, "k", -1)
	// Pretend an hour has passed for the old events, none for the new one.
	var now atomic.Pointer[time.Time]
	later := time.Now().Add(2 * time.Hour)
	now.Store(&later)
	deleted := make(chan int64, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		eventlog.Retention{
			Keep: time.Hour, Every: 10 * time.Millisecond,
			Now:     func() time.Time { return *now.Load() },
			Deleted: func(n int64) { deleted <- n },
		}.Run(ctx, l)
	}()
	select {
	case n := <-deleted:
		if n != 12000 {
			t.Fatalf("first pass deleted %d, want 12000", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("retention never ran")
	}
	// Back to the real clock: an event stored now is younger than the
	// cutoff and survives later passes.
	real := time.Now()
	now.Store(&real)
	// A pass that read the old clock may still be deleting: let it end
	// (passes run every 10 ms) before the fresh event is stored.
	time.Sleep(100 * time.Millisecond)
	if _, err := l.Append(ctx, []*event.Event{fresh}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // several passes
	recs, err := l.Read(ctx, eventlog.Query{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != fresh.ID {
		t.Fatalf("after retention: %d records, want only the fresh event", len(recs))
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when its context ended")
	}
}

func TestRetentionOffWhenKeepIsZero(t *testing.T) {
	done := make(chan struct{})
	go func() {
		eventlog.Retention{Keep: 0}.Run(context.Background(), nil)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Run with Keep 0 did not return at once")
	}
}
