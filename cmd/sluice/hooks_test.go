package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// A hook through the real server, killed with SIGKILL mid-delivery and
// restarted: every matching event arrives at least once, every request's
// signature verifies, and a batch that was in flight at the kill comes
// again with the same webhook-id and the same events.
func TestHookSurvivesSIGKILLMidDelivery(t *testing.T) {
	var mu sync.Mutex
	arrived := map[string]int{}             // event id → deliveries
	batches := map[string]map[string]bool{} // webhook-id → event ids
	var secret string
	var sigErr error
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		time.Sleep(40 * time.Millisecond) // keep batches in flight
		var msgs []struct {
			ID  string `json:"id"`
			Key string `json:"key"`
		}
		json.Unmarshal(body, &msgs)
		mu.Lock()
		defer mu.Unlock()
		if secret != "" {
			if wh, err := standardwebhooks.NewWebhook(secret); err == nil {
				if err := wh.Verify(body, r.Header); err != nil && sigErr == nil {
					sigErr = err
				}
			}
		}
		id := r.Header.Get("webhook-id")
		set := map[string]bool{}
		for _, m := range msgs {
			set[m.ID] = true
			arrived[m.ID]++
		}
		if prev, ok := batches[id]; ok && len(prev) != len(set) {
			t.Errorf("batch %s came back with %d events, first %d", id, len(set), len(prev))
		}
		batches[id] = set
		w.WriteHeader(200)
	}))
	defer recv.Close()

	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfg, []byte("hooks:\n  allow_networks: [127.0.0.0/8]\n  retry_period: 100ms\n"), 0o600)
	dir := t.TempDir()
	s := startServer(t, dir, "--config", cfg)
	admin := func(s *server, method, path, body string) response {
		return do(t, method, s.admin+path, "application/json", body, "Authorization", "Bearer "+testAdminToken)
	}
	r := admin(s, "POST", "/api/v1/hooks", `{"name":"calls","active":true,"events":["in.gen.calltrack.*"],"type":"http",
		"http":{"url":"`+recv.URL+`"},"max_batch_size":20,"batch_timeout":"20ms"}`)
	var h struct {
		ID            string `json:"id"`
		SigningSecret string `json:"signing_secret"`
	}
	if json.Unmarshal(r.body, &h) != nil || r.status != 201 || h.SigningSecret == "" {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	mu.Lock()
	secret = h.SigningSecret
	mu.Unlock()

	var acked []string
	send := func(s *server, n int) {
		for i := 0; i < n; i++ {
			r := do(t, "GET", s.ingest+"/calltrack/call/0?n="+strconv.Itoa(i), "", "")
			var a struct{ ID string }
			if r.status == 200 && json.Unmarshal(r.body, &a) == nil {
				acked = append(acked, a.ID)
			}
			do(t, "GET", s.ingest+"/other/call/0", "", "") // not matched
		}
	}
	send(s, 300)
	// Kill while batches are in flight.
	waitUntil(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(arrived) > 40 })
	s.kill()
	s = startServer(t, dir, "--config", cfg)
	send(s, 100)
	waitUntil(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range acked {
			if arrived[id] == 0 {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	if sigErr != nil {
		t.Fatalf("signature: %v", sigErr)
	}
	dups := 0
	for _, n := range arrived {
		if n > 1 {
			dups++
		}
	}
	t.Logf("%d events acknowledged, all delivered; %d delivered more than once (in flight at the kill)", len(acked), dups)
	if len(arrived) != len(acked) {
		t.Fatalf("%d distinct events arrived, %d acknowledged (unmatched ones leaked?)", len(arrived), len(acked))
	}
	r = admin(s, "GET", "/api/v1/hooks/"+h.ID+"/deliveries?limit=5", "")
	if r.status != 200 {
		t.Fatalf("deliveries %d %s", r.status, r.body)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A hook declared in the config file for a project that does not exist
// stops the start with an error naming the hook and the project.
func TestProvisionedHookForAMissingProjectStopsTheStart(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfg, []byte(`hooks:
  provision:
    - id: crm-revenue
      name: revenue to CRM
      project_id: 99
      events: [in.s2s.revenue.*]
      http: {url: "https://crm.example.com/sluice"}
`), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--config", cfg)
	cmd.Env = append(os.Environ(), "SLUICE_E2E_CHILD=1", "SLUICE_ADMIN_TOKEN="+testAdminToken)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("sluice serve started: %s", out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(string(out), "hooks.provision[0] (crm-revenue): project 99: not found") {
		t.Fatalf("%v: %s", err, out)
	}
}
