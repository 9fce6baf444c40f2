package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/datadir"
	"github.com/sluicehq/sluice/internal/pgtest"
)

// hookTarget is the receiver of the hooks of TestThreeNodes: it records
// every event each hook (by path) delivered, the batch (webhook-id) it
// came in, when each request came, and whether two requests for one hook
// were ever open at once.
type hookTarget struct {
	*httptest.Server
	mu       sync.Mutex
	open     map[string]int
	overlaps []string
	events   map[string]map[string]int    // path → event id → times
	batchOf  map[string]map[string]string // path → event id → batch id
	batches  map[string]map[string]int    // path → batch id → times
	starts   map[string][]time.Time
}

func newHookTarget(t *testing.T) *hookTarget {
	ht := &hookTarget{open: map[string]int{}, events: map[string]map[string]int{}, batchOf: map[string]map[string]string{},
		batches: map[string]map[string]int{}, starts: map[string][]time.Time{}}
	ht.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		ht.mu.Lock()
		ht.open[p]++
		if ht.open[p] > 1 {
			ht.overlaps = append(ht.overlaps, fmt.Sprintf("%s at %s", p, time.Now().Format(time.StampMicro)))
		}
		ht.starts[p] = append(ht.starts[p], time.Now())
		ht.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		select { // a target that takes its time, so batches are in flight
		case <-time.After(10 * time.Millisecond):
		case <-r.Context().Done():
		}
		var msgs []struct {
			ID string `json:"id"`
		}
		err := json.Unmarshal(body, &msgs)
		ht.mu.Lock()
		defer ht.mu.Unlock()
		ht.open[p]--
		if err != nil || r.Context().Err() != nil {
			w.WriteHeader(500)
			return
		}
		if ht.events[p] == nil {
			ht.events[p], ht.batchOf[p], ht.batches[p] = map[string]int{}, map[string]string{}, map[string]int{}
		}
		b := r.Header.Get("webhook-id")
		ht.batches[p][b]++
		for _, m := range msgs {
			ht.events[p][m.ID]++
			ht.batchOf[p][m.ID] = b
		}
	}))
	t.Cleanup(ht.Close)
	return ht
}

func (ht *hookTarget) has(path string, ids []string) bool {
	ht.mu.Lock()
	defer ht.mu.Unlock()
	for _, id := range ids {
		if ht.events[path][id] == 0 {
			return false
		}
	}
	return true
}

// firstAfter is when the first request for path started after t.
func (ht *hookTarget) firstAfter(path string, t time.Time) (time.Time, bool) {
	ht.mu.Lock()
	defer ht.mu.Unlock()
	for _, s := range ht.starts[path] {
		if s.After(t) {
			return s, true
		}
	}
	return time.Time{}, false
}

var hookActive = regexp.MustCompile(`(?m)^sluice_hook_active\{hook="([^"]+)"\} 1$`)

