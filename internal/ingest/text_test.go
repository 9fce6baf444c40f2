package ingest

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicehq/sluice/internal/eventlog"
)

// A hit of the track seed with one field to fill in.
const trackHitTemplate = `{"hitId":"%s","sentAt":"2019-02-21T10:56:10.723Z","event":{"name":"%s"}}`

func trackHit(hitID, name string) string {
	return strings.Replace(strings.Replace(trackHitTemplate, "%s", hitID, 1), "%s", name, 1)
}

type refusal struct {
	Path    string `json:"path"`
	Message string `json:"message"`
	Index   *int   `json:"index"`
}

// Strings that are not UTF-8 text (invalid bytes, escaped half surrogate
// pairs) are refused at their path by every dialect, and nothing of the
// request is stored. Items of a batch fail alone.
func TestInvalidTextRefusedOnEveryDialect(t *testing.T) {
	const hit1 = "58d1a6f0-35c7-11e9-8f27-8d1d7d4690e7"
	const hit2 = "4c59d330-35c7-11e9-8f27-8d1d7d4690e7"
	type tc struct {
		name          string
		method, path  string
		header        map[string]string
		body          string
		status        int
		code          string
		paths         []string // of errors, or of the invalid batch item
		index         *int     // s2s: the message's index
		item          int      // batch: the failing item
		storedInBatch int
	}
	one := 1
	zero := 0
	webhookJSON := map[string]string{"Content-Type": "application/json"}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	track := map[string]string{"Authorization": "Basic YWJjMTIzOg==", "Content-Type": "application/json"}
	s2s := map[string]string{"X-Application-Id": "app-golden", "X-API-Key": "s2s-key", "Content-Type": "application/json"}
	commerce := map[string]string{"Authorization": "Bearer shop-token", "Content-Type": "application/json"}
	for _, c := range []tc{
		{name: "webhook json value", method: "POST", path: "/crm/lead/7", header: webhookJSON, body: "{\"phone\":\"12\",\"note\":{\"text\":\"caf\xe9\"}}", status: 400, paths: []string{"body.note.text"}},
		{name: "webhook json key", method: "POST", path: "/crm/lead/7", header: webhookJSON, body: "{\"n\xf6te\":1}", status: 400, paths: []string{`body["n�te"]`}},
		{name: "webhook json surrogate escape", method: "POST", path: "/crm/lead/7", header: webhookJSON, body: `{"a":"\udc00"}`, status: 400, paths: []string{"body.a"}},
		{name: "webhook form value", method: "POST", path: "/crm/lead/7", header: form, body: "city=%C0%AF&x=1", status: 400, paths: []string{"body.city"}},
		{name: "webhook query value", method: "GET", path: "/crm/lead/7?city=Mosc%F6w", status: 400, paths: []string{"query.city"}},
		{name: "webhook query key", method: "GET", path: "/crm/lead/7?ci%FFty=1", status: 400, paths: []string{`query["ci�ty"]`}},
		{name: "track hit", method: "POST", path: "/track", header: track, body: trackHit(hit1, "Ord\xe9r"), status: 400, paths: []string{"event.name"}},
		{name: "track batch item", method: "POST", path: "/track/batch", header: track,
			body:   `{"batch":[` + trackHit(hit1, "ok") + `,` + trackHit(hit2, "caf\xe9") + `]}`,
			status: 200, paths: []string{"event.name"}, item: 1, storedInBatch: 1},
		{name: "s2s attribute", method: "POST", path: "/", header: s2s,
			body:   "{\"customUserId\":\"u\",\"messages\":[{\"type\":\"action\",\"id\":\"m\",\"time\":1680000000000,\"name\":\"slug1\",\"attributes\":{\"k\":\"\xff\"}}]}",
			status: 400, code: "BAD_REQUEST", paths: []string{"messages[0].attributes.k"}, index: &zero},
		{name: "s2s user id", method: "POST", path: "/", header: s2s,
			body:   "{\"customUserId\":\"r.akbar\xee\",\"messages\":[{\"type\":\"action\",\"id\":\"m\",\"time\":1680000000000,\"name\":\"slug1\"},{\"type\":\"action\",\"id\":\"m2\",\"time\":1680000000000,\"name\":\"slug1\"}]}",
			status: 400, code: "BAD_REQUEST", paths: []string{"customUserId"}},
		{name: "s2s second message", method: "POST", path: "/", header: s2s,
			body:   `{"customUserId":"u","messages":[{"type":"action","id":"m","time":1680000000000,"name":"slug1"},{"type":"action","id":"m2\ud800","time":1680000000000,"name":"slug1"}]}`,
			status: 400, code: "BAD_REQUEST", paths: []string{"messages[1].id"}, index: &one},
		{name: "commerce event", method: "POST", path: "/v1/events", header: commerce,
			body: "{\"name\":\"Sign up\",\"anonymousId\":\"a\",\"properties\":{\"plan\":\"pr\xf6\"}}", status: 400, paths: []string{"properties.plan"}},
		{name: "commerce batch item", method: "POST", path: "/v1/events", header: commerce,
			body:   "{\"batch\":[{\"name\":\"A\",\"anonymousId\":\"a\"},{\"name\":\"B\xff\",\"anonymousId\":\"a\"}]}",
			status: 200, paths: []string{"name"}, item: 1, storedInBatch: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, l := goldenServer(t, s2sClock)
			if strings.HasPrefix(c.path, "/track") {
				srv, l = goldenServer(t, trackClock)
			}
			req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.status, rec.Body)
			}
			if !utf8.Valid(rec.Body.Bytes()) {
				t.Fatalf("the answer is not UTF-8: %q", rec.Body)
			}
			var ans struct {
				Code    string    `json:"code"`
				Message string    `json:"message"`
				Errors  []refusal `json:"errors"`
				Results []struct {
					Status string    `json:"status"`
					Errors []refusal `json:"errors"`
				} `json:"results"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
				t.Fatal(err)
			}
			errs := ans.Errors
			if c.storedInBatch > 0 {
				if ans.Results[c.item].Status != "invalid" || ans.Results[1-c.item].Status != "accepted" {
					t.Fatalf("batch results %+v", ans.Results)
				}
				errs = ans.Results[c.item].Errors
			}
			var paths []string
			for _, e := range errs {
				paths = append(paths, e.Path)
				if !strings.Contains(e.Message, "not valid UTF-8 text") || !strings.Contains(e.Message, "send UTF-8") {
					t.Errorf("message %q does not say what is wrong", e.Message)
				}
			}
			if !reflect.DeepEqual(paths, c.paths) {
				t.Fatalf("paths %q, want %q: %s", paths, c.paths, rec.Body)
			}
			if ans.Code != c.code {
				t.Fatalf("code %q, want %q", ans.Code, c.code)
			}
			if c.index != nil && (errs[0].Index == nil || *errs[0].Index != *c.index) {
				t.Fatalf("index %v, want %d", errs[0].Index, *c.index)
			}
			recs, err := l.Read(context.Background(), eventlog.Query{})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != c.storedInBatch {
				t.Fatalf("%d events stored, want %d", len(recs), c.storedInBatch)
			}
			for _, r := range recs {
				if !utf8.Valid(r.Body) || !json.Valid(r.Body) {
					t.Fatalf("stored event is not UTF-8 JSON: %q", r.Body)
				}
			}
		})
	}
}

// Valid text in every script, and escaped surrogate pairs, pass.
func TestValidTextAccepted(t *testing.T) {
	srv, l := goldenServer(t, s2sClock)
	for _, body := range []string{`{"city":"قم","name2":"Москва","e":"😀","esc":"\ud83d\ude00"}`} {
		req := httptest.NewRequest("POST", "/crm/lead/7?q=%D9%82%D9%85", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	recs, _ := l.Read(context.Background(), eventlog.Query{})
	if len(recs) != 1 || !strings.Contains(string(recs[0].Body), `"q":"قم"`) || !strings.Contains(string(recs[0].Body), `"esc":"\ud83d\ude00"`) {
		t.Fatalf("stored %d: %v", len(recs), recs)
	}
}
