package admin

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/project"
)

// Every refused body is a 400 whose errors name each field at fault, in
// the form the ingest endpoints use, and nothing of it is stored.
func TestRefusedBodiesNameTheirFields(t *testing.T) {
	f := newHookFixture(t)
	const hk = `"name":"crm","events":["in.gen.*"],"http":{"url":"https://crm.example.com/hook"}`
	for _, c := range []struct {
		method, path, body string
		message            string
		errors             event.FieldErrors
	}{
		{"POST", "/api/v1/projects", `{}`, "invalid: name: required", event.FieldErrors{{Path: "name", Message: "required"}}},
		{"POST", "/api/v1/projects", `{"name":"   "}`, "invalid: name: required", event.FieldErrors{{Path: "name", Message: "required"}}},
		{"POST", "/api/v1/projects", `{"name":"` + strings.Repeat("n", 201) + `"}`, "invalid: name: longer than 200 bytes", event.FieldErrors{{Path: "name", Message: "longer than 200 bytes"}}},
		{"POST", "/api/v1/projects", `{"name":"x","nmae":"y"}`, "invalid body: nmae: unknown field", event.FieldErrors{{Path: "nmae", Message: "unknown field"}}},
		{"POST", "/api/v1/projects", `{"name":"x","settings":{"redirect_host":["a.com"],"track":{"custom_dimension":[]}}}`,
			"invalid body: settings.redirect_host: unknown field; settings.track.custom_dimension: unknown field",
			event.FieldErrors{{Path: "settings.redirect_host", Message: "unknown field"}, {Path: "settings.track.custom_dimension", Message: "unknown field"}}},
		{"POST", "/api/v1/projects", `{"name":5}`, "invalid body: name: a string, not a JSON number", event.FieldErrors{{Path: "name", Message: "a string, not a JSON number"}}},
		{"POST", "/api/v1/projects", `{"name":"x","settings":{"redirect_hosts":"a.com"}}`, "invalid body: settings.redirect_hosts: an array, not a JSON string",
			event.FieldErrors{{Path: "settings.redirect_hosts", Message: "an array, not a JSON string"}}},
		{"POST", "/api/v1/projects", `{"name":"x","settings":{"webhook_auth":"magic","redirect_hosts":["ok.com","*"],"default_region":"ZZZ"}}`,
			`invalid: settings.webhook_auth: "magic" is not one of none, token; settings.redirect_hosts[1]: "*" is not a host name (write example.com or *.example.com, no scheme, port or path); settings.default_region: "ZZZ" is not a region code such as IR or RU`,
			event.FieldErrors{{Path: "settings.webhook_auth", Message: `"magic" is not one of none, token`},
				{Path: "settings.redirect_hosts[1]", Message: `"*" is not a host name (write example.com or *.example.com, no scheme, port or path)`},
				{Path: "settings.default_region", Message: `"ZZZ" is not a region code such as IR or RU`}}},
		{"POST", "/api/v1/projects", `{"name":"x",}`, "invalid body: not valid JSON: invalid character '}' looking for beginning of object key string (line 1, byte 13)",
			event.FieldErrors{{Path: "", Message: "not valid JSON: invalid character '}' looking for beginning of object key string (line 1, byte 13)"}}},
		{"POST", "/api/v1/projects", ` `, "a JSON body is required", event.FieldErrors{{Path: "", Message: "a JSON body is required"}}},
		{"PATCH", "/api/v1/projects/0", `{"name":""}`, "invalid: name: required", event.FieldErrors{{Path: "name", Message: "required"}}},
		{"PATCH", "/api/v1/projects/0", `{"settings":{"app_id":"a"}}`, `invalid: settings.app_id: "a" must be 4 to 64 letters, digits, '_' or '-'`,
			event.FieldErrors{{Path: "settings.app_id", Message: `"a" must be 4 to 64 letters, digits, '_' or '-'`}}},
		{"POST", "/api/v1/projects/0/tokens", `{"name":"t","secret":"abc"}`, "invalid: secret: shorter than 6 characters",
			event.FieldErrors{{Path: "secret", Message: "shorter than 6 characters"}}},
		{"POST", "/api/v1/projects/0/tokens", `{"name":"` + strings.Repeat("t", 201) + `"}`, "invalid: name: longer than 200 bytes",
			event.FieldErrors{{Path: "name", Message: "longer than 200 bytes"}}},
		{"POST", "/api/v1/projects/0/event-types", `{"slug":"a b","kind":"sale"}`,
			`invalid: slug: "a b" must be 1 to 64 letters, digits, '_' or '-'; kind: "sale" is not action or revenue`,
			event.FieldErrors{{Path: "slug", Message: `"a b" must be 1 to 64 letters, digits, '_' or '-'`}, {Path: "kind", Message: `"sale" is not action or revenue`}}},
		{"POST", "/api/v1/projects/0/schemas", `{"schema":{}}`, "type: required: <name>-v<N>, like order-shipped-v1",
			event.FieldErrors{{Path: "type", Message: "required: <name>-v<N>, like order-shipped-v1"}}},
		{"POST", "/api/v1/projects/0/schemas", `{"type":"order-v1"}`, "schema: required: a JSON Schema document (draft 2020-12 unless it says otherwise)",
			event.FieldErrors{{Path: "schema", Message: "required: a JSON Schema document (draft 2020-12 unless it says otherwise)"}}},
		{"POST", "/api/v1/hooks", `{` + hk + `,"batch_size":5}`, "invalid body: batch_size: unknown field", event.FieldErrors{{Path: "batch_size", Message: "unknown field"}}},
		{"POST", "/api/v1/hooks", `{` + hk + `,"start_from":5}`, `invalid body: start_from: "now" or an RFC 3339 time, as a JSON string`,
			event.FieldErrors{{Path: "start_from", Message: `"now" or an RFC 3339 time, as a JSON string`}}},
		{"POST", "/api/v1/hooks", `{` + hk + `,"start_from":"yesterday"}`, `start_from: "yesterday" is neither "now" nor an RFC 3339 time`,
			event.FieldErrors{{Path: "start_from", Message: `"yesterday" is neither "now" nor an RFC 3339 time`}}},
		{"POST", "/api/v1/hooks", `{` + hk + `,"start_from":"2999-01-01T00:00:00Z"}`, `start_from: 2999-01-01T00:00:00Z is in the future: start from "now" or from a past time`,
			event.FieldErrors{{Path: "start_from", Message: `2999-01-01T00:00:00Z is in the future: start from "now" or from a past time`}}},
		{"POST", "/api/v1/hooks", `{` + hk + `,"batch_size":5,"retry_tims":3,"retry_times":"3","start_from":5}`,
			`invalid body: start_from: "now" or an RFC 3339 time, as a JSON string; batch_size: unknown field; retry_times: a number, not a JSON string; retry_tims: unknown field`,
			event.FieldErrors{{Path: "start_from", Message: `"now" or an RFC 3339 time, as a JSON string`}, {Path: "batch_size", Message: "unknown field"},
				{Path: "retry_times", Message: "a number, not a JSON string"}, {Path: "retry_tims", Message: "unknown field"}}},
		{"POST", "/api/v1/hooks", `{` + hk + `,"retry_times":"3"}`, "invalid body: retry_times: a number, not a JSON string",
			event.FieldErrors{{Path: "retry_times", Message: "a number, not a JSON string"}}},
		{"POST", "/api/v1/hooks", `{` + hk + `,"retry_period":true,"events":["in.*",5]}`,
			`invalid body: events[1]: a string, not a JSON number; retry_period: a duration is a string such as "15s" or "1m"`,
			event.FieldErrors{{Path: "events[1]", Message: "a string, not a JSON number"}, {Path: "retry_period", Message: `a duration is a string such as "15s" or "1m"`}}},
		{"POST", "/api/v1/hooks", `{"name":"crm","events":["in.gen.*"],"http":{"url":"https://crm.example.com/hook","timeout":"soon","headers":{"X-A":1}}}`,
			"invalid hook", event.FieldErrors{{Path: `http.headers["X-A"]`, Message: "a string, not a JSON number"}, {Path: "http.timeout", Message: `"soon" is not a duration (write e.g. 500ms, 15s or 1m)`}}},
		{"POST", "/api/v1/projects", `{"name":"x","id":-1}`, "invalid body: id: a whole number from 0 to 4294967295, not -1",
			event.FieldErrors{{Path: "id", Message: "a whole number from 0 to 4294967295, not -1"}}},
		{"POST", "/api/v1/projects", `{"name":"x","settings":{"identity_fields":{"lead.phone":5}}}`, `invalid body: settings.identity_fields["lead.phone"]: a string, not a JSON number`,
			event.FieldErrors{{Path: `settings.identity_fields["lead.phone"]`, Message: "a string, not a JSON number"}}},
	} {
		status, b, _ := f.call(t, c.method, c.path, c.body, "Bearer "+adminToken)
		var e errorBody
		if err := json.Unmarshal(b, &e); err != nil || status != 400 || e.Message != c.message || !reflect.DeepEqual(e.Errors, c.errors) {
			t.Errorf("%s %s %.60s: %d %s\nwant 400 %q %+v", c.method, c.path, c.body, status, b, c.message, c.errors)
		}
	}
	var projects ProjectList
	f.api(t, "GET", "/api/v1/projects", "", 200, &projects)
	if len(projects.Projects) != 1 || projects.Projects[0].Name != "default" || projects.Projects[0].Settings.AppID == "a" {
		t.Fatalf("a refused body changed the projects: %+v", projects.Projects)
	}
	var tokens TokenList
	if f.api(t, "GET", "/api/v1/projects/0/tokens", "", 200, &tokens); len(tokens.Tokens) != 0 {
		t.Fatalf("a refused body made a token: %+v", tokens.Tokens)
	}
	var hooks HookList
	if f.api(t, "GET", "/api/v1/hooks", "", 200, &hooks); len(hooks.Hooks) != 0 {
		t.Fatalf("a refused body made a hook: %+v", hooks.Hooks)
	}
	// Activation from a time to come is refused too, and leaves the hook
	// stopped.
	var h hook.Hook
	f.api(t, "POST", "/api/v1/hooks", `{`+hk+`,"active":false}`, 201, &h)
	var e errorBody
	f.api(t, "POST", "/api/v1/hooks/"+h.ID+"/activate", `{"from":"2999-01-01T00:00:00Z"}`, 400, &e)
	if len(e.Errors) != 1 || e.Errors[0].Path != "from" || !strings.Contains(e.Errors[0].Message, "is in the future") {
		t.Fatalf("activate from the future: %+v", e)
	}
	if f.api(t, "GET", "/api/v1/hooks/"+h.ID, "", 200, &h); h.Active {
		t.Fatal("a refused activation started the hook")
	}
}

