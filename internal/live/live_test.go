package live

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
)

// counting is the real log, counting the reads the hub makes.
type counting struct {
	*sqlite.Log
	reads atomic.Int64
}

func (c *counting) Read(ctx context.Context, q eventlog.Query) ([]eventlog.Record, error) {
	c.reads.Add(1)
	return c.Log.Read(ctx, q)
}

func openLog(t *testing.T) *counting {
	t.Helper()
	l, err := sqlite.Open(sqlite.Config{Path: filepath.Join(t.TempDir(), "events.db"), Worker: 1}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &counting{Log: l}
}

func ev(p uint32, key string, n int, ids ...event.Identity) *event.Event {
	return &event.Event{
		Key: key, Channel: event.ChannelHTTP, Service: "svc", Name: "name", ProjectID: p,
		Data: json.RawMessage(fmt.Sprintf(`{"n":%d,"note":"Order Shipped"}`, n)), Time: int64(1_700_000_000_000 + n),
		Dialect: "webhook", ReceivedAt: 1_700_000_000_000, Identities: ids,
	}
}

func appendN(t *testing.T, l eventlog.Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if _, err := l.Append(context.Background(), []*event.Event{ev(1, "in.gen.a.b", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// startHub runs a hub over l until the test ends, and waits for it to
// take its place in the log.
func startHub(t *testing.T, cfg Config, l Source) *Hub {
	t.Helper()
	h := New(cfg, l, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	<-h.Started()
	return h
}

// collect takes from s until it has n items or the deadline passes.
func collect(t *testing.T, s *Subscription, n int) (items []Item, missed int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for len(items)+missed < n {
		select {
		case <-s.Ready():
			it, m := s.Take()
			items, missed = append(items, it...), missed+m
		case <-deadline:
			t.Fatalf("got %d items and %d missed, want %d", len(items), missed, n)
		}
	}
	return items, missed
}

func dataN(t *testing.T, e *Event) int {
	t.Helper()
	var v struct {
		Data struct{ N int } `json:"data"`
	}
	if err := json.Unmarshal(e.Body, &v); err != nil {
		t.Fatal(err)
	}
	return v.Data.N
}

// Fifty subscribers each get every event committed after they
// subscribed, once, in log order, while the log is read by one follower:
// the reads do not grow with the subscribers.
func TestOneFollowerFansOutToEverySubscriber(t *testing.T) {
	l := openLog(t)
	appendN(t, l, 0, 3) // before the hub: not live
	h := startHub(t, Config{}, l)
	const subscribers, events = 50, 40
	subs := make([]*Subscription, subscribers)
	for i := range subs {
		s, err := h.Subscribe(Filter{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		subs[i] = s
	}
	before := l.reads.Load()
	appendN(t, l, 100, events)
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			items, missed := collect(t, s, events)
			if missed != 0 || len(items) != events {
				t.Errorf("%d items, %d missed", len(items), missed)
				return
			}
			for i, it := range items {
				if it.Event == nil || dataN(t, it.Event) != 100+i {
					t.Errorf("item %d is not event %d", i, 100+i)
					return
				}
			}
		}()
	}
	wg.Wait()
	// One read per commit at most (commits that come together are read
	// together), plus the read that finds nothing new.
	if reads := l.reads.Load() - before; reads > events+1 {
		t.Errorf("%d reads of the log for %d commits and %d subscribers", reads, events, subscribers)
	}
	if reads := l.reads.Load() - before; reads < 1 {
		t.Errorf("no read of the log")
	}
}

// Events committed by several writers while subscribers come and go reach
// each subscriber exactly once from its subscription on, none missed.
func TestSubscriberMissesNothingUnderConcurrentAppends(t *testing.T) {
	l := openLog(t)
	h := startHub(t, Config{}, l)
	s, err := h.Subscribe(Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const writers, per = 4, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if _, err := l.Append(context.Background(), []*event.Event{ev(1, "in.gen.a.b", w*per+i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	// Others subscribe and leave meanwhile.
	for range 20 {
		o, err := h.Subscribe(Filter{}, 5)
		if err != nil {
			t.Fatal(err)
		}
		o.Close()
	}
	wg.Wait()
	items, missed := collect(t, s, writers*per)
	if missed != 0 {
		t.Fatalf("%d missed", missed)
	}
	seen := map[int]bool{}
	var last event.ID
	for _, it := range items {
		if it.Event.ID <= last {
			t.Fatalf("event %s after %s: not in log order", it.Event.ID, last)
		}
		last = it.Event.ID
		n := dataN(t, it.Event)
		if seen[n] {
			t.Fatalf("event %d twice", n)
		}
		seen[n] = true
	}
	if len(seen) != writers*per {
		t.Fatalf("%d distinct events, want %d", len(seen), writers*per)
	}
}

// A subscriber that does not read loses what overflows its queue, is told
// how much, and holds up neither the follower nor the others.
func TestSlowSubscriberMissesWithoutBlocking(t *testing.T) {
	l := openLog(t)
	h := startHub(t, Config{Queue: 10}, l)
	slow, _ := h.Subscribe(Filter{}, 0)
	defer slow.Close()
	fast, _ := h.Subscribe(Filter{}, 0)
	defer fast.Close()
	done := make(chan []Item)
	go func() {
		var all []Item
		for len(all) < 25 {
			<-fast.Ready()
			it, m := fast.Take()
			if m != 0 {
				t.Errorf("the reading subscriber missed %d", m)
			}
			all = append(all, it...)
		}
		done <- all
	}()
	appendN(t, l, 0, 25)
	select {
	case all := <-done:
		if len(all) != 25 {
			t.Fatalf("fast subscriber got %d", len(all))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reading subscriber was held up")
	}
	for h.Position() < l.Head() {
		time.Sleep(time.Millisecond)
	}
	items, missed := slow.Take()
	if len(items) != 10 || missed != 15 {
		t.Fatalf("slow subscriber: %d items, %d missed; want 10 and 15", len(items), missed)
	}
	if n := dataN(t, items[0].Event); n != 0 {
		t.Fatalf("slow subscriber kept event %d first, want the oldest (0)", n)
	}
	if items, missed := slow.Take(); len(items) != 0 || missed != 0 {
		t.Fatalf("a second Take gave %d items, %d missed", len(items), missed)
	}
}

func TestFilter(t *testing.T) {
	l := openLog(t)
	h := startHub(t, Config{}, l)
	phone := event.Identity{Type: "phone_hash", Value: "abc"}
	mail := event.Identity{Type: "email_hash", Value: "abc"}
	evs := []*event.Event{
		ev(1, "in.s2s.revenue.buy", 1, phone),
		ev(2, "in.s2s.revenue.buy", 2, mail),
		ev(1, "in.gen.calltrack.call", 3),
	}
	if _, err := l.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	for h.Position() < l.Head() {
		time.Sleep(time.Millisecond)
	}
	p1 := uint32(1)
	refusals := []Refusal{
		{Status: 400, Dialect: "track", ProjectID: &p1, Source: "10.0.0.7", Path: "/track", Message: "invalid hit",
			Errors: event.FieldErrors{{Path: "event.transaction.total", Message: "must be a number"}}},
		{Status: 401, Dialect: "s2s", Source: "10.0.0.8", Path: "/", Message: "unknown application id"},
	}
	for _, r := range refusals {
		h.Refused(r)
	}
	for _, tc := range []struct {
		name string
		f    Filter
		want []string // data n of events, "r:<status>" of refusals, in arrival order
	}{
		{"everything", Filter{}, []string{"1", "2", "3", "r:400", "r:401"}},
		{"project", Filter{Projects: []uint32{1}}, []string{"1", "3", "r:400"}},
		{"projects", Filter{Projects: []uint32{2, 1}}, []string{"1", "2", "3", "r:400"}},
		{"key glob", Filter{KeyGlob: "in.s2s.*"}, []string{"1", "2"}},
		{"identity of any type", Filter{Identity: "abc"}, []string{"1", "2"}},
		{"identity of a type", Filter{Identity: "abc", IdentityType: "email_hash"}, []string{"2"}},
		{"text ignores case", Filter{Text: "ORDER shipped"}, []string{"1", "2", "3"}},
		{"text in a refusal's field path", Filter{Text: "transaction.total"}, []string{"r:400"}},
		{"text in a refusal's source", Filter{Text: "10.0.0.8"}, []string{"r:401"}},
		{"no refusals", Filter{NoRefusals: true, Projects: []uint32{1}}, []string{"1", "3"}},
		{"no events", Filter{NoEvents: true}, []string{"r:400", "r:401"}},
		{"nothing", Filter{KeyGlob: "out.*"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := h.Subscribe(tc.f, 100)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			items, _ := s.Take()
			var got []string
			for _, it := range items {
				if it.Event != nil {
					got = append(got, fmt.Sprint(dataN(t, it.Event)))
				} else {
					got = append(got, fmt.Sprint("r:", it.Refusal.Status))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := h.Subscribe(Filter{KeyGlob: "a\x01"}, 0); err == nil {
		t.Fatal("a glob with a control character was taken")
	}
	if _, err := h.Subscribe(Filter{IdentityType: "email_hash"}, 0); err == nil {
		t.Fatal("an identity type without a value was taken")
	}
}

// The backlog is the newest kept items, oldest first, events and
// refusals in the order they came; refusals are kept up to their bound.
func TestBacklogAndRefusalBound(t *testing.T) {
	l := openLog(t)
	appendN(t, l, 0, 5) // before the hub starts: kept as recent
	h := startHub(t, Config{Recent: 4, Refusals: 3}, l)
	h.Refused(Refusal{Status: 400, Message: "a"})
	appendN(t, l, 5, 1)
	for h.Position() < l.Head() {
		time.Sleep(time.Millisecond)
	}
	for _, m := range []string{"b", "c", "d"} {
		h.Refused(Refusal{Status: 400, Message: m})
	}
	s, _ := h.Subscribe(Filter{}, 6)
	defer s.Close()
	items, _ := s.Take()
	var got []string
	for _, it := range items {
		if it.Event != nil {
			got = append(got, fmt.Sprint(dataN(t, it.Event)))
		} else {
			got = append(got, it.Refusal.Message+fmt.Sprint(it.Refusal.Seq))
		}
	}
	// Recent keeps 4 events (2..5), refusals keep 3 (b, c, d: a fell out).
	want := []string{"3", "4", "5", "b2", "c3", "d4"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("backlog %v, want %v", got, want)
	}
}

// Run's goroutine ends with its context; closed subscriptions are gone.
func TestRunStopsAndSubscriptionsClose(t *testing.T) {
	l := openLog(t)
	before := runtime.NumGoroutine()
	h := New(Config{}, l, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	<-h.Started()
	s, _ := h.Subscribe(Filter{}, 0)
	s.Close()
	appendN(t, l, 0, 1)
	for h.Position() < l.Head() {
		time.Sleep(time.Millisecond)
	}
	if it, _ := s.Take(); len(it) != 0 {
		t.Fatalf("a closed subscription received %d items", len(it))
	}
	cancel()
	<-done
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Run returned, %d before", n, before)
	}
}

// An erased event leaves the backlog: Forget drops it here, Erased hides
// one erased through another node; the others stay, in order.
func TestErasedEventsLeaveTheBacklog(t *testing.T) {
	l := openLog(t)
	var otherNode atomic.Int64 // the id another node erased
	h := startHub(t, Config{Erased: func(id event.ID) bool { return int64(id) == otherNode.Load() }}, l)
	appendN(t, l, 0, 5)
	for h.Position() < l.Head() {
		time.Sleep(time.Millisecond)
	}
	backlog := func() (ns []int, ids []event.ID) {
		s, _ := h.Subscribe(Filter{}, 10)
		defer s.Close()
		items, _ := s.Take()
		for _, it := range items {
			ns, ids = append(ns, dataN(t, it.Event)), append(ids, it.Event.ID)
		}
		return ns, ids
	}
	ns, ids := backlog()
	if fmt.Sprint(ns) != "[0 1 2 3 4]" {
		t.Fatalf("backlog %v", ns)
	}
	h.Forget([]event.ID{ids[1], ids[3]})
	otherNode.Store(int64(ids[4]))
	if ns, _ := backlog(); fmt.Sprint(ns) != "[0 2]" {
		t.Fatalf("after erasure: %v, want [0 2]", ns)
	}
}
