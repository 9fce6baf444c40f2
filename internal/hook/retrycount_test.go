package hook

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// A batch that keeps failing goes on counting its attempts across
// restarts, on hooks.db and on PostgreSQL: after a restart the next
// attempt has the next number (in the attempt log and as
// sends_trying_num), the same webhook-id, and the retry budget counts the
// attempts made before, so a batch that failed retry_times+1 times over
// two restarts is parked as a dead letter.
func TestRetryCountSurvivesRestarts(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			f := newFixtureWith(t, true, func(f *fixture) {
				if backend == "postgres" {
					f.store = NewPostgres(pgPool(t, Migrations))
				}
			})
			rc := newReceiver(t, func(int, *http.Request) (int, string, map[string]string) { return 500, "down", nil })
			hk := httpHook(rc.URL)
			// Four attempts; the wait between them leaves time to restart.
			hk.RetryTimes, hk.RetryPeriod, hk.StopAfterDeadLetters = intp(3), Duration(time.Second), 10
			h, err := f.m.Create(context.Background(), hk, Start{})
			if err != nil {
				t.Fatal(err)
			}
			ids := f.appendEvents("in.gen.calltrack.call", 7, 2)
			logged := func(n int) {
				t.Helper()
				waitFor(t, itoa(n)+" attempts logged", func() bool {
					d, _ := f.m.Deliveries(context.Background(), h.ID, 10)
					return len(d) == n
				})
			}
			// Attempts 1 and 2 each end with a restart while the batch
			// waits for its retry.
			for n := 1; n <= 2; n++ {
				logged(n)
				if got := len(rc.requests()); got != n {
					t.Fatalf("%d requests before restart %d", got, n)
				}
				f.m.Close()
				f.open(true)
			}
			waitFor(t, "a dead letter", func() bool {
				dls, _ := f.m.DeadLetters(context.Background(), h.ID, DeadLetterQuery{})
				return len(dls) == 1
			})
			reqs := rc.requests()
			if len(reqs) != 4 {
				t.Fatalf("%d requests, want 4 (1 + retry_times, across the restarts)", len(reqs))
			}
			batch := reqs[0].header.Get("webhook-id")
			for i, r := range reqs {
				if id := r.header.Get("webhook-id"); id != batch {
					t.Fatalf("attempt %d: webhook-id %s, want %s", i+1, id, batch)
				}
				if len(r.msgs) != 2 || r.msgs[0]["id"] != ids[0].String() || r.msgs[1]["id"] != ids[1].String() {
					t.Fatalf("attempt %d: %v", i+1, r.msgs)
				}
				for _, m := range r.msgs {
					try, has := m["sends_trying_num"]
					if (i == 0 && has) || (i > 0 && try != float64(i)) {
						t.Fatalf("attempt %d: sends_trying_num %v (present %v), want %d", i+1, try, has, i)
					}
				}
			}
			d, err := f.m.Deliveries(context.Background(), h.ID, 10)
			if err != nil || len(d) != 4 {
				t.Fatalf("attempt log %+v %v", d, err)
			}
			for i, a := range d { // newest first
				if want := 4 - i; a.Attempt != want || a.BatchID != batch || a.Status != 500 {
					t.Fatalf("attempt log entry %d: attempt %d batch %s status %d, want attempt %d of %s", i, a.Attempt, a.BatchID, a.Status, want, batch)
				}
			}
			dls, _ := f.m.DeadLetters(context.Background(), h.ID, DeadLetterQuery{})
			if dl := dls[0]; dl.BatchID != batch || dl.Attempts != 4 || dl.Events != 2 {
				t.Fatalf("dead letter %+v", dl)
			}
			waitFor(t, "the cursor past the dead letter", func() bool { g, _ := f.m.Get(h.ID); return g.Cursor == ids[1] })
			if in, _ := f.m.store.Inflight(context.Background(), h.ID); len(in) != 0 {
				t.Fatalf("still in flight: %+v", in)
			}
			time.Sleep(300 * time.Millisecond)
			if n := len(rc.requests()); n != 4 {
				t.Fatalf("%d requests after the dead letter", n)
			}
		})
	}
}

// The node that takes a hook over goes on with the attempts of its batch
// in flight where the node before stopped.
func TestClusterTakeOverContinuesTheAttemptCount(t *testing.T) {
	f := newClusterFixture(t)
	rc := newReceiver(t, func(int, *http.Request) (int, string, map[string]string) { return 500, "down", nil })
	a := f.start("a")
	hk := clusterHook(rc.URL)
	hk.RetryTimes, hk.RetryPeriod, hk.StopAfterDeadLetters = intp(2), Duration(2*time.Second), 10
	h, err := a.Create(context.Background(), hk, Start{})
	if err != nil {
		t.Fatal(err)
	}
	f.append(1)
	waitForLong(t, 10*time.Second, "attempt 1 logged", func() bool {
		d, _ := a.Deliveries(context.Background(), h.ID, 10)
		return len(d) == 1
	})
	// a leaves while the batch waits for its retry; b takes the hook over.
	f.nodes["a"].cancel()
	a.Close()
	delete(f.nodes, "a")
	b := f.start("b")
	waitForLong(t, 10*time.Second, "a dead letter parked by b", func() bool {
		dls, _ := b.DeadLetters(context.Background(), h.ID, DeadLetterQuery{})
		return len(dls) == 1
	})
	reqs := rc.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (1 + retry_times, over both nodes)", len(reqs))
	}
	for i, r := range reqs {
		try, has := r.msgs[0]["sends_trying_num"]
		if r.header.Get("webhook-id") != reqs[0].header.Get("webhook-id") || (i == 0 && has) || (i > 0 && try != float64(i)) {
			t.Fatalf("attempt %d: webhook-id %s, sends_trying_num %v", i+1, r.header.Get("webhook-id"), try)
		}
	}
	d, _ := b.Deliveries(context.Background(), h.ID, 10)
	if len(d) != 3 || d[0].Attempt != 3 || d[1].Attempt != 2 || d[2].Attempt != 1 {
		t.Fatalf("attempt log %+v", d)
	}
	if dls, _ := b.DeadLetters(context.Background(), h.ID, DeadLetterQuery{}); dls[0].Attempts != 3 {
		t.Fatalf("dead letter %+v", dls[0])
	}
}
