package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/identity"
)

// The person, through the real binary: she logs in through
// commerce (her phone's hash, her user id), pays through s2s (the same
// phone), is tracked through track (the user id and a browser id) and
// calls (a call tracker's webhook with her phone). She is one profile with
// every identity, attribute and trait, and one timeline of her events
// from four dialects; erasure removes all of it, from the log as well.
func TestOnePersonAcrossFourDialects(t *testing.T) {
	// A hook on every event of hers sees her profile, whatever the
	// dialect: the profile includes the event's own links.
	var mu sync.Mutex
	delivered := map[string]map[string]any{} // key → custom_data
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msgs []struct {
			Key        string         `json:"key"`
			CustomData map[string]any `json:"custom_data"`
		}
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &msgs)
		mu.Lock()
		for _, m := range msgs {
			delivered[m.Key] = m.CustomData
		}
		mu.Unlock()
	}))
	defer recv.Close()
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfg, []byte(`
hooks:
  allow_networks: [127.0.0.0/8]
  provision:
    - id: her-events
      name: her events
      active: true
      project_id: 5
      events: ["in.**"]
      filter: 'profile.traits.events >= 1'
      http: {url: "`+recv.URL+`"}
      custom_data: {profile: "{{profile.id}}", phone: "{{profile.phoneNumber}}", events_of_key: "{{profile.traits.eventsByKey}}"}
projects:
  - id: 5
    name: people
    settings: {app_id: people-app, default_region: RU, identity_fields: {caller: phone}}
    tokens: [{name: backend, secret: people-token-1}]
    event_types: [{slug: order, kind: revenue}]
  - id: 6
    name: others
    tokens: [{name: backend, secret: others-token-1}]
`), 0o600)
	s := startServer(t, t.TempDir(), "--config", cfg)
	phone := identity.Hash("79990000000")
	admin := func(method, path string) response {
		return do(t, method, s.admin+path, "", "", "Authorization", "Bearer "+testAdminToken)
	}
	must := func(r response, what string) {
		t.Helper()
		if r.status != 200 {
			t.Fatalf("%s: %d %s", what, r.status, r.body)
		}
	}
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	at := func(min int) time.Time { return base.Add(time.Duration(min) * time.Minute) }
	must(do(t, "POST", s.ingest+"/v1/events", "application/json",
		fmt.Sprintf(`{"name":"Login","userId":"ann-17","timestamp":%q,"properties":{"eventType":"login-v1","cuid":%q,"cuidType":"phone_hash"}}`, at(0).Format(time.RFC3339), phone),
		"Authorization", "Bearer people-token-1"), "commerce login")
	must(do(t, "POST", s.ingest+"/", "application/json",
		fmt.Sprintf(`{"customUserId":"ann","messages":[{"type":"user","id":"p-1","time":%d,"phoneNumber":"+7 999 000-00-00","firstName":"Ann","city":"Kazan"},`+
			`{"type":"revenue","id":"p-2","time":%d,"name":"order","revenue":1999.5,"currency":"RUB"}]}`, at(1).UnixMilli(), at(2).UnixMilli()),
		"X-Application-Id", "people-app", "X-API-Key", "people-token-1"), "s2s")
	must(do(t, "POST", s.ingest+"/track", "application/json",
		fmt.Sprintf(`{"hitId":"a1d1f0a0-c7b1-11f0-8de9-0242ac120002","sentAt":%q,"event":{"name":"Completed Transaction","transaction":{"total":3029,"currency":"RUB","orderId":"o-1"},"user":{"userId":"ann-17","anonymousId":"browser-9"}}}`, at(3).Format(time.RFC3339)),
		"Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("people-token-1:"))), "track")
	must(do(t, "GET", s.ingest+"/calltrack/call/5?caller=%2B7%20(999)%20000-00-00&duration=63", "", ""), "webhook")
	// Her user id with another phone: refused, a conflict (the profile
	// keeps her first phone).
	phone2 := identity.Hash("79990000001")
	must(do(t, "POST", s.ingest+"/v1/events", "application/json",
		fmt.Sprintf(`{"name":"Login","userId":"ann-17","timestamp":%q,"properties":{"eventType":"login-v1","cuid":%q,"cuidType":"phone_hash"}}`, at(4).Format(time.RFC3339), phone2),
		"Authorization", "Bearer people-token-1"), "commerce login with another phone")
	// Someone else, in another project, with the same phone: not her.
	must(do(t, "GET", s.ingest+"/calltrack/call/6?phone=%2B79990000000", "", ""), "other project")

	var p struct {
		ID         string `json:"id"`
		Identities []struct{ Type, Value, Strength string }
		Attributes map[string]struct{ Value json.RawMessage }
		Conflicts  []struct {
			EventID    string
			Linked     struct{ Type, Value string }
			Type, Held string
			Value      string
		}
		Traits struct {
			Events       int
			EventsByKey  map[string]int
			Revenue      map[string]string
			Purchases    int
			LastPurchase struct{ OrderID string }
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r := admin("GET", "/api/v1/projects/5/profiles/anonymous_id/browser-9")
		if r.status == 200 {
			json.Unmarshal(r.body, &p)
			if p.Traits.Events == 6 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("profile: %d %s", r.status, r.body)
		}
	}
	var ids []string
	for _, i := range p.Identities {
		ids = append(ids, i.Type+"="+i.Value+"/"+i.Strength)
	}
	if want := "custom_user_id=ann/strong user_id=ann-17/strong phone_hash=" + phone + "/strong anonymous_id=browser-9/device"; strings.Join(ids, " ") != want {
		t.Fatalf("identities %v, want %s", ids, want)
	}
	if string(p.Attributes["firstName"].Value) != `"Ann"` || string(p.Attributes["city"].Value) != `"Kazan"` ||
		p.Traits.Revenue["RUB"] != "5028.5" || p.Traits.Purchases != 1 || p.Traits.LastPurchase.OrderID != "o-1" ||
		p.Traits.EventsByKey["in.gen.calltrack.call"] != 1 || p.Traits.EventsByKey["in.commerce.login-v1"] != 2 {
		t.Fatalf("profile %+v", p)
	}
	if len(p.Conflicts) != 1 || p.Conflicts[0].EventID == "" || p.Conflicts[0].Linked.Type != "phone_hash" || p.Conflicts[0].Linked.Value != phone2 ||
		p.Conflicts[0].Type != "phone_hash" || p.Conflicts[0].Held != phone || p.Conflicts[0].Value != phone2 {
		t.Fatalf("conflicts %+v, want the second phone refused", p.Conflicts)
	}
	if r := admin("GET", "/api/v1/projects/5/profiles/phone_hash/"+phone2); r.status != 404 {
		t.Fatalf("the refused phone finds %d %s", r.status, r.body)
	}
	if m := admin("GET", "/metrics"); !strings.Contains(string(m.body), "\nsluice_profiles_conflicts_total 1\n") {
		t.Fatalf("metrics: no conflict counted:\n%s", grepLines(string(m.body), "sluice_profiles_"))
	}
	// Each dialect's events were delivered with her profile.
	waitUntil(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(delivered) == 5 })
	mu.Lock()
	for _, key := range []string{"in.commerce.login-v1", "in.s2s.user", "in.s2s.revenue.order", "in.track.transaction.completed", "in.gen.calltrack.call"} {
		cd := delivered[key]
		var byKey map[string]int
		json.Unmarshal([]byte(fmt.Sprint(cd["events_of_key"])), &byKey)
		if cd["profile"] != p.ID || byKey[key] < 1 {
			t.Errorf("%s delivered with %v, want profile %s holding the event", key, cd, p.ID)
		}
	}
	if cd := delivered["in.gen.calltrack.call"]; cd["phone"] != `+7 999 000-00-00` {
		t.Errorf("the call tracker's event delivered with phone %q", cd["phone"])
	}
	mu.Unlock()
	// Every identity finds the same profile.
	for _, id := range []string{"custom_user_id/ann", "user_id/ann-17", "phone_hash/" + phone, "profile/" + p.ID} {
		var q struct{ ID string }
		r := admin("GET", "/api/v1/projects/5/profiles/"+id)
		json.Unmarshal(r.body, &q)
		if r.status != 200 || q.ID != p.ID {
			t.Fatalf("%s: %d %s", id, r.status, r.body)
		}
	}
	if r := admin("GET", "/api/v1/projects/6/profiles/phone_hash/"+phone); r.status != 404 {
		t.Fatalf("another project's person by the phone: %d %s", r.status, r.body)
	}
	// One timeline, newest first, from four dialects, paged.
	var dialects []string
	next := ""
	for {
		path := "/api/v1/projects/5/profiles/user_id/ann-17/events?limit=2"
		if next != "" {
			path += "&before=" + next
		}
		r := admin("GET", path)
		must(r, "timeline")
		var page struct {
			Events []struct{ Dialect, Key string }
			Next   string
		}
		json.Unmarshal(r.body, &page)
		for _, e := range page.Events {
			dialects = append(dialects, e.Dialect+":"+e.Key)
		}
		if page.Next == "" {
			break
		}
		next = page.Next
	}
	if want := "webhook:in.gen.calltrack.call track:in.track.transaction.completed commerce:in.commerce.login-v1 s2s:in.s2s.revenue.order s2s:in.s2s.user commerce:in.commerce.login-v1"; strings.Join(dialects, " ") != want {
		t.Fatalf("timeline %v\nwant %s", dialects, want)
	}
	// The CLI shows and erases.
	out, errOut, code := sluice(t, childEnv("SLUICE_ADMIN_TOKEN="+testAdminToken), "profile", "show", "--admin", s.admin, "--project", "5", "user_id", "ann-17")
	if code != 0 || !strings.Contains(out, p.ID) || !strings.Contains(out, "revenue 5028.5 RUB") ||
		!strings.Contains(out, "conflict: event "+p.Conflicts[0].EventID+" linked phone_hash "+phone2+", which would add phone_hash "+phone2+"; the profile keeps "+phone+"\n") {
		t.Fatalf("profile show: %d %s %s", code, out, errOut)
	}
	// Her timeline from the CLI: filtered by key, paged.
	out, errOut, code = sluice(t, childEnv("SLUICE_ADMIN_TOKEN="+testAdminToken), "profile", "events", "--admin", s.admin, "--project", "5", "--key", "in.commerce.*", "--limit", "1", "anonymous_id", "browser-9")
	var first struct{ Key, ID string }
	json.Unmarshal([]byte(out), &first)
	if code != 0 || strings.Count(out, "\n") != 1 || first.Key != "in.commerce.login-v1" || first.ID != p.Conflicts[0].EventID || !strings.HasPrefix(errOut, "more: --before ") {
		t.Fatalf("profile events --limit 1: %d %q %q", code, out, errOut)
	}
	cursor := strings.TrimSpace(strings.TrimPrefix(errOut, "more: --before "))
	out, errOut, code = sluice(t, childEnv("SLUICE_ADMIN_TOKEN="+testAdminToken), "profile", "events", "--admin", s.admin, "--project", "5", "--key", "in.commerce.*", "--before", cursor, "user_id", "ann-17")
	var second struct{ Key, ID string }
	json.Unmarshal([]byte(out), &second)
	if code != 0 || strings.Count(out, "\n") != 1 || second.Key != "in.commerce.login-v1" || second.ID == first.ID || errOut != "" {
		t.Fatalf("profile events --before: %d %q %q", code, out, errOut)
	}
	before := len(s.events(t, "project=5"))
	out, errOut, code = sluice(t, childEnv("SLUICE_ADMIN_TOKEN="+testAdminToken), "profile", "delete", "--admin", s.admin, "--project", "5", "phone_hash", phone)
	if code != 0 || out != fmt.Sprintf("erased profile %s of project 5: 1 profile, 4 identities, 3 attributes, 6 events\n", p.ID) {
		t.Fatalf("profile delete: %d %q %s", code, out, errOut)
	}
	for _, id := range []string{"anonymous_id/browser-9", "user_id/ann-17", "profile/" + p.ID} {
		if r := admin("GET", "/api/v1/projects/5/profiles/"+id); r.status != 404 {
			t.Fatalf("%s after erasure: %d %s", id, r.status, r.body)
		}
	}
	if after := s.events(t, "project=5"); before != 6 || len(after) != 0 {
		t.Fatalf("project 5 events: %d before, %d after the erasure", before, len(after))
	}
	var keys []string
	for _, e := range s.events(t, "project=6") {
		keys = append(keys, e.Key)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "in.gen.calltrack.call" {
		t.Fatalf("the other project's events: %v", keys)
	}
}

// grepLines is the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
