package sqlite

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/logtest"
	"github.com/sluicehq/sluice/internal/tmpfs"
)

// syncLog is a slog destination that tests can read while the log writes.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// loadUntilDown appends ~1.6 KiB events from 8 goroutines until appends
// fail, and returns the ids acknowledged and the number of failed appends,
// each of which must be ErrUnavailable.
func loadUntilDown(t *testing.T, l *Log) (acked []event.ID, failed int) {
	t.Helper()
	var mu sync.Mutex
	var seq atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(20 * time.Second)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				res, err := l.Append(context.Background(), []*event.Event{bigEvent(int(seq.Add(1)))})
				mu.Lock()
				if err != nil {
					failed++
				} else {
					acked = append(acked, res[0].ID)
				}
				mu.Unlock()
				if err != nil {
					if !errors.Is(err, eventlog.ErrUnavailable) {
						t.Errorf("append on a full disk: %v, want ErrUnavailable", err)
					}
					return
				}
			}
			t.Error("the disk never filled up")
		}()
	}
	wg.Wait()
	return acked, failed
}

// exactlyOnce checks that the log holds every acknowledged id once, and
// nothing else.
func exactlyOnce(t *testing.T, l *Log, acked []event.ID) {
	t.Helper()
	want := map[event.ID]bool{}
	for _, id := range acked {
		want[id] = true
	}
	seen := map[event.ID]bool{}
	var after event.ID
	for {
		recs, err := l.Read(context.Background(), eventlog.Query{After: after, Limit: eventlog.MaxLimit})
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			if seen[r.ID] {
				t.Fatalf("event %s read twice", r.ID)
			}
			if !want[r.ID] {
				t.Fatalf("event %s stored but never acknowledged", r.ID)
			}
			seen[r.ID] = true
		}
		after = recs[len(recs)-1].ID
	}
	if len(seen) != len(want) {
		t.Fatalf("%d events stored, %d acknowledged", len(seen), len(want))
	}
}

