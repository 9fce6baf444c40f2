package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/project"
)

type answer struct {
	Status int
	Body   map[string]any
	Raw    string
}

func send(t *testing.T, srv *Server, method, target, body string, header map[string]string) answer {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	a := answer{Status: rec.Code, Raw: rec.Body.String()}
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(rec.Body.Bytes(), &a.Body); err != nil {
			t.Fatalf("answer is not JSON: %q", rec.Body)
		}
	}
	return a
}

func storedCount(t *testing.T, l eventlog.Log) int {
	t.Helper()
	recs, err := l.Read(context.Background(), eventlog.Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

func errPath(a answer) string {
	errs, _ := a.Body["errors"].([]any)
	if len(errs) != 1 {
		return ""
	}
	return errs[0].(map[string]any)["path"].(string)
}

// A webhook retried with the same Idempotency-Key is stored once and
// every repeat names the original; the key reused for other content is a
// 422 that stores nothing; malformed keys are refused at the header.
func TestIdempotencyKeyWebhook(t *testing.T) {
	srv, l := goldenServer(t, s2sClock)
	json := map[string]string{"Content-Type": "application/json", "Idempotency-Key": `"8e03978e-40d5-43e8-bc93-6894a57f9324"`}
	first := send(t, srv, "POST", "/crm/lead/7", `{"phone":"79990000000"}`, json)
	if first.Status != 200 || first.Body["duplicate"] != nil || first.Body["key"] != "in.gen.crm.lead" {
		t.Fatalf("first: %d %s", first.Status, first.Raw)
	}
	// The same key, quoted as the draft writes it or bare as most senders do.
	for _, k := range []string{`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, `8e03978e-40d5-43e8-bc93-6894a57f9324`} {
		again := send(t, srv, "POST", "/crm/lead/7", `{"phone":"79990000000"}`, map[string]string{"Content-Type": "application/json", "Idempotency-Key": k})
		if again.Status != 200 || again.Body["id"] != first.Body["id"] || again.Body["duplicate"] != true || again.Body["key"] != "in.gen.crm.lead" {
			t.Fatalf("repeat with %s: %d %s (first %s)", k, again.Status, again.Raw, first.Raw)
		}
	}
	// The same key for something else.
	other := send(t, srv, "POST", "/crm/lead/7", `{"phone":"79991111111"}`, json)
	if other.Status != 422 || other.Body["code"] != "IDEMPOTENCY_KEY_REUSED" || errPath(other) != "Idempotency-Key" {
		t.Fatalf("reuse: %d %s", other.Status, other.Raw)
	}
	if other := send(t, srv, "POST", "/crm/deal/7", `{"phone":"79990000000"}`, json); other.Status != 422 {
		t.Fatalf("reuse for another key: %d %s", other.Status, other.Raw)
	}
	// Another key, or none, is another request.
	if a := send(t, srv, "POST", "/crm/lead/7", `{"phone":"79990000000"}`, map[string]string{"Content-Type": "application/json", "Idempotency-Key": "k-2"}); a.Status != 200 || a.Body["duplicate"] != nil || a.Body["id"] == first.Body["id"] {
		t.Fatalf("new key: %s", a.Raw)
	}
	if a := send(t, srv, "GET", "/crm/lead/7?phone=79990000000", "", nil); a.Status != 200 || a.Body["duplicate"] != nil {
		t.Fatalf("no key: %s", a.Raw)
	}
	if n := storedCount(t, l); n != 3 {
		t.Fatalf("%d stored, want 3", n)
	}
	// A pixel repeated under its key is still a pixel.
	px := map[string]string{"Idempotency-Key": "px-1"}
	for i := 0; i < 2; i++ {
		if a := send(t, srv, "GET", "/site/view/7.gif?page=1", "", px); a.Status != 200 || !strings.HasPrefix(a.Raw, "GIF89a") {
			t.Fatalf("pixel %d: %d", i, a.Status)
		}
	}
	if n := storedCount(t, l); n != 4 {
		t.Fatalf("%d stored after two pixels under one key, want 4", n)
	}
	for _, bad := range []string{"", `""`, "clé", strings.Repeat("k", 256), "a\x01b", `"a"b"`} {
		a := send(t, srv, "POST", "/crm/lead/7", `{"x":1}`, map[string]string{"Content-Type": "application/json", "Idempotency-Key": bad})
		if a.Status != 400 || errPath(a) != "Idempotency-Key" {
			t.Fatalf("key %q: %d %s", bad, a.Status, a.Raw)
		}
	}
	if n := storedCount(t, l); n != 4 {
		t.Fatalf("%d stored, want 4", n)
	}
}

// Concurrent repeats of one request store one event, and every answer
// names it.
func TestIdempotencyKeyConcurrentRepeats(t *testing.T) {
	srv, l := goldenServer(t, s2sClock)
	var wg sync.WaitGroup
	ids := make([]any, 24)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := send(t, srv, "POST", "/crm/lead/7", `{"phone":"1"}`, map[string]string{"Content-Type": "application/json", "Idempotency-Key": "same"})
			if a.Status == 200 {
				ids[i] = a.Body["id"]
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id == nil || id != ids[0] {
			t.Fatalf("answers name %v", ids)
		}
	}
	if n := storedCount(t, l); n != 1 {
		t.Fatalf("%d stored", n)
	}
}

// Commerce events without messageId are deduplicated by the key, one per
// batch position; an item that differs from the one first sent is refused
// alone; a request whose every item differs is a 422.
func TestIdempotencyKeyCommerceBatch(t *testing.T) {
	srv, l := goldenServer(t, commerceClock)
	h := map[string]string{"Authorization": "Bearer shop-token", "Content-Type": "application/json", "Idempotency-Key": "batch-1"}
	batch := `{"batch":[{"name":"A","anonymousId":"a"},{"name":"bad","properties":{"eventType":"nope"}},{"name":"B","anonymousId":"a"}]}`
	first := send(t, srv, "POST", "/v1/events", batch, h)
	if first.Status != 200 || first.Body["accepted"] != 2.0 || first.Body["invalid"] != 1.0 {
		t.Fatalf("first: %s", first.Raw)
	}
	res := func(a answer, i int) map[string]any { return a.Body["results"].([]any)[i].(map[string]any) }
	again := send(t, srv, "POST", "/v1/events", batch, h)
	if again.Status != 200 || again.Body["duplicates"] != 2.0 || res(again, 0)["id"] != res(first, 0)["id"] || res(again, 2)["id"] != res(first, 2)["id"] {
		t.Fatalf("repeat: %s", again.Raw)
	}
	changed := `{"batch":[{"name":"A","anonymousId":"a"},{"name":"bad","properties":{"eventType":"nope"}},{"name":"C","anonymousId":"a"}]}`
	mixed := send(t, srv, "POST", "/v1/events", changed, h)
	r2 := res(mixed, 2)
	r2e := r2["errors"].([]any)[0].(map[string]any)
	if mixed.Status != 200 || res(mixed, 0)["status"] != "duplicate" || r2["status"] != "invalid" || mixed.Body["code"] != nil ||
		r2e["path"] != "Idempotency-Key" || r2e["message"] != "was first used for other content at this position of the batch; this item was not stored (use a new key for a new request)" {
		t.Fatalf("changed item: %s", mixed.Raw)
	}
	// A fourth item, at a position the key never had, is stored beside the
	// refusal of the changed one.
	grown := `{"batch":[{"name":"A","anonymousId":"a"},{"name":"bad","properties":{"eventType":"nope"}},{"name":"C","anonymousId":"a"},{"name":"D","anonymousId":"a"}]}`
	if g := send(t, srv, "POST", "/v1/events", grown, h); g.Status != 200 || g.Body["accepted"] != 1.0 || g.Body["duplicates"] != 1.0 || g.Body["invalid"] != 2.0 ||
		res(g, 3)["status"] != "accepted" || res(g, 2)["status"] != "invalid" {
		t.Fatalf("grown batch: %s", g.Raw)
	}
	all := send(t, srv, "POST", "/v1/events", `{"batch":[{"name":"X","anonymousId":"a"}]}`, h)
	if all.Status != 422 || all.Body["code"] != "IDEMPOTENCY_KEY_REUSED" || all.Body["accepted"] != 0.0 ||
		all.Body["message"] != "Idempotency-Key was first used for a request with other content; nothing from this request was stored (use a new key for a new request)" {
		t.Fatalf("every item changed: %d %s", all.Status, all.Raw)
	}
	// Single events: the same promise.
	one := map[string]string{"Authorization": "Bearer shop-token", "Content-Type": "application/json", "Idempotency-Key": "one-1"}
	a := send(t, srv, "POST", "/v1/events", `{"name":"Signup","anonymousId":"a"}`, one)
	b := send(t, srv, "POST", "/v1/events", `{"name":"Signup","anonymousId":"a"}`, one)
	if a.Status != 200 || b.Status != 200 || b.Body["duplicate"] != true || b.Body["id"] != a.Body["id"] {
		t.Fatalf("single: %s / %s", a.Raw, b.Raw)
	}
	if c := send(t, srv, "POST", "/v1/events", `{"name":"Signup","anonymousId":"b"}`, one); c.Status != 422 || c.Body["code"] != "IDEMPOTENCY_KEY_REUSED" {
		t.Fatalf("single reuse: %s", c.Raw)
	}
	// messageId wins over the key: the same message under two keys is one.
	m1 := send(t, srv, "POST", "/v1/events", `{"name":"M","anonymousId":"a","messageId":"m-1"}`, map[string]string{"Authorization": "Bearer shop-token", "Content-Type": "application/json", "Idempotency-Key": "k-a"})
	m2 := send(t, srv, "POST", "/v1/events", `{"name":"M","anonymousId":"a","messageId":"m-1"}`, map[string]string{"Authorization": "Bearer shop-token", "Content-Type": "application/json", "Idempotency-Key": "k-b"})
	if m2.Body["duplicate"] != true || m2.Body["id"] != m1.Body["id"] {
		t.Fatalf("messageId: %s / %s", m1.Raw, m2.Raw)
	}
	if n := storedCount(t, l); n != 5 {
		t.Fatalf("%d stored, want 5", n)
	}
}

// Every dialect refuses a malformed key the same way.
func TestIdempotencyKeyMalformedOnEveryDialect(t *testing.T) {
	srv, l := goldenServer(t, s2sClock)
	bad := "cl\u00e9"
	for _, c := range []struct {
		path, body string
		header     map[string]string
	}{
		{"/crm/lead/7", `{"a":1}`, map[string]string{"Content-Type": "application/json"}},
		{"/track", trackHit("58d1a6f0-35c7-11e9-8f27-8d1d7d4690e7", "x"), map[string]string{"Authorization": "Basic YWJjMTIzOg==", "Content-Type": "application/json"}},
		{"/", `{"customUserId":"u","messages":[{"type":"action","id":"m-1","time":1680000000000,"name":"slug1"}]}`, map[string]string{"X-Application-Id": "app-golden", "X-API-Key": "s2s-key", "Content-Type": "application/json"}},
		{"/v1/events", `{"name":"A"}`, map[string]string{"Authorization": "Bearer shop-token", "Content-Type": "application/json"}},
	} {
		c.header["Idempotency-Key"] = bad
		if a := send(t, srv, "POST", c.path, c.body, c.header); a.Status != 400 || errPath(a) != "Idempotency-Key" {
			t.Fatalf("%s: %d %s", c.path, a.Status, a.Raw)
		}
	}
	if n := storedCount(t, l); n != 0 {
		t.Fatalf("%d stored", n)
	}
}

// A project's webhook_dedup_field makes a CRM's order id the dedup key of
// each event name: a repeat is answered as a duplicate; the same id under
// another event name, and events without the field, are stored.
func TestWebhookDedupField(t *testing.T) {
	srv, l := goldenServer(t, s2sClock)
	js := map[string]string{"Content-Type": "application/json"}
	first := send(t, srv, "POST", "/crm/order_paid/11", `{"order":{"id":"A-17","sum":10}}`, js)
	again := send(t, srv, "POST", "/crm/order_paid/11", `{"order":{"id":"A-17","sum":10}}`, js)
	if first.Status != 200 || again.Status != 200 || again.Body["duplicate"] != true || again.Body["id"] != first.Body["id"] {
		t.Fatalf("repeat: %s / %s", first.Raw, again.Raw)
	}
	for _, c := range []struct{ path, body string }{
		{"/crm/order_created/11", `{"order":{"id":"A-17"}}`}, // another event name
		{"/crm/order_paid/11", `{"order":{"id":17}}`},        // a number
		{"/crm/order_paid/11", `{"order":{"sum":1}}`},        // no id
		{"/crm/order_paid/11", `{"order":{"sum":1}}`},        // no id, again
		{"/crm/order_paid/11", `{"order":{"id":null}}`},
	} {
		if a := send(t, srv, "POST", c.path, c.body, js); a.Status != 200 || a.Body["duplicate"] != nil {
			t.Fatalf("%s %s: %s", c.path, c.body, a.Raw)
		}
	}
	// A number is compared by its value, however it is written.
	for _, body := range []string{`{"order":{"id":17}}`, `{"order":{"id":17.0}}`, `{"order":{"id":1.7e1}}`, `{"order":{"id":"17"}}`} {
		if a := send(t, srv, "POST", "/crm/order_paid/11", body, js); a.Body["duplicate"] != true {
			t.Fatalf("number repeat %s: %s", body, a.Raw)
		}
	}
	if a := send(t, srv, "POST", "/crm/order_paid/11", `{"order":{"id":17.5}}`, js); a.Status != 200 || a.Body["duplicate"] != nil {
		t.Fatalf("17.5: %s", a.Raw)
	}
	for _, body := range []string{`{"order":{"id":{"x":1}}}`, `{"order":{"id":""}}`, `{"order":{"id":true}}`} {
		if a := send(t, srv, "POST", "/crm/order_paid/11", body, js); a.Status != 400 || errPath(a) != "order.id" {
			t.Fatalf("%s: %d %s", body, a.Status, a.Raw)
		}
	}
	// A flat field, from the query string as from a form.
	q1 := send(t, srv, "GET", "/calltrack/call/12?order_id=99&a=1", "", nil)
	q2 := send(t, srv, "POST", "/calltrack/call/12", "order_id=99&a=1", map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if q2.Body["duplicate"] != true || q2.Body["id"] != q1.Body["id"] {
		t.Fatalf("flat: %s / %s", q1.Raw, q2.Raw)
	}
	if n := storedCount(t, l); n != 8 {
		t.Fatalf("%d stored, want 8", n)
	}
}

// webhook_create_projects: seed 001's first example on a fresh install
// creates project 99 on its first event; concurrent first events to one
// id create it once; other dialects never create projects.
func TestWebhookCreatesProjectsOnFirstEvent(t *testing.T) {
	f := newFixture(t, Config{}, false)
	created := 0
	var mu sync.Mutex
	webhookOf(f.srv).CreateProject = func(ctx context.Context, id uint32) (*project.Project, error) {
		p, err := f.projects.Create(ctx, &id, "webhook-"+strconv.Itoa(int(id)), project.Settings{})
		if errors.Is(err, project.ErrExists) {
			got, _ := f.projects.Get(id)
			return got, nil
		}
		mu.Lock()
		created++
		mu.Unlock()
		return &p, err
	}
	resp, body := f.do(t, "GET", "/calltrack/call/4242?param=myparamvalue", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"key":"in.gen.calltrack.call"`) {
		t.Fatalf("first event: %d %s", resp.StatusCode, body)
	}
	if p, ok := f.projects.Get(4242); !ok || p.Name != "webhook-4242" || p.Settings.AuthMode() != project.WebhookAuthNone {
		t.Fatalf("project %+v %v", p, ok)
	}
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, body := f.do(t, "POST", "/crm/lead/5000", strings.NewReader(`{"a":1}`), map[string]string{"Content-Type": "application/json"}); resp.StatusCode != 200 {
				t.Errorf("concurrent first events: %d %s", resp.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	if created != 2 {
		t.Fatalf("%d projects created, want 2", created)
	}
	if n := len(f.stored(t)); n != 17 {
		t.Fatalf("%d stored", n)
	}
	// An id that is not a number is still refused, and nothing is created.
	if resp, _ := f.do(t, "GET", "/calltrack/call/x1", nil, nil); resp.StatusCode != 400 {
		t.Fatalf("bad id: %d", resp.StatusCode)
	}
}
