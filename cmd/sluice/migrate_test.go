package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/sluicehq/sluice/internal/datadir"
	"github.com/sluicehq/sluice/internal/pgtest"
)

// sluice migrate --from copies a SQLite installation, killed mid-delivery,
// into PostgreSQL, and a node on it goes on where the SQLite one stopped:
// the same events and ids, a provisioned token and a dedup key that still
// hold, a hook's batch in flight delivered with its webhook-id and signed
// with the hook's secret, a dead letter with its id and attempts, a
// profile with its id and the consumer's cursor (nothing folded again).
func TestMigrateFromSQLite(t *testing.T) {
	var mu sync.Mutex
	release := make(chan struct{})
	var released bool
	batchesBefore := map[string]bool{} // webhook-ids seen before the migration
	var again []string                 // webhook-ids seen before and after
	got := map[string]int{}            // event id → deliveries at /slow
	secret := ""
	var sigErr error
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/fail" {
			w.WriteHeader(500)
			return
		}
		id := r.Header.Get("webhook-id")
		mu.Lock()
		if !released {
			batchesBefore[id] = true
		} else if batchesBefore[id] {
			again = append(again, id)
		}
		mu.Unlock()
		select {
		case <-release: // the SQLite node dies meanwhile: this batch stays in flight
		case <-r.Context().Done():
			return
		}
		var msgs []struct{ ID string }
		json.Unmarshal(body, &msgs)
		mu.Lock()
		defer mu.Unlock()
		if wh, err := standardwebhooks.NewWebhook(secret); err == nil {
			if err := wh.Verify(body, r.Header); err != nil && sigErr == nil {
				sigErr = err
			}
		}
		for _, m := range msgs {
			got[m.ID]++
		}
	}))
	defer recv.Close()

	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfg, []byte(`hooks:
  allow_networks: [127.0.0.0/8]
  retry_period: 50ms
projects:
  - id: 1
    name: shop
    settings:
      webhook_auth: token
      webhook_dedup_field: n
      identity_fields: {user: user_id}
    tokens:
      - {name: crm, secret: sl_migrated_secret_01}
    event_types:
      - {slug: buy, kind: revenue}
`), 0o600)
	dirA := t.TempDir()
	a := startServer(t, dirA, "--config", cfg)
	adminCall := func(s *server, method, path, body string) response {
		return do(t, method, s.admin+path, "application/json", body, "Authorization", "Bearer "+testAdminToken)
	}
	var slow, fail struct {
		ID            string `json:"id"`
		SigningSecret string `json:"signing_secret"`
	}
	r := adminCall(a, "POST", "/api/v1/hooks", `{"name":"slow","active":true,"events":["in.gen.*"],"project_id":1,"type":"http",
		"http":{"url":"`+recv.URL+`/slow"},"max_batch_size":5,"batch_timeout":"20ms"}`)
	if r.status != 201 || json.Unmarshal(r.body, &slow) != nil {
		t.Fatalf("%d %s", r.status, r.body)
	}
	mu.Lock()
	secret = slow.SigningSecret
	mu.Unlock()
	r = adminCall(a, "POST", "/api/v1/hooks", `{"name":"fail","active":true,"events":["in.gen.*"],"project_id":1,"type":"http",
		"http":{"url":"`+recv.URL+`/fail"},"retry_times":0,"max_batch_size":50,"batch_timeout":"20ms"}`)
	if r.status != 201 || json.Unmarshal(r.body, &fail) != nil {
		t.Fatalf("%d %s", r.status, r.body)
	}
	ids := map[int]string{}
	post := func(s *server, n int) response {
		return do(t, "POST", s.ingest+"/crm/lead/1?token=sl_migrated_secret_01", "application/json", `{"n":`+strconv.Itoa(n)+`,"user":"u`+strconv.Itoa(n%3)+`"}`)
	}
	for n := 0; n < 30; n++ {
		r := post(a, n)
		var ack struct{ ID string }
		if r.status != 200 || json.Unmarshal(r.body, &ack) != nil {
			t.Fatalf("%d %s", r.status, r.body)
		}
		ids[n] = ack.ID
	}
	var profileID string
	waitUntil(t, func() bool { // every event folded
		for _, u := range []string{"u0", "u1", "u2"} {
			r := adminCall(a, "GET", "/api/v1/projects/1/profiles/user_id/"+u, "")
			var p struct {
				ID     string
				Traits struct{ Events int }
			}
			json.Unmarshal(r.body, &p)
			if r.status != 200 || p.Traits.Events != 10 {
				return false
			}
			if u == "u1" {
				profileID = p.ID
			}
		}
		return true
	})
	waitUntil(t, func() bool {
		r := adminCall(a, "GET", "/api/v1/hooks/"+fail.ID+"/dead-letters", "")
		return r.status == 200 && strings.Contains(string(r.body), `"batch_id"`)
	})
	var dl struct {
		DeadLetters []struct {
			ID      int64  `json:"id"`
			BatchID string `json:"batch_id"`
		} `json:"dead_letters"`
	}
	r = adminCall(a, "GET", "/api/v1/hooks/"+fail.ID+"/dead-letters", "")
	if json.Unmarshal(r.body, &dl) != nil || len(dl.DeadLetters) == 0 {
		t.Fatalf("dead letters %s", r.body)
	}
	waitUntil(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(batchesBefore) > 0 })
	before := a.events(t, "project=1")
	a.kill() // mid-delivery: the slow hook's batch is in flight

	dsn := pgtest.Start(t)
	env := []string{"SLUICE_POSTGRES_DSN=" + dsn}
	out, errOut, code := sluice(t, env, "migrate", "--from", dirA)
	if code != 0 {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"events       30", "projects     2 (tokens 1, event types 1", "hooks        2 (batches in flight ", "attempts ",
		"consumer cursors 1", "hooks.key: copy it into the data directory of every node"} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate said:\n%s\nwithout %q", out, want)
		}
	}
	// The slow hook's batch at the target, and batches recorded ahead of
	// their places (docs/hooks.md).
	if !regexp.MustCompile(`batches in flight [1-9]`).MatchString(out) {
		t.Errorf("migrate copied no batch in flight:\n%s", out)
	}
	if !regexp.MustCompile(`dead letters [1-9]`).MatchString(out) {
		t.Errorf("migrate copied no dead letter:\n%s", out)
	}
	if strings.Contains(out+errOut, dsn) {
		t.Fatal("migrate showed the DSN")
	}
	// Into a database that holds data, nothing is copied.
	if out, errOut, code := sluice(t, env, "migrate", "--from", dirA); code != 1 || !strings.Contains(errOut, "holds sluice data already") {
		t.Fatalf("a second migrate: exit %d\n%s%s", code, out, errOut)
	}

	mu.Lock()
	released = true
	close(release)
	mu.Unlock()
	dirB := t.TempDir()
	key, _ := os.ReadFile(filepath.Join(dirA, datadir.HooksKey))
	os.WriteFile(filepath.Join(dirB, datadir.HooksKey), key, 0o600)
	b := startServerEnv(t, dirB, env, "--config", cfg, "--storage", "postgres")

	// The same events, with their ids.
	after := b.events(t, "project=1")
	if len(after) != len(before) {
		t.Fatalf("%d events after the move, %d before", len(after), len(before))
	}
	for i := range before {
		if after[i].ID != before[i].ID || string(after[i].Data) != string(before[i].Data) {
			t.Fatalf("event %d: %+v, was %+v", i, after[i], before[i])
		}
	}
	// The token and the dedup key hold.
	r = post(b, 7)
	var dup struct {
		ID        string
		Duplicate bool
	}
	if r.status != 200 || json.Unmarshal(r.body, &dup) != nil || dup.ID != ids[7] {
		t.Fatalf("a dedup key sent again: %d %s (first %s)", r.status, r.body, ids[7])
	}
	// The batch in flight is delivered with its webhook-id and signed with
	// the hook's secret, and every event reaches the hook.
	waitUntil(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if got[id] == 0 {
				return false
			}
		}
		return len(again) > 0
	})
	mu.Lock()
	if sigErr != nil {
		t.Fatalf("signature: %v", sigErr)
	}
	mu.Unlock()
	// The dead letter, with its id; the attempt log.
	r = adminCall(b, "GET", "/api/v1/hooks/"+fail.ID+"/dead-letters", "")
	if !strings.Contains(string(r.body), `"id":`+strconv.FormatInt(dl.DeadLetters[0].ID, 10)+`,`) || !strings.Contains(string(r.body), dl.DeadLetters[0].BatchID) {
		t.Fatalf("dead letters after the move: %s", r.body)
	}
	if r = adminCall(b, "GET", "/api/v1/hooks/"+fail.ID+"/deliveries", ""); !strings.Contains(string(r.body), dl.DeadLetters[0].BatchID) {
		t.Fatalf("attempts after the move: %s", r.body)
	}
	// The profile, with its id, not folded again.
	r = adminCall(b, "GET", "/api/v1/projects/1/profiles/user_id/u1", "")
	var p struct {
		ID     string
		Traits struct{ Events int }
	}
	if json.Unmarshal(r.body, &p) != nil || p.ID != profileID || p.Traits.Events != 10 {
		t.Fatalf("profile after the move: %s (was %s)", r.body, profileID)
	}
	time.Sleep(500 * time.Millisecond)
	if n := b.metric(t, "sluice_profiles_events_applied_total"); n != 0 {
		t.Fatalf("%v events folded again: the consumer's cursor was not moved along", n)
	}
}
