package hook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
	"github.com/sluicehq/sluice/internal/lease"
	"github.com/sluicehq/sluice/internal/project"
)

// cutLeaser is a node's view of the leases, which the test can cut off
// as a node that loses the database.
type cutLeaser struct {
	lease.Leaser
	cut atomic.Bool
}

func (c *cutLeaser) Acquire(ctx context.Context, holder string, ttl time.Duration, names []string) ([]string, error) {
	if c.cut.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return c.Leaser.Acquire(ctx, holder, ttl, names)
}

func (c *cutLeaser) Release(ctx context.Context, holder string, names []string) error {
	if c.cut.Load() {
		return context.Canceled
	}
	return c.Leaser.Release(ctx, holder, names)
}

// clusterFixture is nodes sharing one PostgreSQL store of hooks, one
// event log and one project store.
type clusterFixture struct {
	t      *testing.T
	log    *sqlite.Log
	ps     *project.Store
	store  Store
	leases lease.Leaser
	dir    string
	nodes  map[string]*clusterNode
}

type clusterNode struct {
	m      *Manager
	leases *cutLeaser
	cancel context.CancelFunc
}

var clusterTiming = lease.Timing{TTL: time.Second, Renew: 200 * time.Millisecond}

func newClusterFixture(t *testing.T) *clusterFixture {
	t.Helper()
	dir := t.TempDir()
	l, err := sqlite.Open(sqlite.Config{Path: filepath.Join(dir, "events.db")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := project.Open(filepath.Join(dir, "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	id := uint32(7)
	if _, err := ps.Create(context.Background(), &id, "shop", project.Settings{}); err != nil {
		t.Fatal(err)
	}
	pool := pgPool(t, Migrations, lease.Migrations)
	f := &clusterFixture{t: t, log: l, ps: ps, store: NewPostgres(pool), leases: lease.NewPostgres(pool), dir: dir, nodes: map[string]*clusterNode{}}
	t.Cleanup(func() {
		for _, n := range f.nodes {
			n.cancel()
			n.m.Close()
		}
		l.Close()
		ps.Close()
	})
	return f
}

func (f *clusterFixture) start(name string) *Manager {
	f.t.Helper()
	cl := &cutLeaser{Leaser: f.leases}
	m, err := Open(Config{Store: f.store, KeyPath: filepath.Join(f.dir, "hooks.key"), Destinations: testDestinations(),
		AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Leases: cl, Holder: name, Timing: clusterTiming},
		f.log, f.ps, nil, nil, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.Start(ctx)
	f.nodes[name] = &clusterNode{m: m, leases: cl, cancel: cancel}
	return m
}

// delivering names the node that runs hook id's worker ("" when none).
func (f *clusterFixture) delivering(id string) []string {
	var out []string
	for name, n := range f.nodes {
		n.m.mu.Lock()
		w := n.m.workers[id]
		if w != nil {
			select {
			case <-w.done:
			default:
				out = append(out, name)
			}
		}
		n.m.mu.Unlock()
	}
	return out
}

func (f *clusterFixture) append(n int) {
	f.t.Helper()
	var evs []*event.Event
	now := time.Now().UnixMilli()
	for i := 0; i < n; i++ {
		evs = append(evs, &event.Event{Key: "in.gen.calltrack.call", Channel: event.ChannelHTTP, Service: "calltrack", Name: "call", ProjectID: 7,
			Data: json.RawMessage(`{"n":` + itoa(i) + `}`), Time: now, Dialect: "webhook", ReceivedAt: now})
	}
	if _, err := f.log.Append(context.Background(), evs); err != nil {
		f.t.Fatal(err)
	}
}

// target records what each hook (by path) was sent, and whether two
// requests for one hook were ever open at once.
type target struct {
	*httptest.Server
	mu       sync.Mutex
	open     map[string]int
	overlaps int
	events   map[string]map[string]int // path → event id → times
	batches  map[string]map[string]int // path → batch id → times
	batchOf  map[string]map[string]string
	slow     atomic.Int64 // how long each request takes, ns
}

func newTarget(t *testing.T, slow time.Duration) *target {
	tg := &target{open: map[string]int{}, events: map[string]map[string]int{}, batches: map[string]map[string]int{},
		batchOf: map[string]map[string]string{}}
	tg.slow.Store(int64(slow))
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		tg.mu.Lock()
		tg.open[p]++
		if tg.open[p] > 1 {
			tg.overlaps++
		}
		tg.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		select {
		case <-time.After(time.Duration(tg.slow.Load())):
		case <-r.Context().Done():
		}
		var msgs []struct {
			ID string `json:"id"`
		}
		json.Unmarshal(body, &msgs)
		tg.mu.Lock()
		tg.open[p]--
		if r.Context().Err() == nil {
			if tg.events[p] == nil {
				tg.events[p], tg.batches[p], tg.batchOf[p] = map[string]int{}, map[string]int{}, map[string]string{}
			}
			b := r.Header.Get("webhook-id")
			tg.batches[p][b]++
			for _, m := range msgs {
				tg.events[p][m.ID]++
				tg.batchOf[p][m.ID] = b
			}
		}
		tg.mu.Unlock()
	}))
	t.Cleanup(tg.Close)
	return tg
}

func (tg *target) delivered(path string) int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return len(tg.events[path])
}

// check fails unless every event of a hook came in a batch and every
// duplicate came again in a batch of the same id.
func (tg *target) check(t *testing.T, paths []string) {
	t.Helper()
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if tg.overlaps != 0 {
		t.Fatalf("%d times a hook's target had two requests open at once", tg.overlaps)
	}
	for _, p := range paths {
		for id, n := range tg.events[p] {
			if n > 1 && tg.batches[p][tg.batchOf[p][id]] < 2 {
				t.Fatalf("%s: event %s came %d times, not as a batch sent again with its id", p, id, n)
			}
		}
	}
}

func clusterHook(url string) Hook {
	h := httpHook(url)
	h.MaxBatchSize, h.MaxInFlight, h.BatchTimeout = 5, 1, Duration(20*time.Millisecond)
	return h
}

// Two nodes share four hooks: each is delivered by one node at a time,
// the hooks spread over both, and when a node loses the database the
// other takes its hooks over from their cursors and batches in flight,
// within TTL plus Renew.
func TestClusterDeliversEachHookByOneNode(t *testing.T) {
	f := newClusterFixture(t)
	tg := newTarget(t, 15*time.Millisecond)
	a := f.start("a")
	var paths, ids []string
	for i := 0; i < 4; i++ {
		p := "/h" + itoa(i)
		h, err := a.Create(context.Background(), clusterHook(tg.URL+p), Start{})
		if err != nil {
			t.Fatal(err)
		}
		paths, ids = append(paths, p), append(ids, h.ID)
	}
	f.start("b")
	total := 0
	for i := 0; i < 10; i++ {
		f.append(20)
		total += 20
		time.Sleep(50 * time.Millisecond)
	}
	waitForLong(t, 20*time.Second, "every event at every hook", func() bool {
		for _, p := range paths {
			if tg.delivered(p) < total {
				return false
			}
		}
		return true
	})
	// Spread: two hooks on each node.
	waitForLong(t, 5*time.Second, "the hooks spread over both nodes", func() bool {
		on := map[string]int{}
		for _, id := range ids {
			d := f.delivering(id)
			if len(d) != 1 {
				return false
			}
			on[d[0]]++
		}
		return on["a"] == 2 && on["b"] == 2
	})
	// a loses the database mid-delivery: b takes its hooks over.
	var onA []string
	for _, id := range ids {
		if d := f.delivering(id); len(d) == 1 && d[0] == "a" {
			onA = append(onA, id)
		}
	}
	tg.slow.Store(int64(60 * time.Millisecond))
	f.append(50)
	total += 50
	f.nodes["a"].leases.cut.Store(true)
	cut := time.Now()
	waitForLong(t, clusterTiming.TTL+3*clusterTiming.Renew, "b delivers a's hooks", func() bool {
		for _, id := range onA {
			if d := f.delivering(id); len(d) != 1 || d[0] != "b" {
				return false
			}
		}
		return true
	})
	if took := time.Since(cut); took < clusterTiming.TTL-clusterTiming.Renew {
		t.Fatalf("b took a's hooks %v after the cut, before their leases could expire", took)
	}
	f.append(30)
	total += 30
	waitForLong(t, 20*time.Second, "every event at every hook after the take-over", func() bool {
		for _, p := range paths {
			if tg.delivered(p) < total {
				return false
			}
		}
		return true
	})
	tg.check(t, paths)
}

// A change made through the node that does not deliver a hook takes
// effect on the node that does within a second: stopped, switched on
// again, sent elsewhere, deleted.
func TestClusterChangesReachTheDeliveringNode(t *testing.T) {
	f := newClusterFixture(t)
	tg := newTarget(t, 0)
	a, b := f.start("a"), f.start("b")
	h, err := a.Create(context.Background(), clusterHook(tg.URL+"/one"), Start{})
	if err != nil {
		t.Fatal(err)
	}
	var deliverer, other *Manager
	waitForLong(t, 5*time.Second, "a node delivering the hook", func() bool { return len(f.delivering(h.ID)) == 1 })
	if f.delivering(h.ID)[0] == "a" {
		deliverer, other = a, b
	} else {
		deliverer, other = b, a
	}
	waitForLong(t, time.Second, "the other node to know the hook", func() bool { _, err := other.Get(h.ID); return err == nil })
	f.append(3)
	waitFor(t, "a first delivery", func() bool { return tg.delivered("/one") == 3 })

	within := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not in effect on the delivering node within a second", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, err := other.Stop(context.Background(), h.ID); err != nil {
		t.Fatal(err)
	}
	within("a stop", func() bool { g, _ := deliverer.Get(h.ID); return !g.Active && len(f.delivering(h.ID)) == 0 })
	f.append(2)
	time.Sleep(300 * time.Millisecond)
	if n := tg.delivered("/one"); n != 3 {
		t.Fatalf("a stopped hook delivered %d events", n)
	}
	if _, err := other.Activate(context.Background(), h.ID, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the events of the stop, after the activation", func() bool { return tg.delivered("/one") == 5 })
	upd := clusterHook(tg.URL + "/two")
	if _, err := other.Update(context.Background(), h.ID, upd); err != nil {
		t.Fatal(err)
	}
	within("a new URL", func() bool {
		for _, n := range f.nodes {
			n.m.mu.Lock()
			w := n.m.workers[h.ID]
			ok := w != nil && strings.HasSuffix(httpOf(&w.hook).URL, "/two")
			n.m.mu.Unlock()
			if ok {
				return true
			}
		}
		return false
	})
	f.append(4)
	waitFor(t, "delivery to the new URL", func() bool { return tg.delivered("/two") == 4 })
	if err := other.Delete(context.Background(), h.ID); err != nil {
		t.Fatal(err)
	}
	within("a deletion", func() bool { _, err := deliverer.Get(h.ID); return err != nil && len(f.delivering(h.ID)) == 0 })
	tg.check(t, []string{"/one", "/two"})
}
