package admin

import (
	"crypto/sha256"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/project"
	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/httpsink"
	"github.com/sluicehq/sluice/internal/sink/kafkasink"
)

// newHookFixture is newFixture with hooks served.
func newHookFixture(t *testing.T) *fixture {
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
	hooks, err := hook.Open(hook.Config{Path: filepath.Join(dir, "hooks.db"), KeyPath: filepath.Join(dir, "hooks.key"),
		Destinations: []sink.Destination{httpsink.Destination(), kafkasink.Destination()}}, l, ps, nil, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hooks.Close(); l.Close(); ps.Close() })
	hub := runHub(t, l)
	h := New(Config{TokenHash: sha256.Sum256([]byte(adminToken)), MaxWait: 5 * time.Second, Hooks: hooks, Live: hub}, ps, l, reg, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, log: l, projects: ps, hub: hub}
}

type errorBody struct {
	Message string            `json:"message"`
	Errors  event.FieldErrors `json:"errors"`
}

// A bad hook definition is answered 400 with the path of each field at
// fault, a hook for a project that does not exist 404 naming project_id
// (worded as for tokens), and nothing is stored.
func TestHookDefinitionErrorsNameTheField(t *testing.T) {
	f := newHookFixture(t)
	const good = `"name":"crm","events":["in.gen.*"],"http":{"url":"https://crm.example.com/hook"}`
	for _, c := range []struct {
		name, body string
		status     int
		path, msg  string
	}{
		{"url", `{"name":"crm","events":["in.gen.*"],"http":{"url":"http://[::1"}}`, 400, "http.url", "missing ']' in host"},
		{"header CR/LF", `{` + good[:len(good)-1] + `,"headers":{"X-Foo":"a\r\nX-Injected: 1"}}}`, 400, `http.headers["X-Foo"]`, "CR, LF"},
		{"filter size", `{` + good + `,"filter":"event.data.n in 1..100000000"}`, 400, "filter", "at most 1000"},
		{"retries", `{` + good + `,"retry_times":1000}`, 400, "retry_times", "0 to 100"},
		{"custom_data", `{` + good + `,"custom_data":{"x":"{{nope}}"}}`, 400, `custom_data["x"]`, "unknown parameter {{nope}}"},
		{"project", `{` + good + `,"project_id":777}`, 404, "project_id", "project 777 does not exist"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var e errorBody
			f.api(t, "POST", "/api/v1/hooks", c.body, c.status, &e)
			if len(e.Errors) == 0 || e.Errors[0].Path != c.path || !strings.Contains(e.Errors[0].Message, c.msg) {
				t.Fatalf("errors %+v", e)
			}
			if c.status == 400 && e.Message != "invalid hook" {
				t.Fatalf("message %q", e.Message)
			}
		})
	}
	// The same wording as a token of that project.
	var tok, hk errorBody
	f.api(t, "GET", "/api/v1/projects/777/tokens", "", 404, &tok)
	f.api(t, "POST", "/api/v1/hooks", `{`+good+`,"project_id":777}`, 404, &hk)
	if hk.Message != tok.Message || tok.Message != "project 777: not found" {
		t.Fatalf("hook %q, token %q", hk.Message, tok.Message)
	}
	var list HookList
	if f.api(t, "GET", "/api/v1/hooks", "", 200, &list); len(list.Hooks) != 0 {
		t.Fatalf("stored: %+v", list.Hooks)
	}

	// Update and clone are refused the same way, and change nothing.
	var created hook.Hook
	f.api(t, "POST", "/api/v1/hooks", `{`+good+`,"project_id":0,"active":false}`, 201, &created)
	var e errorBody
	f.api(t, "PUT", "/api/v1/hooks/"+created.ID, `{`+good+`,"project_id":778}`, 404, &e)
	if len(e.Errors) != 1 || e.Errors[0].Path != "project_id" {
		t.Fatalf("update: %+v", e)
	}
	f.api(t, "PUT", "/api/v1/hooks/"+created.ID, `{"name":"crm","events":["in.gen.*"],"http":{"url":"http://[::1"}}`, 400, &e)
	var got hook.Hook
	f.api(t, "GET", "/api/v1/hooks/"+created.ID, "", 200, &got)
	created.SigningSecret = ""
	a, _ := json.Marshal(created)
	b, _ := json.Marshal(got)
	if string(a) != string(b) {
		t.Fatalf("a refused update changed the hook:\n%s\n%s", a, b)
	}
	var p project.Project
	f.api(t, "POST", "/api/v1/projects", `{"name":"brief"}`, 201, &p)
	var on hook.Hook
	f.api(t, "POST", "/api/v1/hooks", `{`+good+`,"project_id":`+jsonNumber(p.ID)+`}`, 201, &on)
	// Its project cannot go while the hook is scoped to it.
	f.api(t, "DELETE", "/api/v1/projects/"+jsonNumber(p.ID), "", 409, &e)
	if len(e.Errors) != 1 || e.Errors[0].Path != "id" || !strings.Contains(e.Message, on.ID) {
		t.Fatalf("delete a project with a hook: %+v", e)
	}
	if f.api(t, "GET", "/api/v1/hooks", "", 200, &list); len(list.Hooks) != 2 {
		t.Fatalf("%d hooks", len(list.Hooks))
	}
	// A pre-test sample without a key.
	f.api(t, "POST", "/api/v1/hooks/"+created.ID+"/test", `{"sample":{"data":{}}}`, 400, &e)
	if len(e.Errors) != 1 || e.Errors[0].Path != "sample.key" {
		t.Fatalf("test: %+v", e)
	}
}

func jsonNumber(n uint32) string {
	b, _ := json.Marshal(n)
	return string(b)
}
