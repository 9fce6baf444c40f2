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

// Routing values in a JSON body are JSON scalars: an array is refused as
// a number is (name ["a","b"] was stored as name a), and an array uid is
// malformed, so replaced. A repeated query or form key is an array of
// strings whose first value routes, as before.
func TestWebhookRoutingValuesInAJSONBody(t *testing.T) {
	jsonCT := map[string]string{"Content-Type": "application/json"}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	const uid = "1234567890123"
	for _, c := range []struct {
		name, method, target string
		header               map[string]string
		body                 string
		answer               string // a refusal; "" for stored
		// stored
		eventName, uid string // uid "" for a new one, not the one sent
		projectID      uint32
		data           string
	}{
		{name: "name array", method: "POST", target: "/calltrack", header: jsonCT, body: `{"name":["a","b"]}`,
			answer: `{"message":"invalid request","errors":[{"path":"name","message":"must be a string"}]}`},
		{name: "name number", method: "POST", target: "/calltrack", header: jsonCT, body: `{"name":5}`,
			answer: `{"message":"invalid request","errors":[{"path":"name","message":"must be a string"}]}`},
		{name: "projectId array of a string", method: "POST", target: "/calltrack/call", header: jsonCT, body: `{"projectId":["99"]}`,
			answer: `{"message":"invalid request","errors":[{"path":"projectId","message":"must be a non-negative integer below 4294967296"}]}`},
		{name: "projectId array of a number", method: "POST", target: "/calltrack", header: jsonCT, body: `{"name":"call","projectId":[99]}`,
			answer: `{"message":"invalid request","errors":[{"path":"projectId","message":"must be a non-negative integer below 4294967296"}]}`},
		{name: "uid array replaced", method: "POST", target: "/calltrack/call/99", header: jsonCT, body: `{"uid":["` + uid + `"]}`,
			eventName: "call", projectID: 99, data: `{"uid":["` + uid + `"]}`},
		{name: "JSON scalars", method: "POST", target: "/calltrack", header: jsonCT, body: `{"name":"call","projectId":99,"uid":` + uid + `}`,
			eventName: "call", uid: uid, projectID: 99, data: `{"name":"call","projectId":99,"uid":` + uid + `}`},
		{name: "repeated form keys", method: "POST", target: "/calltrack", header: form, body: `name=call&name=x&projectId=99&projectId=0&uid=` + uid + `&uid=9`,
			eventName: "call", uid: uid, projectID: 99, data: `{"name":["call","x"],"projectId":["99","0"],"uid":["` + uid + `","9"]}`},
		{name: "repeated query keys", method: "GET", target: "/calltrack?name=call&name=x&projectId=99&projectId=0&uid=" + uid + "&uid=9",
			eventName: "call", uid: uid, projectID: 99, data: `{"name":["call","x"],"projectId":["99","0"],"uid":["` + uid + `","9"]}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, l := goldenServer(t, webhookClock)
			a := send(t, srv, c.method, c.target, c.body, c.header)
			recs, err := l.Read(context.Background(), eventlog.Query{Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if c.answer != "" {
				if a.Status != 400 || a.Raw != c.answer+"\n" || len(recs) != 0 {
					t.Fatalf("status %d %s(%d stored)\nwant 400 %s", a.Status, a.Raw, len(recs), c.answer)
				}
				return
			}
			if a.Status != 200 || len(recs) != 1 {
				t.Fatalf("status %d %s, %d stored", a.Status, a.Raw, len(recs))
			}
			e, err := event.Decode(recs[0].Body)
			if err != nil {
				t.Fatal(err)
			}
			want := `{"key":"in.gen.calltrack.` + c.eventName + `","id":"` + recs[0].ID.String() + `"}` + "\n"
			if a.Raw != want || e.Name != c.eventName || e.ProjectID != c.projectID || string(e.Data) != c.data ||
				(c.uid != "" && e.UID != c.uid) || (c.uid == "" && (e.UID == uid || len(e.UID) < 10)) {
				t.Fatalf("answer %s, stored name %q project %d uid %q data %s", a.Raw, e.Name, e.ProjectID, e.UID, e.Data)
			}
		})
	}
}
