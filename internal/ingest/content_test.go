package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/eventlog"
)

// Kept raw requests never carry a credential: not the ?token= of a
// webhook, nor the Authorization or X-API-Key headers of any dialect.
// Neither the contents nor any byte of events.db and its WAL holds one.
func TestKeptContentHoldsNoCredential(t *testing.T) {
	dir := t.TempDir()
	srv, l := goldenServerIn(t, s2sClock, dir)
	srv.cfg.KeepContent = func(uint32) bool { return true }
	const basicWebhook = "d2ViaG9vay10b2tlbjo=" // webhook-token:
	for _, c := range []struct {
		method, target, body string
		header               map[string]string
		content              string // the raw request kept
	}{
		{"GET", "/calltrack/call/10?phone=79990000000&token=webhook-token&utm=x", "", nil, "phone=79990000000&utm=x"},
		{"GET", "/calltrack/call/10?to%6Ben=webhook-token&a=%D9%82", "", nil, "a=%D9%82"},
		{"GET", "/calltrack/call/10?a=1", "", map[string]string{"Authorization": "Basic " + basicWebhook}, "a=1"},
		{"POST", "/crm/lead/10?token=webhook-token", "name=Ann", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "name=Ann"},
		{"POST", "/crm/lead/10", `{"n":1}`, map[string]string{"Content-Type": "application/json", "Authorization": "Bearer webhook-token"}, `{"n":1}`},
		{"POST", "/", `{"customUserId":"u","messages":[{"type":"action","id":"m-1","time":1680000000000,"name":"slug1"}]}`,
			map[string]string{"X-Application-Id": "app-golden", "X-API-Key": "s2s-key", "Content-Type": "application/json"},
			`{"type":"action","id":"m-1","time":1680000000000,"name":"slug1"}`},
		{"POST", "/v1/events", `{"name":"Sign up","anonymousId":"a"}`, map[string]string{"Authorization": "Bearer shop-token", "Content-Type": "application/json"},
			`{"name":"Sign up","anonymousId":"a"}`},
	} {
		req := httptest.NewRequest(c.method, c.target, strings.NewReader(c.body))
		for k, v := range c.header {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("%s %s: %d %s", c.method, c.target, rec.Code, rec.Body)
		}
		recs, err := l.Read(context.Background(), eventlog.Query{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		last := recs[len(recs)-1]
		got, err := l.Contents(context.Background(), []int64{last.ContentID})
		if err != nil {
			t.Fatal(err)
		}
		if string(got[last.ContentID].Body) != c.content {
			t.Fatalf("%s %s: content %q, want %q", c.method, c.target, got[last.ContentID].Body, c.content)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "events.db*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, secret := range []string{"webhook-token", basicWebhook, "s2s-key", "shop-token"} {
			if bytes.Contains(b, []byte(secret)) {
				t.Fatalf("%s holds the credential %q", f, secret)
			}
		}
	}
}

// A project without token auth keeps ?token= as data, unless it is a live
// token (of that project or another): a credential never becomes event
// data, so never reaches a hook or an export.
func TestWebhookWithoutTokenAuthDropsALiveToken(t *testing.T) {
	srv, l := goldenServer(t, s2sClock)
	for _, c := range []struct{ target, data string }{
		{"/calltrack/call/7?token=abc123&a=1", `{"a":"1"}`},
		{"/calltrack/call/7?a=1&token=other-project-token", `{"a":"1"}`},
		{"/calltrack/call/7?token=push-token-of-the-caller&a=1", `{"token":"push-token-of-the-caller","a":"1"}`},
		{"/calltrack/call/7?token=revoked-token", `{"token":"revoked-token"}`},
	} {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", c.target, nil))
		if rec.Code != 200 {
			t.Fatalf("%s: %d %s", c.target, rec.Code, rec.Body)
		}
		recs, err := l.Read(context.Background(), eventlog.Query{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Data json.RawMessage }
		if err := json.Unmarshal(recs[len(recs)-1].Body, &e); err != nil || string(e.Data) != c.data {
			t.Errorf("%s: data %s (%v), want %s", c.target, e.Data, err, c.data)
		}
	}
}
