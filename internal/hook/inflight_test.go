package hook

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"
)

// With max_in_flight 3, batches go out together; the cursor does not pass
// a batch that is still in flight even when later ones are done; after a
// restart only the unfinished batch goes again (same id, same events),
// and the finished ones are not resent.
func TestMaxInFlightKeepsTheCursorBehindTheOldestBatch(t *testing.T) {
	f := newFixture(t, true)
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	var first string // the batch that carries the first event hangs
	var mu sync.Mutex
	var rc *receiver
	rc = newReceiver(t, func(n int, r *http.Request) (int, string, map[string]string) {
		msgs := rc.requests()[n-1].msgs
		mu.Lock()
		if first == "" && len(msgs) == 1 && msgs[0]["data"].(map[string]any)["amount"] == float64(0) {
			first = r.Header.Get("webhook-id")
		}
		hang := first == r.Header.Get("webhook-id")
		mu.Unlock()
		if hang {
			select {
			case <-release: // after the restart it answers
			case <-r.Context().Done():
				return 503, "", nil
			}
		}
		return 200, "ok", nil
	})
	hk := httpHook(rc.URL)
	hk.MaxBatchSize, hk.MaxInFlight = 1, 3
	httpOf(&hk).Timeout = Duration(30 * time.Second)
	h, err := f.m.Create(context.Background(), hk, Start{})
	if err != nil {
		t.Fatal(err)
	}
	ids := f.appendEvents("in.gen.calltrack.call", 7, 3)
	// The first batch hangs; the two others arrive meanwhile.
	waitFor(t, "three batches sent", func() bool { return len(rc.requests()) == 3 })
	time.Sleep(100 * time.Millisecond) // let the two commits land
	if g, _ := f.m.Get(h.ID); g.Cursor >= ids[0] {
		t.Fatalf("cursor %s passed the batch in flight (first event %s)", g.Cursor, ids[0])
	}
	// Two of three places are free again: a fourth event goes at once.
	ids = append(ids, f.appendEvents("in.gen.calltrack.call", 7, 1)...)
	waitFor(t, "the fourth event", func() bool { return len(rc.requests()) == 4 })
	if g, _ := f.m.Get(h.ID); g.Cursor >= ids[0] {
		t.Fatalf("cursor %s passed the batch in flight", g.Cursor)
	}
	mu.Lock()
	hung := first
	mu.Unlock()
	var sent received
	for _, r := range rc.requests() {
		if r.header.Get("webhook-id") == hung {
			sent = r
		}
	}
	// The fourth batch's answer is in the store before the restart (else it
	// is rightly sent again: at least once), and only the hung one is left.
	waitFor(t, "only the hung batch in flight", func() bool {
		bs, err := f.m.store.Inflight(context.Background(), h.ID)
		return err == nil && len(bs) == 1 && bs[0].BatchID == hung
	})
	// Restart while the first batch hangs: it stays in flight.
	f.m.Close()
	once.Do(func() { close(release) })
	f.open(true)
	waitFor(t, "the hung batch again", func() bool { return len(rc.requests()) >= 5 })
	time.Sleep(200 * time.Millisecond)
	reqs := rc.requests()
	if len(reqs) != 5 {
		for _, r := range reqs {
			t.Logf("%s %v", r.header.Get("webhook-id"), r.msgs[0]["id"])
		}
		t.Fatalf("%d requests after the restart, want 5 (only the unfinished batch again)", len(reqs))
	}
	again := reqs[4]
	if again.header.Get("webhook-id") != hung || len(again.msgs) != 1 || again.msgs[0]["id"] != sent.msgs[0]["id"] || sent.msgs[0]["id"] != ids[0].String() {
		t.Fatalf("resent %s %v, want batch %s with event %v", again.header.Get("webhook-id"), again.msgs, hung, ids[0])
	}
	waitFor(t, "the cursor at the last event", func() bool { g, _ := f.m.Get(h.ID); return g.Cursor == ids[3] })
	// Every event arrived, each once (the hung one twice: at least once).
	seen := map[any]int{}
	for _, r := range reqs {
		for _, m := range r.msgs {
			seen[m["id"]]++
		}
	}
	for i, id := range ids {
		want := 1
		if i == 0 {
			want = 2
		}
		if seen[id.String()] != want {
			t.Fatalf("event %d (%s) arrived %d times, want %d", i, id, seen[id.String()], want)
		}
	}
}
