package ingest

import (
	"context"
	"testing"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

// storedData is the data of every stored event, in order.
func storedData(t *testing.T, l eventlog.Log) []string {
	t.Helper()
	recs, err := l.Read(context.Background(), eventlog.Query{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		e, err := event.Decode(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(e.Data))
	}
	return out
}

// A POST body said to be JSON is a JSON object: an empty or blank one is
// a 400 at body, as track and commerce answer it (it was stored as {}).
// Other empty bodies still have no fields, and a GET's body is not read.
func TestWebhookEmptyJSONBody(t *testing.T) {
	jsonCT := map[string]string{"Content-Type": "application/json"}
	for _, c := range []struct {
		name, method, target string
		header               map[string]string
		body                 string
		status               int
		answer               string // the refusal; "" for stored
		data                 string // stored
	}{
		{"empty", "POST", "/calltrack/call/0", jsonCT, "", 400,
			`{"message":"body: invalid JSON at byte 0: unexpected end of JSON input","errors":[{"path":"body","message":"invalid JSON at byte 0: unexpected end of JSON input"}]}`, ""},
		{"blank", "POST", "/calltrack/call/0", map[string]string{"Content-Type": "application/vnd.crm+json; charset=utf-8"}, " \r\n\t", 400,
			`{"message":"body: invalid JSON at byte 4: unexpected end of JSON input","errors":[{"path":"body","message":"invalid JSON at byte 4: unexpected end of JSON input"}]}`, ""},
		{"empty with the query", "POST", "/calltrack?name=call&projectId=0", jsonCT, "", 400,
			`{"message":"body: invalid JSON at byte 0: unexpected end of JSON input","errors":[{"path":"body","message":"invalid JSON at byte 0: unexpected end of JSON input"}]}`, ""},
		{"no content type", "POST", "/calltrack/call/0?a=1", nil, "", 200, "", `{"a":"1"}`},
		{"form", "POST", "/calltrack/call/0?a=1", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, " \n", 200, "", `{"a":"1"}`},
		{"GET with a JSON content type", "GET", "/calltrack/call/0?a=1", jsonCT, "", 200, "", `{"a":"1"}`},
		{"an object", "POST", "/calltrack/call/0", jsonCT, " {} ", 200, "", `{}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, l := goldenServer(t, webhookClock)
			a := send(t, srv, c.method, c.target, c.body, c.header)
			stored := storedData(t, l)
			if c.answer != "" {
				if a.Status != c.status || a.Raw != c.answer+"\n" || len(stored) != 0 {
					t.Fatalf("status %d %s(stored %q)\nwant %d %s", a.Status, a.Raw, stored, c.status, c.answer)
				}
				return
			}
			if a.Status != c.status || len(stored) != 1 || stored[0] != c.data {
				t.Fatalf("status %d %s, stored %q; want %d, %s", a.Status, a.Raw, stored, c.status, c.data)
			}
			if want := `{"key":"in.gen.calltrack.call","id":"` + a.Body["id"].(string) + `"}` + "\n"; a.Raw != want {
				t.Fatalf("answer %s, want %s", a.Raw, want)
			}
		})
	}
}
