package admin

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicehq/sluice/internal/event"
)

// strictJSON fails unless b is JSON a strict parser reads: valid syntax,
// UTF-8, no unpaired surrogate escapes.
func strictJSON(t *testing.T, b []byte) {
	t.Helper()
	if !utf8.Valid(b) || !json.Valid(b) {
		t.Fatalf("not UTF-8 JSON: %q", b)
	}
	if te := event.CheckJSONText(b); te != nil {
		t.Fatalf("not strict JSON text: %v: %q", te, b)
	}
}

// The API refuses bodies, paths and queries that are not UTF-8 text, at
// the field's path, and stores nothing.
func TestAPIRefusesInvalidText(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		method, path, body, wantPath string
	}{
		{"POST", "/api/v1/projects", "{\"name\":\"sh\xf6p\"}", "name"},
		{"POST", "/api/v1/projects", `{"name":"shop","settings":{"redirect_hosts":["a.com","\ud800.com"]}}`, "settings.redirect_hosts[1]"},
		{"POST", "/api/v1/projects", "{\"na\xffme\":\"x\"}", `["na�me"]`},
		{"GET", "/api/v1/events?key=in.gen.%FF", "", "query.key"},
		{"GET", "/api/v1/schemas/%FF", "", "path"},
	} {
		status, b, _ := f.call(t, c.method, c.path, c.body, "Bearer "+adminToken)
		if status != 400 {
			t.Fatalf("%s %s: status %d: %s", c.method, c.path, status, b)
		}
		strictJSON(t, b)
		var ans struct {
			Errors []struct{ Path, Message string } `json:"errors"`
		}
		json.Unmarshal(b, &ans)
		if len(ans.Errors) != 1 || ans.Errors[0].Path != c.wantPath || !strings.Contains(ans.Errors[0].Message, "not valid UTF-8 text") {
			t.Fatalf("%s %s %q: errors %+v, want one at %s", c.method, c.path, c.body, ans.Errors, c.wantPath)
		}
	}
	var projects struct {
		Projects []struct{ Name string } `json:"projects"`
	}
	f.api(t, "GET", "/api/v1/projects", "", 200, &projects)
	if len(projects.Projects) != 1 || projects.Projects[0].Name != "default" {
		t.Fatalf("a refused project was stored: %+v", projects)
	}
}

// Events stored before ingest refused such strings are served as strict
// JSON: their bad bytes become U+FFFD, everything else is unchanged.
func TestEventPagesAreStrictJSON(t *testing.T) {
	f := newFixture(t)
	_, err := f.log.Append(context.Background(), []*event.Event{
		{Key: "in.gen.crm.lead", Dialect: "webhook", Data: []byte("{\"city\":\"Mosc\xf6w\",\"n\xffote\":\"\\ud800\",\"ok\":\"\\ud83d\\ude00\"}")},
		{Key: "in.gen.crm.lead", Dialect: "webhook", Data: []byte(`{"city":"قم"}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	b := f.api(t, "GET", "/api/v1/events?limit=10", "", 200, nil)
	strictJSON(t, b)
	var page struct {
		Events []struct {
			Data map[string]string `json:"data"`
		} `json:"events"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 2 || page.Events[0].Data["city"] != "Mosc\uFFFDw" || page.Events[0].Data["n\uFFFDote"] != "\uFFFD" ||
		page.Events[0].Data["ok"] != "😀" || page.Events[1].Data["city"] != "قم" {
		t.Fatalf("page %s", b)
	}
}