// delivering lists the hooks whose delivery loop runs on s.
func (s *server) delivering() []string {
	resp, err := client.Get(s.admin + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, m := range hookActive.FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	sort.Strings(out)
	return out
}

// Three `sluice serve` processes share one PostgreSQL: load is spread
// over them and one is SIGKILLed mid-load and mid-delivery, then
// restarted. Every acknowledged event is stored once; every hook gets
// every event, at least once, duplicates only as batches sent again with
// their webhook-id; no hook is ever delivered by two nodes at once; the
// killed node's hooks are taken over within 15 s; a token revoked and a
// hook stopped through one node take effect on the others within a
// second.
func TestThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("three servers, a kill and a take-over: tens of seconds")
	}
	dsn := pgtest.Start(t)
	tg := newHookTarget(t)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfg, []byte(`storage: postgres
hooks:
  allow_networks: [127.0.0.0/8]
  retry_period: 100ms
projects:
  - id: 1
    name: load
    settings: {webhook_dedup_field: n}
  - id: 2
    name: tokens
    settings: {webhook_auth: token}
`), 0o600)
	env := []string{"SLUICE_POSTGRES_DSN=" + dsn}
	nodes, dirs := startNodes(t, 3, env, cfg)
	var nodesMu sync.Mutex
	node := func(i int) *server {
		nodesMu.Lock()
		defer nodesMu.Unlock()
		return nodes[i%3]
	}
	adminCall := func(s *server, method, path, body string) response {
		return do(t, method, s.admin+path, "application/json", body, "Authorization", "Bearer "+testAdminToken)
	}
	var paths, hookIDs []string
	for i := 0; i < 3; i++ {
		p := "/h" + strconv.Itoa(i)
		r := adminCall(nodes[0], "POST", "/api/v1/hooks", `{"name":"load`+strconv.Itoa(i)+`","active":true,"events":["in.gen.load.*"],"project_id":1,
			"type":"http","http":{"url":"`+tg.URL+p+`"},"max_batch_size":20,"batch_timeout":"20ms","max_in_flight":1}`)
		var h struct{ ID string }
		if r.status != 201 || json.Unmarshal(r.body, &h) != nil {
			t.Fatalf("create hook: %d %s", r.status, r.body)
		}
		paths, hookIDs = append(paths, p), append(hookIDs, h.ID)
	}

	// Load: four senders over the three nodes; a refused or lost request
	// goes again to the next node (the dedup field makes that safe).
	var ackMu sync.Mutex
	acked := map[int]string{} // n → event id
	var next atomic.Int64
	stopLoad := make(chan struct{})
	var senders sync.WaitGroup
	sendOne := func(n, at int) {
		body := `{"n":` + strconv.Itoa(n) + `}`
		for try := 0; try < 200; try++ {
			s := node(at + try)
			resp, err := client.Post(s.ingest+"/load/ev/1", "application/json", strings.NewReader(body))
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var a struct{ ID string }
				if resp.StatusCode == 200 && json.Unmarshal(b, &a) == nil && a.ID != "" {
					ackMu.Lock()
					if prev, ok := acked[n]; ok && prev != a.ID {
						t.Errorf("event %d acknowledged as %s and as %s", n, prev, a.ID)
					}
					acked[n] = a.ID
					ackMu.Unlock()
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("event %d was never acknowledged", n)
	}
	for w := 0; w < 4; w++ {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				n := int(next.Add(1))
				sendOne(n, n)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	ackedCount := func() int { ackMu.Lock(); defer ackMu.Unlock(); return len(acked) }
	waitUntil(t, func() bool { return ackedCount() >= 600 })

	// The hooks spread over the nodes; the one delivering most dies.
	waitUntil(t, func() bool {
		n := 0
		for i := 0; i < 3; i++ {
			n += len(node(i).delivering())
		}
		return n == 3
	})
	victim, held := 0, []string(nil)
	for i := 0; i < 3; i++ {
		if d := node(i).delivering(); len(d) > len(held) {
			victim, held = i, d
		}
	}
	killed := time.Now()
	node(victim).kill()
	t.Logf("node %d (holding %v) killed after %d events acknowledged", victim, held, ackedCount())
	time.Sleep(1500 * time.Millisecond)
	restarted := startServerEnv(t, dirs[victim], env, "--config", cfg, "--worker-id", strconv.Itoa(victim+1))
	nodesMu.Lock()
	nodes[victim] = restarted
	nodesMu.Unlock()
	atRestart := ackedCount()
	waitUntil(t, func() bool { return ackedCount() >= atRestart+1500 })
	close(stopLoad)
	senders.Wait()
	total := ackedCount()

	// Every acknowledged event at every hook.
	var ids []string
	ackMu.Lock()
	for _, id := range acked {
		ids = append(ids, id)
	}
	ackMu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for _, p := range paths {
		for !tg.has(p, ids) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not every acknowledged event delivered within a minute", p)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The killed node's hooks went on elsewhere within 15 s.
	pathOf := map[string]string{}
	for i, id := range hookIDs {
		pathOf[id] = paths[i]
	}
	for _, id := range held {
		at, ok := tg.firstAfter(pathOf[id], killed)
		if !ok || at.Sub(killed) > 15*time.Second {
			t.Fatalf("hook %s: first delivery %v after the kill", id, at.Sub(killed))
		}
		t.Logf("hook %s delivered again %v after the kill", id, at.Sub(killed).Round(time.Millisecond))
	}
	tg.mu.Lock()
	if len(tg.overlaps) > 0 {
		t.Fatalf("a hook had two requests open at once (two nodes delivering it): %v", tg.overlaps)
	}
	dups := 0
	for _, p := range paths {
		for id, n := range tg.events[p] {
			if n > 1 {
				dups++
				if b := tg.batchOf[p][id]; tg.batches[p][b] < 2 {
					t.Errorf("%s: event %s came %d times, not in a batch sent again with its webhook-id", p, id, n)
				}
			}
		}
	}
	tg.mu.Unlock()

	// Stored once each, whichever node took it.
	evs := node(1).events(t, "project=1")
	seen := map[string]int{}
	for _, e := range evs {
		var d struct{ N json.Number }
		json.Unmarshal(e.Data, &d)
		seen[d.N.String()]++
	}
	ackMu.Lock()
	for n, id := range acked {
		if c := seen[strconv.Itoa(n)]; c != 1 {
			t.Errorf("event %d (%s) stored %d times", n, id, c)
		}
	}
	ackMu.Unlock()
	if len(evs) < total {
		t.Fatalf("%d events stored, %d acknowledged", len(evs), total)
	}
	t.Logf("%d events acknowledged and stored once each; %d duplicate deliveries, all of batches sent again", total, dups)

	// A token revoked through one node is refused by another within a
	// second.
	r := adminCall(node(0), "POST", "/api/v1/projects/2/tokens", `{"name":"crm"}`)
	var tok struct {
		Token  struct{ ID string } `json:"token"`
		Secret string              `json:"secret"`
	}
	if r.status != 201 || json.Unmarshal(r.body, &tok) != nil || tok.Secret == "" {
		t.Fatalf("create token: %d %s", r.status, r.body)
	}
	send := func(s *server) int {
		return do(t, "POST", s.ingest+"/crm/lead/2?token="+tok.Secret, "application/json", `{"a":1}`).status
	}
	within := func(what string, ok func() bool) {
		t.Helper()
		d := time.Now().Add(time.Second)
		for !ok() {
			if time.Now().After(d) {
				t.Fatalf("%s: not in effect on another node within a second", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	within("a new token", func() bool { return send(node(1)) == 200 })
	if r := adminCall(node(2), "DELETE", "/api/v1/projects/2/tokens/"+tok.Token.ID, ""); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	within("a revoked token", func() bool { return send(node(1)) == 401 && send(node(0)) == 401 })

	// A hook stopped through a node that does not deliver it stops where
	// it is delivered within a second.
	stopID, stopAt := hookIDs[0], -1
	for i := 0; i < 3; i++ {
		for _, d := range node(i).delivering() {
			if d == stopID {
				stopAt = i
			}
		}
	}
	through := (stopAt + 1) % 3
	if r := adminCall(node(through), "POST", "/api/v1/hooks/"+stopID+"/stop", ""); r.status != 200 {
		t.Fatalf("stop: %d %s", r.status, r.body)
	}
	within("a stopped hook", func() bool {
		for i := 0; i < 3; i++ {
			for _, d := range node(i).delivering() {
				if d == stopID {
					return false
				}
			}
		}
		return true
	})
	before := func() int { tg.mu.Lock(); defer tg.mu.Unlock(); return len(tg.events[paths[0]]) }()
	for i := 0; i < 5; i++ {
		sendOne(int(next.Add(1)), i)
	}
	time.Sleep(500 * time.Millisecond)
	if after := func() int { tg.mu.Lock(); defer tg.mu.Unlock(); return len(tg.events[paths[0]]) }(); after != before {
		t.Fatalf("a stopped hook delivered %d more events", after-before)
	}
}

// startNodes starts n nodes on the database of env with the config file
// cfg, worker ids 1…n, each in a data directory of its own (returned)
// holding the cluster's hooks key: every node seals and opens hook
// secrets with the first node's.
func startNodes(t *testing.T, n int, env []string, cfg string) ([]*server, []string) {
	t.Helper()
	dirs := make([]string, n)
	nodes := make([]*server, n)
	for i := range nodes {
		dirs[i] = t.TempDir()
		if i > 0 {
			key, err := os.ReadFile(filepath.Join(dirs[0], datadir.HooksKey))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dirs[i], datadir.HooksKey), key, 0o600)
		}
		nodes[i] = startServerEnv(t, dirs[i], env, "--config", cfg, "--worker-id", strconv.Itoa(i+1))
	}
	return nodes, dirs
}
