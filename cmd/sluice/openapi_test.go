package main

import (
	"bytes"
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
	"sync/atomic"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/paths"
	"github.com/pb33f/libopenapi/datamodel"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
)

// contract checks real exchanges with the admin listener against
// docs/openapi.yaml, and which documented operations they covered.
type contract struct {
	t       *testing.T
	base    string
	model   *v3.Document
	v       validator.Validator
	opts    *config.ValidationOptions
	covered map[string]map[int]bool // "METHOD /template" → statuses seen
}

func newContract(t *testing.T, base string) *contract {
	t.Helper()
	b, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := datamodel.NewDocumentConfiguration()
	cfg.BasePath = "../../docs" // event.schema.json
	cfg.AllowFileReferences = true
	doc, err := libopenapi.NewDocumentWithConfiguration(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if errs != nil {
		t.Fatal(errs)
	}
	return &contract{t: t, base: base, model: &m.Model, v: v, opts: config.NewValidationOptions(), covered: map[string]map[int]bool{}}
}

// call sends one request and checks the answer's status, and the answer
// (and, for a 2xx, the request) against the document. token "" sends none.
func (c *contract) call(method, path, body, token string, want int) []byte {
	c.t.Helper()
	mk := func() *http.Request {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, c.base+path, rd)
		if err != nil {
			c.t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return req
	}
	resp, err := client.Do(mk())
	if err != nil {
		c.t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		c.t.Fatal(err)
	}
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, got)
	}
	req := mk()
	item, _, tmpl := paths.FindPath(req, c.model, c.opts)
	if item == nil {
		c.t.Errorf("%s %s: no documented path", method, path)
	} else {
		op := method + " " + tmpl
		if c.covered[op] == nil {
			c.covered[op] = map[int]bool{}
		}
		c.covered[op][resp.StatusCode] = true
	}
	resp.Body = io.NopCloser(bytes.NewReader(got))
	resp.Request = req
	if ok, errs := c.v.ValidateHttpResponse(req, resp); !ok {
		c.report(fmt.Sprintf("answer to %s %s (%d %s)", method, path, resp.StatusCode, got), errs)
	}
	if want < 300 {
		if ok, errs := c.v.ValidateHttpRequest(mk()); !ok {
			c.report(fmt.Sprintf("request %s %s %s", method, path, body), errs)
		}
	}
	return got
}

func (c *contract) report(what string, errs []*verrors.ValidationError) {
	c.t.Helper()
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\n  %s: %s", e.Message, e.Reason)
		for _, f := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "\n    %s: %s (%s)", f.FieldPath, f.Reason, f.KeywordLocation)
		}
	}
	c.t.Errorf("%s does not match docs/openapi.yaml:%s", what, b.String())
}

