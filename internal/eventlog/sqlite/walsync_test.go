package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/logtest"
)

// heldSync replaces the log's WAL sync with one that waits for release
// while held, and counts the calls.
type heldSync struct {
	calls   atomic.Int64
	mu      sync.Mutex
	gate    chan struct{} // nil: not held
	entered chan struct{}
	fail    error
}

func (h *heldSync) install(l *Log) {
	l.wal.sync = func(f *os.File) error {
		h.calls.Add(1)
		h.mu.Lock()
		gate, fail := h.gate, h.fail
		h.mu.Unlock()
		if gate != nil {
			h.entered <- struct{}{}
			<-gate
		}
		if fail != nil {
			return fail
		}
		return fdatasync(f)
	}
}

func (h *heldSync) hold() {
	h.mu.Lock()
	h.gate, h.entered = make(chan struct{}), make(chan struct{}, 16)
	h.mu.Unlock()
}

func (h *heldSync) release() {
	h.mu.Lock()
	close(h.gate)
	h.gate = nil
	h.mu.Unlock()
}

// storedRows counts the events in the file through a connection of its
// own: what SQLite committed, synced or not.
func storedRows(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_query_only=1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A group is committed with synchronous=NORMAL and then the WAL is
// synced: until that sync returns, the append is not answered, the head
// does not move and readers do not see the event; meanwhile the next
// group commits (the pipelining), and its sync is the next one.
func TestNothingAnsweredBeforeWALSync(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	l, err := Open(Config{Path: path}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var h heldSync
	h.install(l)

	if _, err := l.Append(ctx, []*event.Event{logtest.Event(1, "k", 0)}); err != nil {
		t.Fatal(err)
	}
	if h.calls.Load() != 1 {
		t.Fatalf("%d syncs for one append, want 1", h.calls.Load())
	}
	head := l.Head()

	h.hold()
	type answer struct {
		res []eventlog.Result
		err error
	}
	first := make(chan answer, 1)
	go func() {
		res, err := l.Append(ctx, []*event.Event{logtest.Event(1, "k", 1)})
		first <- answer{res, err}
	}()
	<-h.entered // the first group is committed and its sync began
	if n := storedRows(t, path); n != 2 {
		t.Fatalf("%d rows in the file while the sync runs, want 2", n)
	}
	second := make(chan answer, 1)
	go func() {
		res, err := l.Append(ctx, []*event.Event{logtest.Event(1, "k", 2)})
		second <- answer{res, err}
	}()
	// The second group commits while the first one's sync is held.
	deadline := time.Now().Add(10 * time.Second)
	for storedRows(t, path) != 3 {
		if time.Now().After(deadline) {
			t.Fatal("the next group did not commit during the sync")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case a := <-first:
		t.Fatalf("answered before the sync: %+v", a)
	case a := <-second:
		t.Fatalf("answered before the sync: %+v", a)
	default:
	}
	if l.Head() != head {
		t.Fatalf("head moved to %s before the sync (was %s)", l.Head(), head)
	}
	recs, err := l.Read(ctx, eventlog.Query{After: head})
	if err != nil || len(recs) != 0 {
		t.Fatalf("readers see %d unsynced events (%v)", len(recs), err)
	}
	h.release()
	a1, a2 := <-first, <-second
	if a1.err != nil || a2.err != nil {
		t.Fatal(a1.err, a2.err)
	}
	if l.Head() != a2.res[0].ID || a2.res[0].ID <= a1.res[0].ID {
		t.Fatalf("head %s after %s, %s", l.Head(), a1.res[0].ID, a2.res[0].ID)
	}
	// The held sync, then one for the second group.
	if c := h.calls.Load(); c != 3 {
		t.Fatalf("%d syncs, want 3", c)
	}
	recs, err = l.Read(ctx, eventlog.Query{After: head})
	if err != nil || len(recs) != 2 || recs[0].ID != a1.res[0].ID || recs[1].ID != a2.res[0].ID {
		t.Fatalf("read %+v, %v", recs, err)
	}
}

// A sync that fails takes the log down as an I/O error: the append fails
// with ErrUnavailable, its event stays above the head, the next appends
// are refused; once syncs succeed again the recovery brings appends back.
func TestFailedWALSyncTakesTheLogDown(t *testing.T) {
	ctx := context.Background()
	l, err := Open(Config{Path: filepath.Join(t.TempDir(), "events.db"), RecoverEvery: 10 * time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var h heldSync
	h.install(l)
	h.hold()
	h.fail = syscall.EIO
	done := make(chan error, 1)
	go func() {
		_, err := l.Append(ctx, []*event.Event{logtest.Event(1, "k", 0)})
		done <- err
	}()
	<-h.entered
	h.release()
	err = <-done
	if !errors.Is(err, eventlog.ErrUnavailable) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("append after a failed sync: %v", err)
	}
	if failureReason(err) != reasonIO {
		t.Fatalf("reason %q", failureReason(err))
	}
	if l.Head() != 0 {
		t.Fatalf("head %s after a failed sync", l.Head())
	}
	if recs, _ := l.Read(ctx, eventlog.Query{}); len(recs) != 0 {
		t.Fatalf("readers see %d events of a failed sync", len(recs))
	}
	// Recovery checkpoints into the database file (synced by SQLite)
	// and probes; it does not depend on the WAL sync, so it succeeds
	// now. Appends then sync again, successfully once the fault is gone.
	h.mu.Lock()
	h.fail = nil
	h.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for l.Health() != nil {
		if time.Now().After(deadline) {
			t.Fatal("no recovery")
		}
		time.Sleep(5 * time.Millisecond)
	}
	res, err := l.Append(ctx, []*event.Event{logtest.Event(1, "k", 1)})
	if err != nil {
		t.Fatal(err)
	}
	if l.Head() != res[0].ID {
		t.Fatalf("head %s, appended %s", l.Head(), res[0].ID)
	}
}