// A project whose hooks are scoped to it cannot be deleted: they would
// stay active and deliver the events of whatever project gets its id
// next. Once they are gone, it can.
func TestProjectWithHooksIsNotDeleted(t *testing.T) {
	f := newHookFixture(t)
	f.api(t, "POST", "/api/v1/projects", `{"id":6000,"name":"tenant-a"}`, 201, nil)
	var h hook.Hook
	f.api(t, "POST", "/api/v1/hooks", `{"name":"a","events":["in.*"],"project_id":6000,"http":{"url":"https://a.example.com/hook"}}`, 201, &h)
	var e errorBody
	f.api(t, "DELETE", "/api/v1/projects/6000", "", 409, &e)
	want := "project 6000 has 1 hook(s) (" + h.ID + "): delete them, or give them another project, first"
	if e.Message != want || len(e.Errors) != 1 || e.Errors[0].Path != "id" || e.Errors[0].Message != want {
		t.Fatalf("delete with a hook: %+v", e)
	}
	f.api(t, "GET", "/api/v1/projects/6000", "", 200, nil)
	f.api(t, "DELETE", "/api/v1/hooks/"+h.ID, "", 204, nil)
	f.api(t, "DELETE", "/api/v1/projects/6000", "", 204, nil)
	f.api(t, "GET", "/api/v1/projects/6000", "", 404, nil)
}

