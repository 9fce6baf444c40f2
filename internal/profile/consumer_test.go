package profile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
)

func TestApplyFromRefusesAMovedCursor(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.open(t)
		e1 := ev(10, 1, "in.s2s.user", 1000, `{}`, "user_id=u")
		if _, err := s.ApplyFrom(ctx, "c", 0, 10, []*event.Event{e1}); err != nil {
			t.Fatal(err)
		}
		// A second consumer that read the cursor at 0 too.
		e2 := ev(11, 1, "in.s2s.user", 2000, `{}`, "user_id=u")
		if _, err := s.ApplyFrom(ctx, "c", 0, 11, []*event.Event{e1, e2}); !errors.Is(err, ErrCursorMoved) {
			t.Fatalf("apply from a cursor that moved: %v", err)
		}
		if p := find(t, s, 1, "user_id", "u"); p.Traits.Events != 1 {
			t.Fatalf("%d events folded", p.Traits.Events)
		}
		if c, _ := s.Cursor(ctx, "c"); c != 10 {
			t.Fatalf("cursor %d", c)
		}
		if _, err := s.ApplyFrom(ctx, "c", 10, 11, []*event.Event{e2}); err != nil {
			t.Fatal(err)
		}
		if p := find(t, s, 1, "user_id", "u"); p.Traits.Events != 2 {
			t.Fatalf("%d events folded", p.Traits.Events)
		}
	})
}

// Two nodes' consumers running at once on one store (as when a lease
// changed hands in the middle of a batch) fold every event once.
func TestTwoConsumersFoldEachEventOnce(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		l := openLog(t)
		a, b := be.pair(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ca, cb := &Consumer{Store: a, Log: l, Batch: 7}, &Consumer{Store: b, Log: l, Batch: 5}
		var wg sync.WaitGroup
		for _, c := range []*Consumer{ca, cb} {
			wg.Add(1)
			go func() { defer wg.Done(); c.Run(ctx) }()
		}
		const people, each = 5, 30
		for i := 0; i < each; i++ {
			var evs []*event.Event
			for p := 0; p < people; p++ {
				evs = append(evs, &event.Event{Key: "in.s2s.user", ProjectID: 1, Time: int64(1000 + i), Dialect: "s2s", Data: json.RawMessage(`{}`),
					Identities: []event.Identity{{Type: "user_id", Value: "u" + strconv.Itoa(p)}}})
			}
			if _, err := l.Append(ctx, evs); err != nil {
				t.Fatal(err)
			}
		}
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		if err := ca.WaitFor(wctx, l.Head()); err != nil {
			t.Fatal(err)
		}
		if err := cb.WaitFor(wctx, l.Head()); err != nil {
			t.Fatal(err)
		}
		cancel()
		wg.Wait()
		for p := 0; p < people; p++ {
			if got := find(t, a, 1, "user_id", "u"+strconv.Itoa(p)); got.Traits.Events != each {
				t.Fatalf("u%d: %d events folded, want %d", p, got.Traits.Events, each)
			}
		}
	})
}

// A node whose consumer runs elsewhere follows the stored cursor: its
// WaitFor returns once the other node has folded.
func TestFollowSeesTheOtherNodesFold(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		l := openLog(t)
		a, b := be.pair(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		folder, follower := &Consumer{Store: a, Log: l}, &Consumer{Store: b, Log: l}
		go follower.Follow(ctx)
		res, err := l.Append(ctx, []*event.Event{{Key: "in.s2s.user", ProjectID: 1, Time: 1, Dialect: "s2s", Data: json.RawMessage(`{}`),
			Identities: []event.Identity{{Type: "user_id", Value: "u"}}}})
		if err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		if err := follower.WaitFor(wctx, res[0].ID); err == nil {
			t.Fatal("WaitFor returned before anything folded")
		}
		wcancel()
		go folder.Run(ctx)
		wctx, wcancel = context.WithTimeout(ctx, 5*time.Second)
		defer wcancel()
		if err := follower.WaitFor(wctx, res[0].ID); err != nil {
			t.Fatalf("the follower never saw the fold: %v", err)
		}
		if follower.Applied() < res[0].ID {
			t.Fatalf("applied %d", follower.Applied())
		}
	})
}