// Every documented admin operation, called on the real server, answers as
// docs/openapi.yaml says: each answer (errors included) against its
// response schema, each request we make against its request schema, and
// no documented operation left uncalled.
func TestAdminAnswersMatchOpenAPI(t *testing.T) {
	var failing atomic.Bool
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if failing.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Write([]byte(`{"ok":true}`))
	}))
	defer recv.Close()
	cfgFile := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfgFile, []byte("hooks:\n  allow_networks: [127.0.0.0/8]\n"), 0o600)
	s := startServer(t, t.TempDir(), "--config", cfgFile)
	c := newContract(t, s.admin)
	tok := testAdminToken
	var out struct {
		ID       json.RawMessage `json:"id"`
		Secret   string          `json:"secret"`
		Token    struct{ ID string }
		Settings struct {
			AppID string `json:"app_id"`
		}
		SigningSecret string `json:"signing_secret"`
		DeadLetters   []struct {
			ID int `json:"id"`
		} `json:"dead_letters"`
	}
	decode := func(b []byte) {
		t.Helper()
		out.ID, out.DeadLetters = nil, nil
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
	}

	// Health, metrics, profiling.
	c.call("GET", "/healthz", "", "", 200)
	c.call("GET", "/readyz", "", "", 200)
	c.call("GET", "/metrics", "", "", 200)
	c.call("GET", "/debug/pprof/", "", tok, 200)
	c.call("GET", "/debug/pprof/", "", "", 401)

	// Projects.
	c.call("GET", "/api/v1/projects", "", tok, 200)
	c.call("GET", "/api/v1/projects", "", "", 401)
	c.call("GET", "/api/v1/projects", "", "sla_wrong_token_0123456789", 401)
	decode(c.call("POST", "/api/v1/projects", `{"name":"shop","settings":{"webhook_auth":"token","redirect_hosts":["shop.example.com"],"default_region":"IR"}}`, tok, 201))
	c.call("POST", "/api/v1/projects", `{"id":1,"name":"again"}`, tok, 409)
	c.call("POST", "/api/v1/projects", `{"name":"x","settings":{"webhook_auth":"maybe"}}`, tok, 400)
	c.call("POST", "/api/v1/projects", `{"id":9,"name":"temp"}`, tok, 201)
	c.call("GET", "/api/v1/projects/1", "", tok, 200)
	c.call("GET", "/api/v1/projects/404", "", tok, 404)
	c.call("GET", "/api/v1/projects/nope", "", tok, 400)
	c.call("PATCH", "/api/v1/projects/1", `{"name":"shop2","settings":{"hash_pii":true,"s2s":false}}`, tok, 200)
	c.call("PATCH", "/api/v1/projects/1", `{"settings":{"unknown":1}}`, tok, 400)
	c.call("PATCH", "/api/v1/projects/404", `{"name":"x"}`, tok, 404)
	c.call("DELETE", "/api/v1/projects/9", "", tok, 204)
	c.call("DELETE", "/api/v1/projects/9", "", tok, 404)
	c.call("DELETE", "/api/v1/projects/0", "", tok, 400)

	// Tokens.
	decode(c.call("POST", "/api/v1/projects/0/tokens", `{"name":"crm","secret":"abc123"}`, tok, 201))
	c.call("POST", "/api/v1/projects/1/tokens", `{"name":"dup","secret":"abc123"}`, tok, 409)
	c.call("POST", "/api/v1/projects/1/tokens", `{"name":"short","secret":"ab"}`, tok, 400)
	c.call("POST", "/api/v1/projects/404/tokens", `{"name":"x"}`, tok, 404)
	decode(c.call("POST", "/api/v1/projects/1/tokens", `{"name":"gen"}`, tok, 201))
	c.call("GET", "/api/v1/projects/1/tokens", "", tok, 200)
	c.call("GET", "/api/v1/projects/404/tokens", "", tok, 404)
	c.call("DELETE", "/api/v1/projects/1/tokens/"+out.Token.ID, "", tok, 200)
	c.call("GET", "/api/v1/projects/1/tokens", "", tok, 200) // with a revokedAt
	c.call("DELETE", "/api/v1/projects/1/tokens/tok_000000000000", "", tok, 404)

	// Event types.
	c.call("POST", "/api/v1/projects/0/event-types", `{"slug":"slug1","kind":"action","name":"Opened the app"}`, tok, 201)
	c.call("POST", "/api/v1/projects/0/event-types", `{"slug":"slug1","kind":"action"}`, tok, 409)
	c.call("POST", "/api/v1/projects/0/event-types", `{"slug":"bad slug","kind":"action"}`, tok, 400)
	c.call("POST", "/api/v1/projects/404/event-types", `{"slug":"s","kind":"action"}`, tok, 404)
	c.call("POST", "/api/v1/projects/0/event-types", `{"slug":"buy","kind":"revenue","description":"a purchase"}`, tok, 201)
	c.call("GET", "/api/v1/projects/0/event-types", "", tok, 200)
	c.call("GET", "/api/v1/projects/404/event-types", "", tok, 404)
	c.call("GET", "/api/v1/projects/0/event-types/slug1", "", tok, 200)
	c.call("GET", "/api/v1/projects/0/event-types/nope", "", tok, 404)
	c.call("PATCH", "/api/v1/projects/0/event-types/buy", `{"kind":"revenue","name":"Purchase"}`, tok, 200)
	c.call("PATCH", "/api/v1/projects/0/event-types/buy", `{"kind":"neither"}`, tok, 400)
	c.call("PATCH", "/api/v1/projects/0/event-types/nope", `{"kind":"action"}`, tok, 404)
	c.call("POST", "/api/v1/projects/0/event-types", `{"slug":"gone","kind":"action"}`, tok, 201)
	c.call("DELETE", "/api/v1/projects/0/event-types/gone", "", tok, 204)
	c.call("DELETE", "/api/v1/projects/0/event-types/gone", "", tok, 404)

	// Schemas, built in and registered.
	c.call("GET", "/api/v1/schemas", "", tok, 200)
	c.call("GET", "/api/v1/schemas/purchase-v1", "", tok, 200)
	c.call("GET", "/api/v1/schemas/refund-v1", "", tok, 404)
	shipped := `{"type":"order-shipped-v1","schema":{"type":"object","required":["carrier"],"properties":{"carrier":{"enum":["dhl","ups"]}}}}`
	c.call("POST", "/api/v1/projects/0/schemas", shipped, tok, 201)
	c.call("POST", "/api/v1/projects/0/schemas", shipped, tok, 200)
	c.call("POST", "/api/v1/projects/0/schemas", `{"type":"order-shipped-v1","schema":{"type":"object"}}`, tok, 409)
	c.call("POST", "/api/v1/projects/0/schemas", `{"type":"broken-v1","schema":{"type":"nonsense"}}`, tok, 400)
	c.call("POST", "/api/v1/projects/404/schemas", shipped, tok, 404)
	c.call("GET", "/api/v1/projects/0/schemas", "", tok, 200)
	c.call("GET", "/api/v1/projects/404/schemas", "", tok, 404)
	c.call("GET", "/api/v1/projects/0/schemas/order-shipped-v1", "", tok, 200)
	c.call("GET", "/api/v1/projects/0/schemas/order-shipped-v9", "", tok, 404)
	c.call("POST", "/api/v1/projects/0/schemas", `{"type":"gone-v1","schema":{"type":"object"}}`, tok, 201)
	c.call("DELETE", "/api/v1/projects/0/schemas/gone-v1", "", tok, 204)
	c.call("DELETE", "/api/v1/projects/0/schemas/gone-v1", "", tok, 404)

	// Events of every dialect, then read back, and a profile.
	decode(c.call("GET", "/api/v1/projects/0", "", tok, 200))
	appID := out.Settings.AppID
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("abc123:"))
	for _, r := range []response{
		do(t, "GET", s.ingest+"/calltrack/call/0?param=myparamvalue", "", ""),
		do(t, "POST", s.ingest+"/track", "application/json", `{"hitId":"4c59d330-35c7-11e9-8f27-8d1d7d4690e7","sentAt":"2019-02-21T10:56:10.723Z","event":{"name":"Completed Transaction","value":3029,"user":{"userId":"u-1"}}}`, "Authorization", basic),
		do(t, "POST", s.ingest+"/v1/events", "application/json", `{"name":"Purchase","anonymousId":"a-1","properties":{"eventType":"purchase-v1","uniqueTransactionId":"123456","value":90.55,"currency":"RUB"}}`, "Authorization", "Bearer abc123"),
		do(t, "POST", s.ingest+"/", "application/json", `{"customUserId":"r.akbari","messages":[{"type":"user","id":"m-1","time":1680000000000,"firstName":"Reza","customAttributes":{"job":"developer"}},{"type":"action","id":"m-2","time":1680000000000,"name":"slug1"}]}`,
			"X-Application-Id", appID, "X-API-Key", "abc123"),
	} {
		if r.status != 200 {
			t.Fatalf("ingest: %d %s", r.status, r.body)
		}
	}
	c.call("GET", "/api/v1/events?limit=100", "", tok, 200)
	c.call("GET", "/api/v1/events?newest=true&limit=2&key=in.*&project=0", "", tok, 200)
	var page struct {
		Events []struct {
			ID string `json:"id"`
		} `json:"events"`
	}
	json.Unmarshal(c.call("GET", "/api/v1/events?limit=1", "", tok, 200), &page)
	c.call("GET", "/api/v1/events/"+page.Events[0].ID, "", tok, 200)
	c.call("GET", "/api/v1/events/1", "", tok, 404)
	c.call("GET", "/api/v1/events/x", "", tok, 400)
	c.call("GET", "/api/v1/events?identity=r.akbari&identity_type=custom_user_id", "", tok, 200)
	c.call("GET", "/api/v1/events/export?limit=2&key=in.*", "", tok, 200)
	c.call("GET", "/api/v1/events/export?limit=0", "", tok, 400)
	c.call("GET", "/api/v1/live?backlog=1&limit=1", "", tok, 200)
	c.call("GET", "/api/v1/live?kinds=nope", "", tok, 400)
	c.call("GET", "/api/v1/overview", "", tok, 200)
	c.call("GET", "/api/v1/events?limit=0", "", tok, 400)
	c.call("GET", "/api/v1/events?newest=maybe", "", tok, 400)
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp := do(t, "GET", s.admin+"/api/v1/projects/0/profiles/custom_user_id/r.akbari", "", "", "Authorization", "Bearer "+tok)
		if resp.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no profile: %d %s", resp.status, resp.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.call("GET", "/api/v1/projects/0/profiles/custom_user_id/r.akbari", "", tok, 200)
	c.call("GET", "/api/v1/projects/0/profiles/custom_user_id/nobody", "", tok, 404)
	c.call("GET", "/api/v1/projects/0/profiles/phone/123", "", tok, 400)
	c.call("GET", "/api/v1/projects/0/profiles/custom_user_id/r.akbari/events?limit=1&key=in.s2s.*", "", tok, 200)
	c.call("GET", "/api/v1/projects/0/profiles/custom_user_id/r.akbari/events?before=yesterday", "", tok, 400)
	c.call("DELETE", "/api/v1/projects/0/profiles/custom_user_id/r.akbari", "", tok, 200)
	c.call("DELETE", "/api/v1/projects/0/profiles/custom_user_id/r.akbari", "", tok, 404)

	// Hooks: every operation, for every project (project_id null) and for one.
	def := `{"name":"calls","active":true,"project_id":null,"events":["in.gen.calltrack.*"],"type":"http",` +
		`"http":{"url":"` + recv.URL + `","timeout":"5s","headers":{"X-Team":"crm"},"auth":{"type":"bearer","token":"t0ken"}},` +
		`"max_batch_size":10,"batch_timeout":"10ms","retry_times":0,"retry_period":"10ms","custom_data":{"id":"{{uuid}}"}}`
	decode(c.call("POST", "/api/v1/hooks", def, tok, 201))
	var hk string
	json.Unmarshal(out.ID, &hk)
	if !strings.HasPrefix(out.SigningSecret, "whsec_") {
		t.Fatalf("no signing secret in the answer to create")
	}
	c.call("POST", "/api/v1/hooks", `{"name":"x","events":["in.*"],"type":"http","http":{"url":"ftp://x"}}`, tok, 400)
	c.call("POST", "/api/v1/hooks", `{"name":"one","active":false,"project_id":0,"events":["in.*"],"type":"http","http":{"url":"`+recv.URL+`"},"start_from":"2026-01-01T00:00:00Z"}`, tok, 201)
	c.call("GET", "/api/v1/hooks", "", tok, 200)
	c.call("GET", "/api/v1/hooks/"+hk, "", tok, 200)
	c.call("GET", "/api/v1/hooks/hk_nope", "", tok, 404)
	c.call("PUT", "/api/v1/hooks/"+hk, strings.Replace(def, `"calls"`, `"calls, renamed"`, 1), tok, 200)
	c.call("PUT", "/api/v1/hooks/hk_nope", def, tok, 404)
	c.call("PUT", "/api/v1/hooks/"+hk, `{"name":"x","events":[],"type":"http","http":{"url":"`+recv.URL+`"}}`, tok, 400)
	c.call("POST", "/api/v1/hooks/"+hk+"/test", "", tok, 200)
	c.call("POST", "/api/v1/hooks/"+hk+"/test", `{"sample":"not an event"}`, tok, 400)
	c.call("POST", "/api/v1/hooks/hk_nope/test", "", tok, 404)
	c.call("POST", "/api/v1/hooks/"+hk+"/stop", "", tok, 200)
	c.call("POST", "/api/v1/hooks/hk_nope/stop", "", tok, 404)
	failing.Store(true)
	c.call("POST", "/api/v1/hooks/"+hk+"/activate", `{"from":"now"}`, tok, 200)
	c.call("POST", "/api/v1/hooks/hk_nope/activate", "", tok, 404)
	do(t, "GET", s.ingest+"/calltrack/call/0?n=2", "", "")
	for deadline := time.Now().Add(20 * time.Second); ; {
		decode(c.call("GET", "/api/v1/hooks/"+hk+"/dead-letters", "", tok, 200))
		if len(out.DeadLetters) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no dead letter")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.call("GET", "/api/v1/hooks/"+hk+"/dead-letters?since=2026-01-01T00:00:00Z", "", tok, 200)
	c.call("GET", "/api/v1/hooks/hk_nope/dead-letters", "", tok, 404)
	c.call("GET", "/api/v1/hooks/"+hk+"/deliveries?limit=10", "", tok, 200)
	c.call("GET", "/api/v1/hooks/hk_nope/deliveries", "", tok, 404)
	c.call("POST", fmt.Sprintf("/api/v1/hooks/%s/dead-letters/%d/replay", hk, out.DeadLetters[0].ID), "", tok, 200) // fails again
	failing.Store(false)
	c.call("POST", "/api/v1/hooks/"+hk+"/dead-letters/replay", "", tok, 200)
	c.call("POST", "/api/v1/hooks/hk_nope/dead-letters/replay", "", tok, 404)
	c.call("POST", "/api/v1/hooks/"+hk+"/dead-letters/999999/replay", "", tok, 404)
	c.call("POST", "/api/v1/hooks/"+hk+"/rotate-secret", "", tok, 200)
	c.call("POST", "/api/v1/hooks/hk_nope/rotate-secret", "", tok, 404)
	c.call("POST", "/api/v1/hooks/"+hk+"/clone", "", tok, 201)
	c.call("POST", "/api/v1/hooks/hk_nope/clone", "", tok, 404)
	c.call("DELETE", "/api/v1/hooks/"+hk, "", tok, 204)
	c.call("DELETE", "/api/v1/hooks/"+hk, "", tok, 404)

	// Every documented operation was called, and answered 2xx at least once.
	var missing []string
	for path, item := range c.model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			op := strings.ToUpper(method) + " " + path
			ok := false
			for st := range c.covered[op] {
				ok = ok || st < 300
			}
			if !ok {
				missing = append(missing, op)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("documented operations never answered 2xx here (add a call):\n%s", strings.Join(missing, "\n"))
	}
}