// PATCH of an event type changes only the fields it names.
func TestEventTypePatchLeavesAbsentFields(t *testing.T) {
	f := newFixture(t)
	f.api(t, "POST", "/api/v1/projects/0/event-types", `{"slug":"buy","kind":"revenue","name":"Purchase","description":"a paid order"}`, 201, nil)
	var et project.EventType
	f.api(t, "PATCH", "/api/v1/projects/0/event-types/buy", `{"kind":"action"}`, 200, &et)
	if et.Slug != "buy" || et.Kind != "action" || et.Name != "Purchase" || et.Description != "a paid order" {
		t.Fatalf("after kind: %+v", et)
	}
	f.api(t, "PATCH", "/api/v1/projects/0/event-types/buy", `{"name":"","slug":"buy"}`, 200, &et)
	if et.Kind != "action" || et.Name != "" || et.Description != "a paid order" {
		t.Fatalf("after name: %+v", et)
	}
	f.api(t, "GET", "/api/v1/projects/0/event-types/buy", "", 200, &et)
	if et.Kind != "action" || et.Name != "" || et.Description != "a paid order" {
		t.Fatalf("stored: %+v", et)
	}
	var e errorBody
	f.api(t, "PATCH", "/api/v1/projects/0/event-types/buy", `{"slug":"sell"}`, 400, &e)
	if len(e.Errors) != 1 || e.Errors[0].Path != "slug" {
		t.Fatalf("slug change: %+v", e)
	}
	f.api(t, "PATCH", "/api/v1/projects/0/event-types/nope", `{"kind":"action"}`, 404, nil)
	f.api(t, "PATCH", "/api/v1/projects/0/event-types/buy", `{"kind":"gift"}`, 400, &e)
	if len(e.Errors) != 1 || e.Errors[0].Path != "kind" {
		t.Fatalf("bad kind: %+v", e)
	}
}

