package admin

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/logtest"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
	"github.com/sluicehq/sluice/internal/live"
	"github.com/sluicehq/sluice/internal/project"
)

const adminToken = "sla_test_token"

type fixture struct {
	srv      *httptest.Server
	log      *sqlite.Log
	projects *project.Store
	reads    *countingLog // the log as the API and the hub read it
	hub      *live.Hub
}

// countingLog is the real log, counting reads.
type countingLog struct {
	*sqlite.Log
	reads atomic.Int64
}

func (c *countingLog) Read(ctx context.Context, q eventlog.Query) ([]eventlog.Record, error) {
	c.reads.Add(1)
	return c.Log.Read(ctx, q)
}

// runHub runs a live hub over l until the test ends.
func runHub(t *testing.T, l live.Source) *live.Hub {
	t.Helper()
	hub := live.New(live.Config{}, l, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); hub.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-hub.Started()
	return hub
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	l, err := sqlite.Open(sqlite.Config{Path: filepath.Join(dir, "events.db")}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := project.Open(filepath.Join(dir, "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingLog{Log: l}
	t.Cleanup(func() { l.Close(); ps.Close() })
	hub := runHub(t, cl)
	h := New(Config{TokenHash: sha256.Sum256([]byte(adminToken)), MaxWait: 5 * time.Second, Live: hub}, ps, cl, reg, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, log: l, projects: ps, reads: cl, hub: hub}
}

func (f *fixture) call(t *testing.T, method, path, body string, token string) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func (f *fixture) api(t *testing.T, method, path, body string, wantStatus int, out any) []byte {
	t.Helper()
	status, b, _ := f.call(t, method, path, body, "Bearer "+adminToken)
	if status != wantStatus {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, wantStatus, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return b
}

func TestAPINeedsTheAdminToken(t *testing.T) {
	f := newFixture(t)
	paths := []string{"GET /api/v1/projects", "POST /api/v1/projects", "GET /api/v1/projects/0", "PATCH /api/v1/projects/0",
		"DELETE /api/v1/projects/5", "GET /api/v1/projects/0/tokens", "POST /api/v1/projects/0/tokens",
		"DELETE /api/v1/projects/0/tokens/tok_x", "GET /api/v1/events", "GET /api/v1/schemas", "POST /api/v1/projects/0/schemas", "GET /api/v1/hooks", "POST /api/v1/hooks", "POST /api/v1/hooks/hk_x/test", "POST /api/v1/hooks/hk_x/dead-letters/replay", "GET /api/v1/nothing-here", "GET /api/other", "GET /debug/pprof/", "GET /debug/pprof/heap"}
	for _, p := range paths {
		method, path, _ := strings.Cut(p, " ")
		for auth, want := range map[string]string{
			"":                           "admin token required: Authorization: Bearer <token>",
			"Bearer":                     "admin token required: Authorization: Bearer <token>",
			"Bearer   ":                  "admin token required: Authorization: Bearer <token>",
			"Bearer wrong":               "invalid admin token",
			"bearer " + adminToken + "x": "invalid admin token",
			"Basic " + adminToken:        "the Authorization header must be Bearer <admin token>",
		} {
			status, b, h := f.call(t, method, path, `{"name":"x"}`, auth)
			var e struct{ Message string }
			if status != 401 || h.Get("WWW-Authenticate") != `Bearer realm="sluice-admin"` || json.Unmarshal(b, &e) != nil || e.Message != want {
				t.Errorf("%s with %q: %d %s, want 401 %q", p, auth, status, b, want)
			}
		}
	}
	if len(f.projects.List()) != 1 {
		t.Fatal("an unauthenticated call changed state")
	}
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		if status, _, _ := f.call(t, "GET", p, "", ""); status != 200 {
			t.Errorf("%s: %d", p, status)
		}
	}
}

func TestProjectsAndTokens(t *testing.T) {
	f := newFixture(t)
	var p project.Project
	f.api(t, "POST", "/api/v1/projects", `{"name":"shop","settings":{"webhook_auth":"token","redirect_hosts":["example.com"]}}`, 201, &p)
	if p.ID != 1 || p.Name != "shop" || p.Settings.WebhookAuth != "token" {
		t.Fatalf("created %+v", p)
	}
	f.api(t, "POST", "/api/v1/projects", `{"id":1,"name":"again"}`, 409, nil)
	b := f.api(t, "POST", "/api/v1/projects", `{"name":"x","settings":{"webhook_auth":"token","redirect_host":[]}}`, 400, nil)
	if !strings.Contains(string(b), "redirect_host") {
		t.Fatalf("unknown field not named: %s", b)
	}
	f.api(t, "POST", "/api/v1/projects", `{"name":"x","settings":{"webhook_auth":"magic"}}`, 400, nil)
	f.api(t, "POST", "/api/v1/projects", ``, 400, nil)
	f.api(t, "GET", "/api/v1/projects/abc", "", 400, nil)
	f.api(t, "GET", "/api/v1/projects/77", "", 404, nil)

	var list ProjectList
	f.api(t, "GET", "/api/v1/projects", "", 200, &list)
	if len(list.Projects) != 2 || list.Projects[0].ID != 0 || list.Projects[1].ID != 1 {
		t.Fatalf("list %+v", list)
	}
	var up project.Project
	f.api(t, "PATCH", "/api/v1/projects/1", `{"name":"shop2"}`, 200, &up)
	if up.Name != "shop2" || up.Settings.WebhookAuth != "token" {
		t.Fatalf("patched %+v", up)
	}

	var ct CreatedToken
	f.api(t, "POST", "/api/v1/projects/1/tokens", `{"name":"crm"}`, 201, &ct)
	if !strings.HasPrefix(ct.Secret, "sl_") || ct.Token.ProjectID != 1 || ct.Token.Name != "crm" {
		t.Fatalf("token %+v", ct)
	}
	var imported CreatedToken
	f.api(t, "POST", "/api/v1/projects/1/tokens", `{"name":"legacy","secret":"abc123"}`, 201, &imported)
	f.api(t, "POST", "/api/v1/projects/0/tokens", `{"name":"steal","secret":"abc123"}`, 409, nil)
	f.api(t, "POST", "/api/v1/projects/55/tokens", `{"name":"x"}`, 404, nil)
	raw := f.api(t, "GET", "/api/v1/projects/1/tokens", "", 200, nil)
	if strings.Contains(string(raw), ct.Secret) || strings.Contains(string(raw), "abc123") {
		t.Fatalf("token list reveals a secret: %s", raw)
	}
	var toks TokenList
	json.Unmarshal(raw, &toks)
	if len(toks.Tokens) != 2 {
		t.Fatalf("tokens %+v", toks)
	}
	if p, _, ok := f.projects.Authenticate(ct.Secret); !ok || p != 1 {
		t.Fatal("created token does not authenticate")
	}
	var rev project.Token
	f.api(t, "DELETE", "/api/v1/projects/1/tokens/"+ct.Token.ID, "", 200, &rev)
	if rev.RevokedAt == nil {
		t.Fatalf("revoked %+v", rev)
	}
	if _, _, ok := f.projects.Authenticate(ct.Secret); ok {
		t.Fatal("revoked token authenticates")
	}
	f.api(t, "DELETE", "/api/v1/projects/0/tokens/"+imported.Token.ID, "", 404, nil)
	f.api(t, "DELETE", "/api/v1/projects/0", "", 400, nil)
	f.api(t, "DELETE", "/api/v1/projects/1", "", 204, nil)
	f.api(t, "GET", "/api/v1/projects/1", "", 404, nil)
}

type eventsPage struct {
	Events []json.RawMessage `json:"events"`
	Next   event.ID          `json:"next"`
	Head   event.ID          `json:"head"`
}

func TestEventsQueryAndCursor(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var evs []*event.Event
	for i := 0; i < 10; i++ {
		key := "in.gen.calltrack.call"
		if i%2 == 1 {
			key = "in.gen.crm.lead"
		}
		evs = append(evs, logtest.Event(uint32(i%3), key, i))
	}
	if _, err := f.log.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	var page eventsPage
	f.api(t, "GET", "/api/v1/events?limit=4", "", 200, &page)
	if len(page.Events) != 4 || page.Next != evs[3].ID || page.Head != evs[9].ID {
		t.Fatalf("page %d events next %d head %d", len(page.Events), page.Next, page.Head)
	}
	var first event.Event
	json.Unmarshal(page.Events[0], &first)
	if first.ID != evs[0].ID || first.Key != evs[0].Key || string(first.Data) != string(evs[0].Data) {
		t.Fatalf("first %+v", first)
	}
	f.api(t, "GET", "/api/v1/events?after="+page.Next.String(), "", 200, &page)
	if len(page.Events) != 6 || page.Next != evs[9].ID {
		t.Fatalf("after page: %d next %d", len(page.Events), page.Next)
	}
	f.api(t, "GET", "/api/v1/events?project=1,2&key=in.gen.crm.*", "", 200, &page)
	for _, raw := range page.Events {
		var e event.Event
		json.Unmarshal(raw, &e)
		if e.Key != "in.gen.crm.lead" || e.ProjectID == 0 {
			t.Fatalf("filtered event %+v", e)
		}
	}
	if len(page.Events) != 3 { // i = 1, 5, 7 have key crm.lead and project 1 or 2
		t.Fatalf("%d filtered events", len(page.Events))
	}
	since := time.UnixMilli(evs[2].Time).UTC().Format(time.RFC3339Nano)
	f.api(t, "GET", "/api/v1/events?since="+since+"&until="+strconv.FormatInt(evs[5].Time, 10), "", 200, &page)
	if len(page.Events) != 3 {
		t.Fatalf("time range: %d events", len(page.Events))
	}
	b := f.api(t, "GET", "/api/v1/events?project=x&limit=0&after=y&since=yesterday&wait=soon", "", 400, nil)
	for _, field := range []string{`"project"`, `"limit"`, `"after"`, `"since"`, `"wait"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("error body %s lacks %s", b, field)
		}
	}
	// An id past 63 bits is refused, not wrapped into the start of the log.
	for _, p := range []string{"/api/v1/events?after=9999999999999999999", "/api/v1/events/export?after=9223372036854775808"} {
		var e errorBody
		f.api(t, "GET", p, "", 400, &e)
		if len(e.Errors) != 1 || e.Errors[0].Path != "after" || !strings.Contains(e.Errors[0].Message, "from 0 to 9223372036854775807") {
			t.Errorf("%s: %+v", p, e)
		}
	}
	// An empty page keeps the cursor.
	f.api(t, "GET", "/api/v1/events?after="+evs[9].ID.String(), "", 200, &page)
	if len(page.Events) != 0 || page.Next != evs[9].ID {
		t.Fatalf("empty page %+v", page)
	}
}

func TestEventsLongPoll(t *testing.T) {
	f := newFixture(t)
	head := f.log.Head()
	done := make(chan eventsPage, 1)
	start := time.Now()
	go func() {
		var page eventsPage
		f.api(t, "GET", "/api/v1/events?after="+head.String()+"&wait=5s", "", 200, &page)
		done <- page
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := f.log.Append(context.Background(), []*event.Event{logtest.Event(0, "k", 1)}); err != nil {
		t.Fatal(err)
	}
	select {
	case page := <-done:
		if len(page.Events) != 1 {
			t.Fatalf("long poll answered %d events", len(page.Events))
		}
		if time.Since(start) > 4*time.Second {
			t.Fatal("long poll did not wake on the commit")
		}
	case <-time.After(6 * time.Second):
		t.Fatal("long poll never answered")
	}
	// With nothing new, wait= times out with an empty page.
	var page eventsPage
	f.api(t, "GET", "/api/v1/events?after="+f.log.Head().String()+"&wait=50ms", "", 200, &page)
	if len(page.Events) != 0 {
		t.Fatalf("%d events", len(page.Events))
	}
}

func TestEventTypesAPI(t *testing.T) {
	f := newFixture(t)
	var p project.Project
	f.api(t, "POST", "/api/v1/projects", `{"name":"app","settings":{"app_id":"my-app","default_region":"ir","hash_pii":true,"s2s":false}}`, 201, &p)
	if p.Settings.AppID != "my-app" || p.Settings.DefaultRegion != "IR" || !p.Settings.HashPII || p.Settings.S2SEnabled() {
		t.Fatalf("settings %+v", p.Settings)
	}
	base := "/api/v1/projects/" + strconv.Itoa(int(p.ID)) + "/event-types"
	var et project.EventType
	f.api(t, "POST", base, `{"slug":"aewqd","kind":"action","name":"Purchase"}`, 201, &et)
	if et.Slug != "aewqd" || et.Kind != "action" || et.ProjectID != p.ID {
		t.Fatalf("created %+v", et)
	}
	f.api(t, "POST", base, `{"slug":"aewqd","kind":"revenue"}`, 409, nil)
	f.api(t, "POST", base, `{"slug":"bad slug","kind":"action"}`, 400, nil)
	f.api(t, "POST", base, `{"slug":"x","kind":"click"}`, 400, nil)
	f.api(t, "POST", base, `{"slug":"x","kind":"action","color":"red"}`, 400, nil)
	f.api(t, "POST", "/api/v1/projects/999/event-types", `{"slug":"x","kind":"action"}`, 404, nil)
	f.api(t, "GET", base+"/aewqd", "", 200, &et)
	f.api(t, "GET", base+"/nope", "", 404, nil)
	f.api(t, "PATCH", base+"/aewqd", `{"kind":"revenue","name":"Paid"}`, 200, &et)
	if et.Kind != "revenue" || et.Name != "Paid" {
		t.Fatalf("patched %+v", et)
	}
	f.api(t, "PATCH", base+"/aewqd", `{"slug":"other","kind":"revenue"}`, 400, nil)
	var list EventTypeList
	f.api(t, "GET", base, "", 200, &list)
	if len(list.EventTypes) != 1 {
		t.Fatalf("list %+v", list)
	}
	f.api(t, "DELETE", base+"/aewqd", "", 204, nil)
	f.api(t, "DELETE", base+"/aewqd", "", 404, nil)
}

func TestSchemasAPI(t *testing.T) {
	f := newFixture(t)
	var list SchemaList
	f.api(t, "GET", "/api/v1/schemas", "", 200, &list)
	if len(list.Schemas) != 13 || list.Schemas[0].Type != "add-to-cart-v1" || !strings.Contains(string(list.Schemas[0].Doc), `"required"`) {
		t.Fatalf("built-ins %+v", list.Schemas)
	}
	var one map[string]any
	f.api(t, "GET", "/api/v1/schemas/purchase-v1", "", 200, &one)
	if one["type"] != "purchase-v1" || one["schema"].(map[string]any)["properties"].(map[string]any)["uniqueTransactionId"] == nil {
		t.Fatalf("purchase-v1 %v", one)
	}
	f.api(t, "GET", "/api/v1/schemas/refund-v1", "", 404, nil)

	var p project.Project
	f.api(t, "POST", "/api/v1/projects", `{"name":"shop"}`, 201, &p)
	base := "/api/v1/projects/" + strconv.Itoa(int(p.ID)) + "/schemas"
	doc := `{"type":"object","required":["carrier"],"properties":{"carrier":{"enum":["dhl","ups"]}}}`
	var rec project.SchemaRecord
	f.api(t, "POST", base, `{"type":"order-shipped-v1","schema":`+doc+`}`, 201, &rec)
	if rec.Type != "order-shipped-v1" || rec.ProjectID != p.ID || rec.CreatedAt.IsZero() {
		t.Fatalf("registered %+v", rec)
	}
	// The same document again is a no-op; another is refused.
	f.api(t, "POST", base, `{"type":"order-shipped-v1","schema":`+doc+`}`, 200, nil)
	b := f.api(t, "POST", base, `{"type":"order-shipped-v1","schema":{"type":"object"}}`, 409, nil)
	if !strings.Contains(string(b), "immutable") {
		t.Fatalf("409 body %s", b)
	}
	// Versions coexist.
	f.api(t, "POST", base, `{"type":"order-shipped-v2","schema":{"type":"object"}}`, 201, nil)
	// The compiler's message comes back.
	b = f.api(t, "POST", base, `{"type":"order-shipped-v3","schema":{"type":"objekt"}}`, 400, nil)
	if !strings.Contains(string(b), "/type") || !strings.Contains(string(b), "does not compile") {
		t.Fatalf("400 body %s", b)
	}
	f.api(t, "POST", base, `{"type":"purchase-v1","schema":{}}`, 400, nil)
	f.api(t, "POST", base, `{"type":"Order","schema":{}}`, 400, nil)
	f.api(t, "POST", base, `{"type":"order-v1"}`, 400, nil)
	f.api(t, "POST", "/api/v1/projects/999/schemas", `{"type":"order-v1","schema":{}}`, 404, nil)
	var plist ProjectSchemaList
	f.api(t, "GET", base, "", 200, &plist)
	if len(plist.Schemas) != 2 || plist.Schemas[0].Type != "order-shipped-v1" || plist.Schemas[1].Type != "order-shipped-v2" {
		t.Fatalf("list %+v", plist)
	}
	f.api(t, "GET", base+"/order-shipped-v1", "", 200, &rec)
	if !strings.Contains(string(rec.Schema), `"carrier"`) {
		t.Fatalf("got %s", rec.Schema)
	}
	f.api(t, "DELETE", base+"/order-shipped-v1", "", 204, nil)
	f.api(t, "GET", base+"/order-shipped-v1", "", 404, nil)
	f.api(t, "DELETE", base+"/order-shipped-v1", "", 404, nil)
}
