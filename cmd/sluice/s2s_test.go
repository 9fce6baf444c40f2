package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The s2s gateway through the real server: the seed's examples, its error
// codes, duplicates, PII hashing and the profiles built from user messages.
func TestS2SEndToEnd(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfg, []byte(`
projects:
  - id: 3
    name: mobile
    settings: {app_id: my-app, default_region: IR}
    tokens: [{name: server, secret: api-key-of-my-app}]
    event_types:
      - {slug: slug1, kind: action, name: Opened}
      - {slug: buy, kind: revenue, name: Purchase}
  - id: 4
    name: hashed
    settings: {app_id: hashed-app, default_region: IR, hash_pii: true}
    tokens: [{name: server, secret: api-key-of-hashed}]
  - id: 5
    name: off
    settings: {app_id: off-app, s2s: false}
    tokens: [{name: server, secret: api-key-of-off}]
`), 0o600)
	s := startServer(t, t.TempDir(), "--config", cfg)
	post := func(app, key, body string) (int, map[string]any) {
		t.Helper()
		r := do(t, "POST", s.ingest+"/", "application/json", body, "x-application-id", app, "x-api-key", key)
		var m map[string]any
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatalf("answer %s", r.body)
		}
		return r.status, m
	}
	now := time.Now().UnixMilli()
	curl := fmt.Sprintf(`{"customUserId":"username","metrixUserId":"7d5dbfbf-8ff9-44db-be79-953d2c1d7d6f","messages":[
		{"type":"user","id":"ced87826-2014-4770-a1d8-b6ed3c931cea","time":%d,"firstName":"Ahmad","lastName":"Ahmadi","phone":"+98917*******",
		 "email":"ahmad@example.com","country":"Iran","city":"Tehran","region":"Vanak","gender":"Male","birthday":600873151010,
		 "channels":["SMS","Push","Email"],"customAttributes":{"xxx":"yyy"}},
		{"type":"action","id":"acc89899-2018-4881-a5d8-bad3a9c31bbb","time":%d,"name":"slug1","attributes":{"xxx":"yyy"}}]}`, now-1000, now-1000)

	// The seed's error table.
	for _, c := range []struct {
		app, key, body string
		status         int
		code           string
	}{
		{"", "", curl, 403, "INVALID_PARAMETERS"},
		{"my-app", "wrong", curl, 403, "INVALID_PARAMETERS"},
		{"my-app", "api-key-of-hashed", curl, 403, "INVALID_PARAMETERS"}, // a key of another project
		{"off-app", "api-key-of-off", curl, 403, "S2S_FEATURE_NOT_AVAILABLE"},
		{"my-app", "api-key-of-my-app", `{"customUserId":`, 400, "BAD_REQUEST"},
		{"my-app", "api-key-of-my-app", strings.Replace(curl, `"slug1"`, `"nope"`, 1), 404, "EVENT_TYPE_DOES_NOT_EXIST"},
	} {
		status, m := post(c.app, c.key, c.body)
		if status != c.status || m["code"] != c.code || m["message"] == "" {
			t.Fatalf("%s/%s: %d %v, want %d %s", c.app, c.key, status, m, c.status, c.code)
		}
	}
	if n := len(s.events(t, "key=in.s2s.*")); n != 0 {
		t.Fatalf("%d events stored by refused requests", n)
	}

	status, m := post("my-app", "api-key-of-my-app", curl)
	if status != 200 || m["accepted"] != 2.0 || m["duplicates"] != 0.0 || len(m["ids"].([]any)) != 2 {
		t.Fatalf("curl example: %d %v", status, m)
	}
	firstIDs := m["ids"].([]any)
	// Again: both are duplicates, answered with the original ids.
	status, m = post("my-app", "api-key-of-my-app", curl)
	if status != 200 || m["accepted"] != 0.0 || m["duplicates"] != 2.0 || m["ids"].([]any)[1] != firstIDs[1] {
		t.Fatalf("repeat: %d %v", status, m)
	}
	revenue := fmt.Sprintf(`{"customUserId":"username","messages":[{"type":"revenue","id":"r-1","time":%d,"name":"buy","revenue":53.700,"currency":"IRR"}]}`, now)
	if status, m := post("my-app", "api-key-of-my-app", revenue); status != 200 || m["accepted"] != 1.0 {
		t.Fatalf("revenue: %d %v", status, m)
	}
	evs := s.events(t, "project=3&key=in.s2s.*")
	if len(evs) != 3 || evs[0].Key != "in.s2s.user" || evs[1].Key != "in.s2s.action.slug1" || evs[2].Key != "in.s2s.revenue.buy" {
		t.Fatalf("stored %+v", evs)
	}

	// Concurrent repeats of one message id store one event.
	var wg sync.WaitGroup
	one := fmt.Sprintf(`{"customUserId":"c","messages":[{"type":"action","id":"same-id","time":%d,"name":"slug1"}]}`, now)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); post("my-app", "api-key-of-my-app", one) }()
	}
	wg.Wait()
	if n := len(s.events(t, "project=3&key=in.s2s.action.*")); n != 2 {
		t.Fatalf("%d action events, want 2 (the curl one and one of the concurrent repeats)", n)
	}

	// Profiles: out of order, the newest value wins; the API shows each
	// attribute's time.
	newer := fmt.Sprintf(`{"customUserId":"reza","messages":[{"type":"user","id":"p2","time":%d,"firstName":"Newer","customAttributes":{"tier":"gold"}}]}`, now)
	older := fmt.Sprintf(`{"customUserId":"reza","metrixUserId":"dev-r","messages":[{"type":"user","id":"p1","time":%d,"firstName":"Older","lastName":"Akbari","customAttributes":{"tier":"silver","job":"developer"}}]}`, now-60000)
	post("my-app", "api-key-of-my-app", newer)
	post("my-app", "api-key-of-my-app", older)
	var prof struct {
		Identities []struct{ Type, Value string }
		Attributes map[string]struct {
			Value json.RawMessage
			Time  time.Time
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := do(t, "GET", s.admin+"/api/v1/projects/3/profiles/metrix_user_id/dev-r", "", "", "Authorization", "Bearer "+testAdminToken)
		if r.status == 200 {
			json.Unmarshal(r.body, &prof)
			if _, ok := prof.Attributes["lastName"]; ok {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("profile never complete: %d %s", r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if string(prof.Attributes["firstName"].Value) != `"Newer"` || string(prof.Attributes["customAttributes.tier"].Value) != `"gold"` ||
		string(prof.Attributes["customAttributes.job"].Value) != `"developer"` || string(prof.Attributes["lastName"].Value) != `"Akbari"` ||
		prof.Attributes["firstName"].Time.UnixMilli() != now || len(prof.Identities) != 2 {
		t.Fatalf("profile %+v", prof)
	}
	if r := do(t, "GET", s.admin+"/api/v1/projects/3/profiles/custom_user_id/nobody", "", "", "Authorization", "Bearer "+testAdminToken); r.status != 404 {
		t.Fatalf("missing profile: %d", r.status)
	}

	// hash_pii: the raw phone number and e-mail address never reach disk.
	pii := fmt.Sprintf(`{"customUserId":"h","messages":[{"type":"user","id":"h1","time":%d,"phoneNumber":"09121122333","email":"Secret.Person@Example.com"}]}`, now)
	if status, m := post("hashed-app", "api-key-of-hashed", pii); status != 200 {
		t.Fatalf("hash_pii: %d %v", status, m)
	}
	stored := s.events(t, "project=4")
	if len(stored) != 1 || strings.Contains(string(stored[0].Data), "09121122333") || strings.Contains(strings.ToLower(string(stored[0].Data)), "secret.person") ||
		!strings.Contains(string(stored[0].Data), `"hashedPhoneNumber":"`) {
		t.Fatalf("stored %s", stored[0].Data)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"events.db", "events.db-wal", "profiles.db", "profiles.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(s.dir, f))
		if strings.Contains(string(b), "09121122333") || strings.Contains(strings.ToLower(string(b)), "secret.person") {
			t.Fatalf("raw PII found in %s", f)
		}
	}

	// The event-type CLI, offline now.
	env := []string{"SLUICE_DATA_DIR=" + s.dir, "SLUICE_ADMIN_TOKEN="}
	out, errOut, code := sluice(t, env, "event-type", "create", "--project", "3", "--slug", "signup", "--kind", "action", "--name", "Signed up")
	if code != 0 || !strings.Contains(out, "signup") {
		t.Fatalf("event-type create: %d %s %s", code, out, errOut)
	}
	out, _, code = sluice(t, env, "event-type", "list", "--project", "3")
	if code != 0 || !strings.Contains(out, "slug1") || !strings.Contains(out, "buy") || !strings.Contains(out, "signup") {
		t.Fatalf("event-type list: %s", out)
	}
	if _, errOut, code := sluice(t, env, "event-type", "delete", "--project", "3", "signup"); code != 0 {
		t.Fatalf("event-type delete: %s", errOut)
	}
}
