package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// A target that fails every fifth request: the tool counts requests,
// events and errors exactly, sends the right request, and reports a ratio
// against its own baseline.
func TestRunCountsAndBaseline(t *testing.T) {
	var n atomic.Int64
	var badBody atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != "POST" || r.URL.Path != "/bench/event/7" || r.URL.Query().Get("token") != "tok" ||
			r.Header.Get("Content-Type") != "application/json" || string(b) != DefaultWebhookPayload {
			badBody.Store(true)
		}
		if n.Add(1)%5 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"key":"in.gen.bench.event","id":"1"}`))
	}))
	defer srv.Close()
	cfg := Config{URL: srv.URL, Connections: 4, Count: 500, Project: 7, Token: "tok", Baseline: true}
	results, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if badBody.Load() {
		t.Fatal("the target got a malformed request")
	}
	if len(results) != 2 || results[0].Name != "target" || results[1].Name != "baseline" {
		t.Fatalf("results %+v", results)
	}
	tr := results[0]
	if tr.Requests != 500 || tr.Errors != 100 || tr.Events != 400 || tr.Statuses[503] != 100 || tr.Statuses[200] != 400 {
		t.Fatalf("target: requests %d errors %d events %d statuses %v", tr.Requests, tr.Errors, tr.Events, tr.Statuses)
	}
	if tr.Latency.P50 <= 0 || tr.Latency.P50 > tr.Latency.P99 || tr.Latency.P99 > tr.Latency.Max {
		t.Fatalf("latency %+v", tr.Latency)
	}
	if b := results[1]; b.Requests != 500 || b.Errors != 0 || b.Events != 500 {
		t.Fatalf("baseline %+v", b)
	}
	var out bytes.Buffer
	Report(&out, cfg, results)
	for _, want := range []string{"target", "baseline (bare net/http handler, same body)", "errors 100", "100×503", "ratio target/baseline:"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunForDuration(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer srv.Close()
	start := time.Now()
	results, err := Run(context.Background(), Config{URL: srv.URL, Connections: 2, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 400*time.Millisecond || el > 5*time.Second {
		t.Fatalf("ran %v", el)
	}
	if r := results[0]; r.Requests == 0 || r.Errors != 0 || r.Elapsed < 300*time.Millisecond {
		t.Fatalf("%+v", r)
	}
}

func TestUnknownDialect(t *testing.T) {
	if _, err := Run(context.Background(), Config{URL: "http://127.0.0.1:1", Dialect: "smoke-signals", Count: 1}); err == nil {
		t.Fatal("unknown dialect accepted")
	}
}

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	s := summarize(d)
	if s.P50 != 50*time.Millisecond || s.P90 != 90*time.Millisecond || s.P99 != 99*time.Millisecond || s.Max != 100*time.Millisecond {
		t.Fatalf("%+v", s)
	}
}

func TestServeBaseline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeBaseline(ctx, addr) }()
	var resp *http.Response
	for i := 0; i < 100; i++ {
		if resp, err = http.Post("http://"+addr+"/bench/event/0", "application/json", strings.NewReader("{}")); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("baseline: %v %v", resp, err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Track loads send the seed's hit with a fresh version-1 hitId each time
// (single and batch), with the token as HTTP Basic user name.
func TestTrackLoadsUseFreshHitIDs(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	var bad atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		b, _ := io.ReadAll(r.Body)
		var hits []map[string]any
		if r.URL.Path == "/track/batch" {
			var env struct{ Batch []map[string]any }
			json.Unmarshal(b, &env)
			hits = env.Batch
		} else {
			var h map[string]any
			json.Unmarshal(b, &h)
			hits = []map[string]any{h}
		}
		if !ok || user != "abc123" || pass != "" || len(hits) == 0 {
			bad.Store("auth or body: " + string(b[:min(len(b), 80)]))
		}
		mu.Lock()
		defer mu.Unlock()
		for _, h := range hits {
			id, _ := h["hitId"].(string)
			u, err := uuid.Parse(id)
			if err != nil || u.Version() != 1 || seen[id] {
				bad.Store("hitId " + id)
			}
			seen[id] = true
		}
	}))
	defer srv.Close()
	for _, d := range []string{"track", "track-batch"} {
		res, err := Run(context.Background(), Config{URL: srv.URL, Dialect: d, Batch: 10, Token: "abc123", Connections: 4, Count: 200})
		if err != nil {
			t.Fatal(err)
		}
		want := int64(200)
		if d == "track-batch" {
			want = 2000
		}
		if res[0].Events != want || res[0].Errors != 0 {
			t.Fatalf("%s: %+v", d, res[0])
		}
	}
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	if len(seen) != 2200 {
		t.Fatalf("%d distinct hitIds, want 2200", len(seen))
	}
}

// s2s loads send 100 action messages per request with unique ids and the
// application id and key headers, each request for another of 1 000
// people.
func TestS2SLoadMessagesAreUnique(t *testing.T) {
	var mu sync.Mutex
	seen, users := map[string]bool{}, map[string]bool{}
	var bad atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var env struct {
			CustomUserID string `json:"customUserId"`
			Messages     []struct{ Type, ID, Name string }
		}
		if err := json.NewDecoder(r.Body).Decode(&env); err != nil || len(env.Messages) != 100 || env.CustomUserID == "" ||
			r.Header.Get("X-Application-Id") != "app-1" || r.Header.Get("X-API-Key") != "key-1" || r.URL.Path != "/" {
			bad.Store("request")
		}
		mu.Lock()
		defer mu.Unlock()
		users[env.CustomUserID] = true
		for _, m := range env.Messages {
			if m.Type != "action" || m.Name != "slug1" || seen[m.ID] {
				bad.Store("message " + m.ID)
			}
			seen[m.ID] = true
		}
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{URL: srv.URL, Dialect: "s2s", AppID: "app-1", Token: "key-1", Slug: "slug1", Connections: 4, Count: 50})
	if err != nil {
		t.Fatal(err)
	}
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	if res[0].Events != 5000 || len(seen) != 5000 {
		t.Fatalf("events %d, distinct ids %d", res[0].Events, len(seen))
	}
	// Each request speaks for another of 1 000 people.
	if len(users) != 50 {
		t.Fatalf("%d distinct users in 50 requests: %v", len(users), users)
	}
	if _, err := Run(context.Background(), Config{URL: srv.URL, Dialect: "s2s", Count: 1}); err == nil {
		t.Fatal("s2s without --app-id accepted")
	}
}

// commerce loads send 20-item purchases with unique transaction ids, one
// per request or in batches, with the token as Bearer.
func TestCommerceLoadPurchasesAreUnique(t *testing.T) {
	for _, c := range []struct {
		dialect string
		per     int
	}{{"commerce", 1}, {"commerce-batch", 10}} {
		var mu sync.Mutex
		seen := map[string]bool{}
		var bad atomic.Value
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			type purchase struct {
				Name       string
				Properties struct {
					EventType           string
					UniqueTransactionID string
					Cart                []struct {
						ProductID string
						Quantity  int
						ItemPrice float64
					}
				}
			}
			var evs []purchase
			var err error
			if c.per == 1 {
				var p purchase
				err = json.NewDecoder(r.Body).Decode(&p)
				evs = append(evs, p)
			} else {
				var b struct{ Batch []purchase }
				err = json.NewDecoder(r.Body).Decode(&b)
				evs = b.Batch
			}
			if err != nil || len(evs) != c.per || r.Header.Get("Authorization") != "Bearer tok" || r.URL.Path != "/v1/events" {
				bad.Store("request")
			}
			mu.Lock()
			defer mu.Unlock()
			for _, e := range evs {
				id := e.Properties.UniqueTransactionID
				if e.Properties.EventType != "purchase-v1" || len(e.Properties.Cart) != 20 || e.Properties.Cart[19].Quantity < 1 || seen[id] {
					bad.Store("purchase " + id)
				}
				seen[id] = true
			}
		}))
		res, err := Run(context.Background(), Config{URL: srv.URL, Dialect: c.dialect, Token: "tok", Batch: c.per, Connections: 4, Count: 30})
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		if v := bad.Load(); v != nil {
			t.Fatal(c.dialect, v)
		}
		if res[0].Events != int64(30*c.per) || len(seen) != 30*c.per {
			t.Fatalf("%s: events %d, distinct ids %d", c.dialect, res[0].Events, len(seen))
		}
	}
	if _, err := Run(context.Background(), Config{URL: "http://127.0.0.1:1", Dialect: "commerce", Count: 1}); err == nil {
		t.Fatal("commerce without --token accepted")
	}
}
