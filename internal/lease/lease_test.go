package lease

import (
	"context"
	"errors"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/pgmigrate"
	"github.com/sluicehq/sluice/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newPostgres(t *testing.T) *Postgres {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), pgtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pgmigrate.Apply(context.Background(), pool, Migrations); err != nil {
		t.Fatal(err)
	}
	return NewPostgres(pool)
}

func acquire(t *testing.T, l Leaser, holder string, ttl time.Duration, names ...string) []string {
	t.Helper()
	held, err := l.Acquire(context.Background(), holder, ttl, names)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(held)
	return held
}

func TestPostgresLeases(t *testing.T) {
	ctx := context.Background()
	l := newPostgres(t)
	if got := acquire(t, l, "a", time.Minute, "hook:1", "hook:2"); !reflect.DeepEqual(got, []string{"hook:1", "hook:2"}) {
		t.Fatalf("a took %v", got)
	}
	// Held by a: b gets only what is free.
	if got := acquire(t, l, "b", time.Minute, "hook:1", "hook:3"); !reflect.DeepEqual(got, []string{"hook:3"}) {
		t.Fatalf("b took %v", got)
	}
	// a renews its own.
	if got := acquire(t, l, "a", time.Minute, "hook:1", "hook:2", "hook:3"); !reflect.DeepEqual(got, []string{"hook:1", "hook:2"}) {
		t.Fatalf("a renewed %v", got)
	}
	// Released, a lease is free at once.
	if err := l.Release(ctx, "a", []string{"hook:2"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx, "b", []string{"hook:1"}); err != nil { // not b's: nothing happens
		t.Fatal(err)
	}
	if got := acquire(t, l, "b", time.Minute, "hook:1", "hook:2"); !reflect.DeepEqual(got, []string{"hook:2"}) {
		t.Fatalf("b took %v after a released hook:2", got)
	}
	// Expired, another takes it.
	if got := acquire(t, l, "c", 200*time.Millisecond, "node:c"); len(got) != 1 {
		t.Fatalf("c: %v", got)
	}
	if got := acquire(t, l, "d", time.Minute, "node:c"); len(got) != 0 {
		t.Fatalf("d took an unexpired lease: %v", got)
	}
	time.Sleep(300 * time.Millisecond)
	if got := acquire(t, l, "d", time.Minute, "node:c"); len(got) != 1 {
		t.Fatalf("d did not take an expired lease: %v", got)
	}
	acquire(t, l, "e", time.Minute, "node:e")
	acquire(t, l, "f", 100*time.Millisecond, "node:f")
	time.Sleep(200 * time.Millisecond)
	if n, err := l.Holders(ctx, "node:"); err != nil || n != 2 {
		t.Fatalf("holders of node leases: %d %v (d and e; f expired)", n, err)
	}
	if n, _ := l.Holders(ctx, "hook:"); n != 2 {
		t.Fatalf("holders of hook leases: %d", n)
	}
}

// flaky is a Leaser whose store can be cut off, as a node that loses
// the database.
type flaky struct {
	Leaser
	cut atomic.Bool
}

func (f *flaky) Acquire(ctx context.Context, holder string, ttl time.Duration, names []string) ([]string, error) {
	if f.cut.Load() {
		<-ctx.Done() // the request hangs
		return nil, ctx.Err()
	}
	return f.Leaser.Acquire(ctx, holder, ttl, names)
}

func (f *flaky) Release(ctx context.Context, holder string, names []string) error {
	if f.cut.Load() {
		return errors.New("cut off")
	}
	return f.Leaser.Release(ctx, holder, names)
}

// Two nodes run one job: it runs on one at a time, moves to the other
// when its node stops (at once) or loses the database (once the lease
// has expired), and never runs on both.
func TestRunOneAtATime(t *testing.T) {
	l := newPostgres(t)
	timing := Timing{TTL: time.Second, Renew: 200 * time.Millisecond}
	var mu sync.Mutex
	running := map[string]bool{}
	var overlaps, starts atomic.Int32
	job := func(node string) func(ctx context.Context) {
		return func(ctx context.Context) {
			mu.Lock()
			for other, on := range running {
				if on && other != node {
					overlaps.Add(1)
				}
			}
			running[node] = true
			starts.Add(1)
			mu.Unlock()
			<-ctx.Done()
			mu.Lock()
			running[node] = false
			mu.Unlock()
		}
	}
	runningOn := func() string {
		mu.Lock()
		defer mu.Unlock()
		for n, on := range running {
			if on {
				return n
			}
		}
		return ""
	}
	waitRunning := func(within time.Duration, not string) string {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			if n := runningOn(); n != "" && n != not {
				return n
			}
			if time.Now().After(deadline) {
				t.Fatalf("the job did not run (but on %q) within %v", not, within)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	nodes := map[string]*flaky{"a": {Leaser: l}, "b": {Leaser: l}}
	cancels := map[string]context.CancelFunc{}
	var wg sync.WaitGroup
	start := func(n string) {
		ctx, cancel := context.WithCancel(context.Background())
		cancels[n] = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			Run(ctx, nodes[n], timing, n, "profiles", nil, job(n))
		}()
	}
	start("a")
	first := waitRunning(time.Second, "")
	start("b")
	time.Sleep(500 * time.Millisecond)
	if got := runningOn(); got != first {
		t.Fatalf("the job moved to %q while %q held it", got, first)
	}
	// The holder stops: the other takes over at once (the lease is
	// released), well before it would expire.
	stopped := time.Now()
	cancels[first]()
	second := waitRunning(timing.TTL, first)
	if took := time.Since(stopped); took > 2*timing.Renew+100*time.Millisecond {
		t.Fatalf("took over %v after a stop", took)
	}
	start(first)
	// The holder loses the database: it stops the job before its lease
	// can have expired, and the other takes it after.
	nodes[second].cut.Store(true)
	cut := time.Now()
	third := waitRunning(timing.TTL+2*timing.Renew+time.Second, second)
	if third != first || time.Since(cut) < timing.TTL-timing.Renew {
		t.Fatalf("taken by %q %v after the cut", third, time.Since(cut))
	}
	for _, c := range cancels {
		c()
	}
	wg.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("the job ran on two nodes at once %d times", n)
	}
	if n := starts.Load(); n != 3 {
		t.Fatalf("%d starts, want 3", n)
	}
}

func TestLocalHoldsEverything(t *testing.T) {
	ctx := context.Background()
	if got, _ := (Local{}).Acquire(ctx, "a", time.Second, []string{"x", "y"}); !reflect.DeepEqual(got, []string{"x", "y"}) {
		t.Fatal(got)
	}
	ran := make(chan struct{})
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		Run(ctx, Local{}, Timing{}, "a", "retention", nil, func(ctx context.Context) { close(ran); <-ctx.Done() })
		close(done)
	}()
	select {
	case <-ran:
	case <-time.After(time.Second):
		t.Fatal("the job did not run at once")
	}
	cancel()
	<-done
}
