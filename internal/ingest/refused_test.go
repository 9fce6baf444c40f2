package ingest

import (
	"context"
	"encoding/base64"
	"strings"
	"sync"
	"testing"
)

// Every refusal is told to Config.Refused once, after the answer, with
// the dialect, the status and field paths the sender got, its address, and
// the project when the request was authenticated; the path never carries
// the query (a token may travel there).
func TestRefusedIsTold(t *testing.T) {
	var mu sync.Mutex
	var got []Refusal
	f := newFixture(t, Config{Refused: func(r Refusal) {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
	}}, false)

	if _, _, err := f.projects.CreateToken(context.Background(), 99, "crm", "abc123"); err != nil {
		t.Fatal(err)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("abc123:"))
	resp, body := f.do(t, "POST", "/track?token=abc123", strings.NewReader(`{"hitId":"4c59d330-35c7-11e9-8f27-8d1d7d4690e7","sentAt":"2019-02-21T10:56:10.723Z","event":{"name":"Completed Transaction","value":"many"}}`),
		map[string]string{"Content-Type": "application/json", "Authorization": basic})
	resp2, _ := f.do(t, "POST", "/svc/name/12345", strings.NewReader(`{"a":`), map[string]string{"Content-Type": "application/json"})
	resp3, _ := f.do(t, "GET", "/svc/name/99?ok=1", nil, nil)
	if resp3.StatusCode != 200 {
		t.Fatalf("accepted request answered %d", resp3.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("told of %d refusals, want 2: %+v", len(got), got)
	}
	tr := got[0]
	if tr.Dialect != "track" || tr.Error.Status != resp.StatusCode || tr.Error.Status != 400 || tr.Method != "POST" || tr.Path != "/track" || tr.ClientIP != "127.0.0.1" {
		t.Errorf("track refusal %+v (answered %d %s)", tr, resp.StatusCode, body)
	}
	if tr.Project == nil || tr.Project.ID != 99 {
		t.Errorf("track refusal project %v, want 99", tr.Project)
	}
	if tr.Time.IsZero() || tr.Error.Message == "" || len(tr.Error.Errors) == 0 || tr.Error.Errors[0].Path != "event.value" {
		t.Errorf("track refusal without time, message or the field path event.value: %+v", tr.Error)
	}
	w := got[1]
	if w.Dialect != "webhook" || w.Error.Status != resp2.StatusCode || w.Error.Status < 400 || w.Path != "/svc/name/12345" || w.Project != nil {
		t.Errorf("webhook refusal %+v (answered %d)", w, resp2.StatusCode)
	}
}