// Past events without identities the consumer does not wake, store its
// cursor or fall behind: WaitFor returns for them at once and the lag is
// nothing (the SQLite log tells of events with identities apart); an
// event with identities is folded and its cursor stored at once, and a
// consumer started again from the stored cursor folds what followed
// exactly once.
func TestNothingToFoldPastEventsWithoutIdentities(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := openLog(t)
	s, c, _ := registeredConsumer(t, l)
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	// Its first pass, which finds the log empty, before any event: a
	// first pass that meets events already committed moves past them and
	// stores that within cursorSaveEvery, as it should; this test is about
	// commits that come after, which do not wake it.
	for !c.isStarted() {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	plain := func(n int) event.ID {
		var last event.ID
		for i := 0; i < n; i++ {
			res, err := l.Append(ctx, []*event.Event{{Key: "in.gen.x.y", ProjectID: 1, Time: 1, Dialect: "gen", Data: json.RawMessage(`{}`)}})
			if err != nil {
				t.Fatal(err)
			}
			last = res[0].ID
		}
		return last
	}
	head := plain(20)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := c.WaitFor(wctx, head); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // past cursorSaveEvery
	if stored, _ := s.Cursor(ctx, CursorName); stored >= head {
		t.Fatalf("cursor stored (%s) past events without identities", stored)
	}
	if lag := testutil.ToFloat64(c.lag); lag != 0 {
		t.Fatalf("lag %v s with nothing to fold", lag)
	}
	plain(3)
	res, err := l.Append(ctx, []*event.Event{{Key: "in.s2s.user", ProjectID: 1, Time: 5, Dialect: "s2s", Data: json.RawMessage(`{}`),
		Identities: []event.Identity{{Type: "user_id", Value: "u"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitFor(wctx, res[0].ID); err != nil {
		t.Fatal(err)
	}
	if stored, _ := s.Cursor(ctx, CursorName); stored != res[0].ID {
		t.Fatalf("cursor %s after folding %s", stored, res[0].ID)
	}
	// Stopped with an advance in memory only, started again.
	head = plain(5)
	if err := c.WaitFor(wctx, head); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	res2, err := l.Append(context.Background(), []*event.Event{{Key: "in.s2s.user", ProjectID: 1, Time: 6, Dialect: "s2s", Data: json.RawMessage(`{}`),
		Identities: []event.Identity{{Type: "user_id", Value: "u"}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	c2 := &Consumer{Store: s, Log: l}
	go c2.Run(ctx2)
	w2, wc2 := context.WithTimeout(ctx2, 5*time.Second)
	defer wc2()
	if err := c2.WaitFor(w2, res2[0].ID); err != nil {
		t.Fatal(err)
	}
	if p := find(t, s, 1, "user_id", "u"); p.Traits.Events != 2 {
		t.Fatalf("%d events folded, want 2", p.Traits.Events)
	}
}

// openLog opens an empty SQLite log, closed at the end of the test.
func openLog(t testing.TB) *sqlite.Log {
	t.Helper()
	l, err := sqlite.Open(sqlite.Config{Path: filepath.Join(t.TempDir(), "events.db")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// registeredConsumer is a consumer of l on a fresh store, its metrics in
// reg.
func registeredConsumer(t testing.TB, l *sqlite.Log) (*Store, *Consumer, *prometheus.Registry) {
	t.Helper()
	s := openStore(t)
	reg := prometheus.NewRegistry()
	c := &Consumer{Store: s, Log: l}
	c.Register(reg)
	return s, c, reg
}

// sqlOnly is a log that keeps nothing in memory for the consumer.
type sqlOnly struct{ *sqlite.Log }

func (sqlOnly) PeopleAfter() {} // hides the log's own

// The consumer folds the events the SQLite log holds in memory into the
// same profiles, field by field, as the ones it reads from the log: the
// same events appended while two consumers run, one of which is only
// allowed to read.
func TestFoldFromMemoryIsFoldFromTheLog(t *testing.T) {
	l := openLog(t)
	mem, read := openStore(t), openStore(t)
	cm, cr := &Consumer{Store: mem, Log: l, Batch: 300}, &Consumer{Store: read, Log: sqlOnly{l}, Batch: 300}
	if _, ok := any(cr.Log).(peopleTail); ok {
		t.Fatal("the read-only log still offers its memory")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cm.Run(ctx)
	go cr.Run(ctx)
	evs := benchEvents(6000, true)
	for i, e := range evs {
		if i%5 == 0 {
			e.Identities = nil // some without identities
		}
		if i%97 == 0 {
			e.Time -= 5000 // late
		}
	}
	for i := 0; i < len(evs); i += 50 {
		if _, err := l.Append(ctx, evs[i:i+50]); err != nil {
			t.Fatal(err)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	for _, c := range []*Consumer{cm, cr} {
		if err := c.WaitFor(wctx, l.Head()); err != nil {
			t.Fatal(err)
		}
	}
	if cm.fromMemory.Load() == 0 || cr.fromMemory.Load() != 0 {
		t.Fatalf("from memory: %d and %d events", cm.fromMemory.Load(), cr.fromMemory.Load())
	}
	ids, err := mem.db.ProfileIDs(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	rids, err := read.db.ProfileIDs(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) < 1000 || len(ids) != len(rids) {
		t.Fatalf("%d profiles folded from memory, %d from the log", len(ids), len(rids))
	}
	for i, id := range ids {
		if rids[i] != id {
			t.Fatalf("profile %d: %s from memory, %s from the log", i, id, rids[i])
		}
		a, b := find(t, mem, 1, LookupProfile, id), find(t, read, 1, LookupProfile, id)
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) {
			t.Fatalf("profile %s from memory:\n%s\nfrom the log:\n%s", id, ja, jb)
		}
		_, ta, err := mem.Timeline(ctx, 1, LookupProfile, id, TimelineQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		_, tb, err := read.Timeline(ctx, 1, LookupProfile, id, TimelineQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(ta) == 0 || fmt.Sprint(ta) != fmt.Sprint(tb) {
			t.Fatalf("timeline of %s: %v from memory, %v from the log", id, ta, tb)
		}
	}
}

// A Batch above what one read of the log returns folds in reads of that
// many: with 20 000 every read was refused, retried and refused again,
// and the consumer folded nothing while ingest went on.
func TestBatchAboveTheLogsReadLimit(t *testing.T) {
	l := openLog(t)
	_, c, _ := registeredConsumer(t, l)
	c.Log, c.Batch = sqlOnly{l}, 2*eventlog.MaxLimit
	evs := benchEvents(eventlog.MaxLimit+500, true)
	for i := 0; i < len(evs); i += 500 {
		if _, err := l.Append(context.Background(), evs[i:i+500]); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := c.WaitFor(wctx, l.Head()); err != nil {
		t.Fatalf("the consumer did not pass the head: %v", err)
	}
	if got := testutil.ToFloat64(c.applied); got != float64(len(evs)) {
		t.Fatalf("applied %v events, want %d", got, len(evs))
	}
}

// The consumer's counters say what it folded: events applied, merges and
// the links the merge rule refused.
func TestConsumerCountsMergesAndConflicts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := openLog(t)
	s, c, reg := registeredConsumer(t, l)
	go c.Run(ctx)
	for _, e := range []*event.Event{
		ev(0, 1, "in.s2s.user", 1000, `{}`, "phone_hash="+strings.Repeat("a", 64)),
		ev(0, 1, "in.s2s.user", 2000, `{}`, "custom_user_id=k"),
		// links the two: one merge
		ev(0, 1, "in.s2s.user", 3000, `{}`, "phone_hash="+strings.Repeat("a", 64), "custom_user_id=k"),
		// a second custom_user_id beside k: refused, one conflict
		ev(0, 1, "in.s2s.user", 4000, `{}`, "custom_user_id=k", "custom_user_id=other"),
		{Key: "in.gen.x.y", ProjectID: 1, Time: 5000, Dialect: "gen", Data: json.RawMessage(`{}`)}, // no identities
	} {
		e.Channel, e.Service, e.Name, e.ReceivedAt = "http", "test", "test", 1
		if _, err := l.Append(ctx, []*event.Event{e}); err != nil {
			t.Fatal(err)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := c.WaitFor(wctx, l.Head()); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"sluice_profiles_events_applied_total": 4, "sluice_profiles_merges_total": 1,
		"sluice_profiles_conflicts_total": 1, "sluice_profiles_rebuilt_total": 0, "sluice_profiles_lag_seconds": 0,
	} {
		if got := gathered(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	p := find(t, s, 1, "custom_user_id", "k")
	if len(p.Merged) != 1 || len(p.Conflicts) != 1 || p.Conflicts[0].Value != "other" {
		t.Fatalf("merged %v, conflicts %+v", p.Merged, p.Conflicts)
	}
}

func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
