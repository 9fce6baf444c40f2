package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/logtest"
	"github.com/sluicehq/sluice/internal/tmpfs"
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
// for. longest, if not nil, keeps the longest read (in ns).
func follow(ctx context.Context, l *Log, longest *atomic.Int64) {
	var after event.ID
	for ctx.Err() == nil {
		changed := l.Changed()
		start := time.Now()
		recs, err := l.Read(ctx, eventlog.Query{After: after, Limit: 1000})
		if err != nil {
			return
		}
		if d := int64(time.Since(start)); longest != nil && d > longest.Load() {
			longest.Store(d)
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
	l := openAt(b, dir)
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() { defer readers.Done(); follow(ctx, l, nil) }()
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
	b.ReportMetric(testutil.ToFloat64(l.metrics.walRestarts), "forced-restarts")
}

// The WAL stays bounded under a load that outruns any clock: 64 senders
// of ~1.6 KiB events with two consumers reading, on the test's disk and on
// a tmpfs (where fsync is free, commits are smallest and most frequent).
// Before the bound was the WAL's length, a checkpoint every second let it
// grow by whatever was written in that second: 54 MiB here for these
// 20000 events, 204 MiB on the tmpfs.
func TestWALStaysBounded(t *testing.T) {
	for _, fs := range []string{"disk", "tmpfs"} {
		t.Run(fs, func(t *testing.T) {
			dir := t.TempDir()
			if fs == "tmpfs" {
				dir = tmpfs.Mount(t, 256<<20, "the WAL bound on a tmpfs, where commits are most frequent")
			}
			l := openAt(t, dir)
			defer l.Close()
			ctx, cancel := context.WithCancel(context.Background())
			var readers sync.WaitGroup
			var longest atomic.Int64
			for range 2 {
				readers.Add(1)
				go func() { defer readers.Done(); follow(ctx, l, &longest) }()
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
			read := time.Duration(longest.Load())
			t.Logf("%d events of ~1.6 KiB: WAL file at most %.1f MiB, %v forced restarts, longest read %v", n, float64(largest)/(1<<20), testutil.ToFloat64(l.metrics.walRestarts), read)
			// The bound holds while no read outlasts the restart's wait
			// (the package comment): a slow machine (the race detector
			// on two loaded cores) has reads of 1000 events that do.
			if bound := int64(2 * walFileLimit); largest > bound && read < walRestartWait {
				t.Fatalf("WAL file reached %d bytes, bound %d, with no read longer than %v (longest %v)", largest, bound, walRestartWait, read)
			}
		})
	}
}

// A read that stays open keeps the WAL from starting over: appends go on
// meanwhile (the restarts they attempt give up after walRestartWait), and
// once the read ends the WAL starts over and its file is cut back to
// walFileLimit.
func TestWALStartsOverAfterALongRead(t *testing.T) {
	dir := t.TempDir()
	l := openAt(t, dir)
	defer l.Close()
	load := func(n int) {
		t.Helper()
		var seq atomic.Int64
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := seq.Add(1); i <= int64(n); i = seq.Add(1) {
					if _, err := l.Append(context.Background(), []*event.Event{bigEvent(int(i))}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	load(10)
	rows, err := l.rdb.Query("SELECT id FROM events")
	if err != nil || !rows.Next() {
		t.Fatalf("open read: %v", err)
	}
	load(4000)
	var st syscall.Stat_t
	if err := syscall.Stat(l.walPath, &st); err != nil || st.Size <= walFileLimit {
		t.Fatalf("WAL file %d bytes during a long read (%v): the read did not hold it", st.Size, err)
	}
	if got := testutil.ToFloat64(l.metrics.walRestarts); got != 0 {
		t.Fatalf("%v WAL restarts while a read held an old snapshot", got)
	}
	t.Logf("WAL file %.1f MiB after 4000 events during a long read", float64(st.Size)/(1<<20))
	rows.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		load(20)
		if err := syscall.Stat(l.walPath, &st); err != nil {
			t.Fatal(err)
		}
		if st.Size <= walFileLimit {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("WAL file still %d bytes 5s after the read ended", st.Size)
		}
	}
}
