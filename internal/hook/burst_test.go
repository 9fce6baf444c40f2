package hook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/sink/httpsink"
)

// liveHeap is the Go heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// A target that is down while 100k events come in: the hook keeps
// retrying without holding the backlog in memory (it stays in the log),
// and when the target is back every event arrives, none parked.
func TestBurstWhileTargetIsDownStaysBoundedThenAllArrive(t *testing.T) {
	const total = 100_000
	f := newFixture(t, true)
	var down atomic.Bool
	down.Store(true)
	var refused atomic.Int64
	var mu sync.Mutex
	seen := make(map[string]int, total)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if down.Load() {
			refused.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		for _, id := range gjson.GetBytes(body, "#.id").Array() {
			seen[id.Str]++
		}
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)

	h := Hook{Name: "burst", Active: true, Events: []string{"in.gen.calltrack.*"}, Type: "http",
		Settings: &httpsink.Settings{URL: srv.URL, Timeout: Duration(5 * time.Second)}, MaxBatchSize: 500, BatchTimeout: Duration(50 * time.Millisecond),
		RetryTimes: intp(100), RetryPeriod: Duration(100 * time.Millisecond)}
	created, err := f.m.Create(context.Background(), h, Start{})
	if err != nil {
		t.Fatal(err)
	}
	base := liveHeap()
	var peak uint64
	sample := func() {
		if h := liveHeap(); h > peak {
			peak = h
		}
	}
	// The burst, in commits of 2000 like a busy s2s gateway.
	var ids []event.ID
	now := time.Now().UnixMilli()
	for i := 0; i < total; i += 2000 {
		evs := make([]*event.Event, 0, 2000)
		for j := i; j < i+2000; j++ {
			evs = append(evs, &event.Event{Key: "in.gen.calltrack.call", Channel: event.ChannelHTTP, Service: "calltrack", Name: "call", ProjectID: 7,
				Data: json.RawMessage(`{"amount":` + strconv.Itoa(j) + `,"note":"a burst while the target is down"}`), Time: now, Dialect: "webhook", ReceivedAt: now})
		}
		res, err := f.log.Append(context.Background(), evs)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			ids = append(ids, r.ID)
		}
		if i%20000 == 0 {
			sample()
		}
	}
	// Down a while longer: retries go on, memory stays put.
	for i := 0; i < 10; i++ {
		time.Sleep(50 * time.Millisecond)
		sample()
	}
	if refused.Load() < 5 {
		t.Fatalf("only %d refused attempts while down", refused.Load())
	}
	// The stored events are ~25 MB of JSON; the hook may hold a few
	// batches of 500 (recorded ahead of their places too), never the
	// backlog: well under half of it.
	if grew := int64(peak) - int64(base); grew > 12<<20 {
		t.Fatalf("live heap grew by %d MiB while the target was down (from %d to %d)", grew>>20, base>>20, peak>>20)
	}
	t.Logf("live heap %d KiB before the burst, peak %d KiB while down; %d refused attempts", base>>10, peak>>10, refused.Load())

	down.Store(false)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events arrived", n, total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if seen[id.String()] != 1 {
			t.Fatalf("event %s arrived %d times", id, seen[id.String()])
		}
	}
	if dls, _ := f.m.DeadLetters(context.Background(), created.ID, DeadLetterQuery{}); len(dls) != 0 {
		t.Fatalf("%d dead letters", len(dls))
	}
	waitFor(t, "the cursor at the last event", func() bool { g, _ := f.m.Get(created.ID); return g.Cursor == ids[len(ids)-1] })
}