func waitHealthy(t *testing.T, l *Log) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.Health() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("log still down after space returned: %v", l.Health())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFullDisk runs the log on a small tmpfs until the disk is full:
// appends fail at once with ErrUnavailable and are counted, reads go on;
// once space returns the log recovers without a restart; a Close on the
// full disk loses nothing, and a log opened on the full disk serves reads,
// refuses appends and recovers when space returns.
func TestFullDisk(t *testing.T) {
	dir := tmpfs.Mount(t, 24<<20, "the event log on a full disk (refusing appends, recovery without restart, close and open on a full disk)")
	path := filepath.Join(dir, "events.db")
	reg := prometheus.NewRegistry()
	logs := &syncLog{}
	open := func(reg prometheus.Registerer) *Log {
		l, err := Open(Config{Path: path, RecoverEvery: 10 * time.Millisecond, CheckpointEvery: time.Hour}, reg,
			slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := open(reg)
	failures := func() float64 { return testutil.ToFloat64(l.metrics.failed.WithLabelValues(reasonDiskFull)) }

	// Leave the log 8 MiB, and fill it.
	free := tmpfs.Fill(t, dir)
	ballast := filepath.Join(dir, "ballast")
	free()
	if err := os.WriteFile(ballast, make([]byte, tmpfs.Free(t, dir)-8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	acked, failed := loadUntilDown(t, l)
	if len(acked) < 1000 {
		t.Fatalf("only %d events fit in 8 MiB", len(acked))
	}
	t.Logf("%d events acknowledged before the disk was full, %d appends failed", len(acked), failed)
	// Keep it full whatever a checkpoint gave back: a recovery that
	// found room meanwhile is undone by the next append.
	free = tmpfs.Fill(t, dir)
	if l.Health() == nil {
		if _, err := l.Append(context.Background(), []*event.Event{bigEvent(0)}); err == nil {
			t.Fatal("append on a full disk succeeded")
		}
		failed++
	}

	herr := l.Health()
	if !errors.Is(herr, eventlog.ErrUnavailable) || !strings.Contains(herr.Error(), "event log: disk full; appends refused since ") {
		t.Fatalf("health on a full disk: %v", herr)
	}
	if got := failures(); got != float64(failed) {
		t.Fatalf("sluice_log_append_failures_total{reason=disk_full} = %v, want %d", got, failed)
	}
	// While down, appends fail at once, store nothing and count.
	if _, err := l.Append(context.Background(), []*event.Event{bigEvent(-1)}); !errors.Is(err, eventlog.ErrUnavailable) {
		t.Fatalf("append while down: %v", err)
	}
	if got := failures(); got != float64(failed+1) {
		t.Fatalf("failures %v after one more refused append, want %d", got, failed+1)
	}
	exactlyOnce(t, l, acked)
	// It stays down while the disk is full (recovery is retried every
	// 10ms and needs room).
	time.Sleep(100 * time.Millisecond)
	if l.Health() == nil {
		t.Fatal("the log came back up on a full disk")
	}

	// Space returns: the log recovers by itself and takes appends again.
	free()
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, l)
	if !strings.Contains(logs.String(), "event log recovered: appends resume") {
		t.Fatalf("no recovery logged:\n%s", logs.String())
	}
	// Fewer than walCheckpointFrames frames, so that they are still to
	// be checkpointed when the disk fills up again.
	for i := range 100 {
		res, err := l.Append(context.Background(), []*event.Event{bigEvent(i)})
		if err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
		acked = append(acked, res[0].ID)
	}
	exactlyOnce(t, l, acked)

	// A Close on a full disk fails its checkpoint, returns nil and loses
	// nothing.
	free = tmpfs.Fill(t, dir)
	if err := l.Close(); err != nil {
		t.Fatalf("close on a full disk: %v", err)
	}
	if !strings.Contains(logs.String(), "final checkpoint failed") {
		t.Fatalf("the final checkpoint did not fail on a full disk: the test proves nothing\n%s", logs.String())
	}

	// Opened on the full disk, the log serves reads and refuses appends.
	l = open(nil)
	defer l.Close()
	if err := l.Health(); !errors.Is(err, eventlog.ErrUnavailable) {
		t.Fatalf("health of a log opened on a full disk: %v", err)
	}
	exactlyOnce(t, l, acked)
	if l.Head() != acked[len(acked)-1] {
		t.Fatalf("head %s, want %s", l.Head(), acked[len(acked)-1])
	}
	if _, err := l.Append(context.Background(), []*event.Event{bigEvent(-2)}); !errors.Is(err, eventlog.ErrUnavailable) {
		t.Fatalf("append to a log opened on a full disk: %v", err)
	}
	free()
	waitHealthy(t, l)
	res, err := l.Append(context.Background(), []*event.Event{bigEvent(-3)})
	if err != nil {
		t.Fatalf("append after space returned: %v", err)
	}
	exactlyOnce(t, l, append(acked, res[0].ID))
}

// TestFullDiskRecoversWithoutReopen: on a full disk appends fail with
// ErrUnavailable and store nothing, reads go on, and appends resume by
// themselves once space returns.
func TestFullDiskRecoversWithoutReopen(t *testing.T) {
	ctx := context.Background()
	dir := tmpfs.Mount(t, 16<<20, "the log contract on a full disk (ErrUnavailable, reads on a full disk, recovery without reopening)")
	l := openAt(t, dir)
	defer l.Close()
	if err := l.Health(); err != nil {
		t.Fatalf("health of a fresh log: %v", err)
	}
	// Leave the log 6 MiB of the file system.
	free := tmpfs.Fill(t, dir)
	free()
	ballast := filepath.Join(dir, "ballast")
	if err := os.WriteFile(ballast, make([]byte, tmpfs.Free(t, dir)-6<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	var acked []event.ID
	var failed error
	for n := 0; failed == nil; n++ {
		if n > 100_000 {
			t.Fatal("the disk never filled up")
		}
		e := logtest.Event(1, "in.gen.full.disk", n)
		e.Data = json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, n, strings.Repeat("x", 1500)))
		res, err := l.Append(ctx, []*event.Event{e})
		if err != nil {
			failed = err
			break
		}
		acked = append(acked, res[0].ID)
	}
	if !errors.Is(failed, eventlog.ErrUnavailable) {
		t.Fatalf("append on a full disk: %v, want ErrUnavailable", failed)
	}
	// Reads go on while the disk is full; the failed append stored
	// nothing.
	free = tmpfs.Fill(t, dir)
	if ids := storedIDs(t, l); !reflect.DeepEqual(ids, acked) {
		t.Fatalf("on the full disk the log holds %d events, %d acknowledged", len(ids), len(acked))
	}
	// Space returns: appends are taken again, without reopening.
	free()
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := l.Append(ctx, []*event.Event{logtest.Event(1, "in.gen.full.after", 0)})
		if err == nil {
			acked = append(acked, res[0].ID)
			break
		}
		if !errors.Is(err, eventlog.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("append after space returned: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := l.Health(); err != nil {
		t.Fatalf("health after an append succeeded: %v", err)
	}
	if ids := storedIDs(t, l); !reflect.DeepEqual(ids, acked) {
		t.Fatalf("after recovery the log holds %d events, %d acknowledged", len(ids), len(acked))
	}
}

// storedIDs returns the ids of every stored event, in order.
func storedIDs(t *testing.T, l eventlog.Log) []event.ID {
	t.Helper()
	var ids []event.ID
	var after event.ID
	for {
		recs, err := l.Read(context.Background(), eventlog.Query{After: after, Limit: eventlog.MaxLimit})
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if len(recs) == 0 {
			return ids
		}
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
		after = recs[len(recs)-1].ID
	}
}