// A schema's refusals name their field: a bad type name is at type, a
// different document for a registered version a 409 at schema.
func TestSchemaRefusalsNameTheirField(t *testing.T) {
	f := newFixture(t)
	var e errorBody
	f.api(t, "POST", "/api/v1/projects/0/schemas", `{"type":"Bad-Type","schema":{"type":"object"}}`, 400, &e)
	want := `"Bad-Type" must be a lower-case name and a version, like order-shipped-v1`
	if e.Message != "invalid: type: "+want || len(e.Errors) != 1 || e.Errors[0] != (event.FieldError{Path: "type", Message: want}) {
		t.Fatalf("bad type: %+v", e)
	}
	f.api(t, "POST", "/api/v1/projects/0/schemas", `{"type":"order-shipped-v1","schema":{"type":"object"}}`, 201, nil)
	f.api(t, "POST", "/api/v1/projects/0/schemas", `{"type":"order-shipped-v1","schema":{"type":"object"}}`, 200, nil)
	f.api(t, "POST", "/api/v1/projects/0/schemas", `{"type":"order-shipped-v1","schema":{"type":"array"}}`, 409, &e)
	want = "order-shipped-v1 is already registered with a different schema; versions are immutable: register the next version instead"
	if e.Message != "schema: "+want || len(e.Errors) != 1 || e.Errors[0] != (event.FieldError{Path: "schema", Message: want}) {
		t.Fatalf("different document: %+v", e)
	}
	f.api(t, "POST", "/api/v1/projects/0/schemas", `{"type":"order-shipped-v1","schema":{"type":"nope"}}`, 400, &e)
	if len(e.Errors) != 1 || e.Errors[0].Path != "schema" || !strings.Contains(e.Errors[0].Message, "does not compile") {
		t.Fatalf("not compiling: %+v", e)
	}
}

// A read that the server cuts short because it is stopping (its base
// context, which ends the long polls) answers 503 with a JSON message and
// Retry-After: it was an empty 200, which a follower read as a broken
// answer. (A long poll cut short while waiting answers the empty page it
// has.)
func TestReadCutShortByAStoppingServer(t *testing.T) {
	f := newFixture(t)
	base, stop := context.WithCancel(context.Background())
	stop()
	srv := httptest.NewUnstartedServer(f.srv.Config.Handler)
	srv.Config.BaseContext = func(net.Listener) context.Context { return base }
	srv.Start()
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/events?wait=5s", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || string(b) != `{"message":"the server is stopping: try again once it is back"}`+"\n" {
		t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
}
