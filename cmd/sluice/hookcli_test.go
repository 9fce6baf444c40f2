package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// The `sluice hook` commands against a running server: create (quick
// flags and a YAML file), list, show, test, stop, activate, dead letters,
// replay, clone, rotate-secret, delete; and a clear error when no server
// runs.
func TestHookCLI(t *testing.T) {
	var failing atomic.Bool
	var mu sync.Mutex
	var got []map[string]any
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if failing.Load() {
			w.WriteHeader(500)
			io.WriteString(w, "down for maintenance")
			return
		}
		var msgs []map[string]any
		if err := json.Unmarshal(body, &msgs); err != nil {
			t.Errorf("receiver: %v in %s", err, body)
		}
		mu.Lock()
		got = append(got, msgs...)
		mu.Unlock()
		io.WriteString(w, `{"ok":true}`)
	}))
	defer recv.Close()
	received := func() []map[string]any { mu.Lock(); defer mu.Unlock(); return append([]map[string]any(nil), got...) }

	dir := t.TempDir()
	// No server yet: a clear error.
	_, errOut, code := sluice(t, []string{"SLUICE_DATA_DIR=" + dir}, "hook", "list")
	if code != 1 || !strings.Contains(errOut, "no server is running") {
		t.Fatalf("offline: %d %q", code, errOut)
	}
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfg, []byte("hooks:\n  allow_networks: [127.0.0.0/8]\n  retry_period: 50ms\n  provision:\n"+
		"    - {id: audit, name: audit trail, active: false, events: [\"in.**\"], http: {url: \""+recv.URL+"\"}}\n"), 0o600)
	s := startServer(t, dir, "--config", cfg)
	env := []string{"SLUICE_DATA_DIR=" + dir, "SLUICE_ADMIN_TOKEN=" + testAdminToken}
	run := func(wantCode int, args ...string) string {
		t.Helper()
		out, errOut, code := sluice(t, env, append([]string{"hook"}, args...)...)
		if code != wantCode {
			t.Fatalf("sluice hook %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, out, errOut)
		}
		if wantCode == 0 {
			return out
		}
		return out + errOut
	}
	jsonOf := func(args ...string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(run(0, append(args, "--json")...)), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}

	// Quick create.
	quick := jsonOf("create", "--url", recv.URL, "--events", "in.gen.calltrack.*", "--project", "0", "--name", "calls", "--filter", `event.name == "call"`)
	id, _ := quick["id"].(string)
	if !strings.HasPrefix(id, "hk_") || !strings.HasPrefix(quick["signing_secret"].(string), "whsec_") || quick["project_id"] != float64(0) || quick["filter"] != `event.name == "call"` {
		t.Fatalf("created %v", quick)
	}
	// From a YAML file, inactive.
	def := filepath.Join(t.TempDir(), "hook.yaml")
	os.WriteFile(def, []byte(`name: crm
active: true
events: [in.gen.crm.*]
http:
  url: `+recv.URL+`
  headers: {X-Team: crm}
max_batch_size: 5
batch_timeout: 20ms
retry_times: 0
stop_after_dead_letters: 100
custom_data: {campaign: Black Friday, day: "{{event_date_ymd}}"}
`), 0o600)
	out := run(0, "create", "--file", def, "--inactive")
	if !strings.Contains(out, "created, stopped") || !strings.Contains(out, "signing secret (shown once") {
		t.Fatalf("create --file: %s", out)
	}
	crmID := strings.Fields(out)[1]
	// A file with an unknown field is refused before anything is sent.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("name: x\nevents: [a]\nhttp: {url: http://x}\nbatch_size: 5\n"), 0o600)
	if out := run(1, "create", "--file", bad); !strings.Contains(out, "field batch_size not found") {
		t.Fatalf("bad file: %s", out)
	}
	// A definition the server refuses: its message, exit 1.
	if out := run(1, "create", "--url", recv.URL, "--events", "in.gen.*", "--filter", "event.data.amount >"); !strings.Contains(out, "filter") {
		t.Fatalf("bad filter: %s", out)
	}

	list := run(0, "list")
	if !strings.Contains(list, id) || !strings.Contains(list, crmID) || !strings.Contains(list, "in.gen.crm.*") || !strings.Contains(list, "audit trail") {
		t.Fatalf("list:\n%s", list)
	}
	if h := jsonOf("show", "audit"); h["name"] != "audit trail" || h["active"] != false || h["events"].([]any)[0] != "in.**" {
		t.Fatalf("provisioned hook %v", h)
	}
	if h := jsonOf("show", crmID); h["active"] != false || h["signing_secret"] != nil || h["custom_data"].(map[string]any)["campaign"] != "Black Friday" {
		t.Fatalf("show %v", h)
	}

	// Pre-test on the inactive hook: a synthetic event, is_test, delivered.
	out = run(0, "test", crmID)
	if !strings.Contains(out, "delivered: true") || !strings.Contains(out, "status: 200") || !strings.Contains(out, "event: synthetic") {
		t.Fatalf("test: %s", out)
	}
	if m := received(); len(m) != 1 || m[0]["is_test"] != true || m[0]["custom_data"].(map[string]any)["campaign"] != "Black Friday" {
		t.Fatalf("test message %v", m)
	}

	// Activate from now; events flow.
	if out := run(0, "activate", crmID, "--from", "now"); !strings.Contains(out, "activated, active") {
		t.Fatalf("activate: %s", out)
	}
	if r := do(t, "GET", s.ingest+"/crm/lead/0?n=1", "", ""); r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.body)
	}
	waitUntil(t, func() bool { return len(received()) == 2 })

	// The target fails: with no retries each batch is parked at once.
	failing.Store(true)
	do(t, "GET", s.ingest+"/crm/lead/0?n=2", "", "")
	waitUntil(t, func() bool { return len(strings.Split(strings.TrimSpace(run(0, "dead-letters", crmID)), "\n")) == 2 })
	dl := run(0, "dead-letters", crmID)
	if !strings.Contains(dl, " 500 ") || !strings.Contains(dl, "status") {
		t.Fatalf("dead letters:\n%s", dl)
	}
	var dls struct {
		DeadLetters []struct {
			Events     int `json:"events"`
			LastStatus int `json:"last_status"`
		} `json:"dead_letters"`
	}
	if err := json.Unmarshal([]byte(run(0, "dead-letters", crmID, "--json")), &dls); err != nil || len(dls.DeadLetters) != 1 || dls.DeadLetters[0].Events != 1 || dls.DeadLetters[0].LastStatus != 500 {
		t.Fatalf("dead letters %+v %v", dls, err)
	}
	deliveries := run(0, "deliveries", crmID, "--limit", "5")
	if lines := strings.Split(strings.TrimSpace(deliveries), "\n"); len(lines) != 3 || strings.Fields(lines[1])[5] != "500" || strings.Fields(lines[2])[5] != "200" {
		t.Fatalf("deliveries (newest first, %d lines):\n%s", len(lines), deliveries)
	}
	// Replay while still failing: exit 1, still parked.
	if out := run(1, "replay", crmID); !strings.Contains(out, "0 delivered, 1 still parked") {
		t.Fatalf("failed replay: %s", out)
	}
	failing.Store(false)
	if out := run(0, "replay", crmID); !strings.Contains(out, "1 replayed: 1 delivered, 0 still parked") {
		t.Fatalf("replay: %s", out)
	}
	if m := received(); len(m) != 3 || m[2]["data"].(map[string]any)["n"] != "2" {
		t.Fatalf("after replay %v", m)
	}

	if out := run(0, "stop", crmID); out != "hook "+crmID+" (crm): stopped\n" {
		t.Fatalf("stop: %s", out)
	}
	cl := jsonOf("clone", crmID)
	if cl["id"] == crmID || cl["active"] != false || !strings.HasPrefix(cl["signing_secret"].(string), "whsec_") {
		t.Fatalf("clone %v", cl)
	}
	if out := run(0, "rotate-secret", crmID); !strings.Contains(out, "signing secret (shown once") {
		t.Fatalf("rotate: %s", out)
	}
	// Update from a file keeps the place and state.
	os.WriteFile(def, []byte("name: crm renamed\nevents: [in.gen.crm.*]\nhttp: {url: "+recv.URL+"}\n"), 0o600)
	if h := jsonOf("update", crmID, "--file", def); h["name"] != "crm renamed" || h["active"] != false {
		t.Fatalf("update %v", h)
	}
	if out := run(0, "delete", crmID); !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %s", out)
	}
	if out := run(1, "show", crmID); !strings.Contains(out, "404") {
		t.Fatalf("show deleted: %s", out)
	}
	if out := run(2, "replay"); !strings.Contains(out, "Usage: sluice hook") {
		t.Fatalf("usage: %s", out)
	}
}
