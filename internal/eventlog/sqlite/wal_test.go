package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/logtest"
)

// walWatch samples the size of the WAL file every millisecond until the
// returned function is called, which reports the largest size seen.
func walWatch(path string) (stop func() int64) {
	var largest atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			if st, err := os.Stat(path); err == nil && st.Size() > largest.Load() {
				largest.Store(st.Size())
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		wg.Wait()
		return largest.Load()
	}
}

// bigEvent is an event of about 1.6 KiB, as the full-disk report used.
func bigEvent(n int) *event.Event {
	e := logtest.Event(1, "in.gen.bench.big", n)
	e.Data = []byte(`{"note":"` + strings.Repeat("x", 1500) + `"}`)
	return e
}

// follow reads the log after its cursor until ctx ends, as the hook and
// profile consumers do: the readers whose snapshots a checkpoint must wait
// for.
func follow(ctx context.Context, l *Log) {
	var after event.ID
	for ctx.Err() == nil {
		changed := l.Changed()
		recs, err := l.Read(ctx, eventlog.Query{After: after, Limit: 1000})
		if err != nil {
			return
		}
		if len(recs) > 0 {
			after = recs[len(recs)-1].ID
			continue
		}
		select {
		case <-ctx.Done():
		case <-changed:
		}
	}
}

// BenchmarkAppendWAL loads the log as the full-disk report did (64
// senders of ~1.6 KiB events, two consumers following the log) and reports
// the largest size the WAL file reached. Run it on a tmpfs too
// (TMPDIR=/mnt/tmpfs): fsync is free there, commits are small and the WAL
// grows fastest.
func BenchmarkAppendWAL(b *testing.B) {
	dir := b.TempDir()
	l := openAt(b, dir, gen(b))
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() { defer readers.Done(); follow(ctx, l) }()
	}
	stop := walWatch(filepath.Join(dir, "events.db-wal"))
	var seq atomic.Int64
	b.SetParallelism(32) // 64 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(context.Background(), []*event.Event{bigEvent(int(seq.Add(1)))}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	largest := stop()
	cancel()
	readers.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(largest)/(1<<20), "wal-max-MiB")
}

// The WAL stays bounded under a load that outruns any clock: 64 senders
// of ~1.6 KiB events with two consumers reading. Before the bound was
// the WAL's length, a checkpoint every second let it grow by whatever was
// written in that second (tens of MiB here, hundreds on a tmpfs).
func TestWALStaysBounded(t *testing.T) {
	dir := t.TempDir()
	l := openAt(t, dir, gen(t))
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() { defer readers.Done(); follow(ctx, l) }()
	}
	stop := walWatch(filepath.Join(dir, "events.db-wal"))
	const n, senders = 20000, 64
	var seq atomic.Int64
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := seq.Add(1); i <= n; i = seq.Add(1) {
				if _, err := l.Append(context.Background(), []*event.Event{bigEvent(int(i))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	largest := stop()
	cancel()
	readers.Wait()
	t.Logf("%d events of ~1.6 KiB: WAL file at most %.1f MiB", n, float64(largest)/(1<<20))
	if bound := int64(2 * walFileLimit); largest > bound {
		t.Fatalf("WAL file reached %d bytes, bound %d", largest, bound)
	}
}
