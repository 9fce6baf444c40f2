package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"image/gif"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
	"github.com/sluicehq/sluice/internal/project"
)

type fixture struct {
	log      *sqlite.Log
	projects *project.Store
	srv      *Server
	reg      *prometheus.Registry
	http     *httptest.Server
}

func newFixture(t *testing.T, cfg Config, tls bool) *fixture {
	t.Helper()
	dir := t.TempDir()
	gen, _ := event.NewGenerator(0, nil)
	l, err := sqlite.Open(sqlite.Config{Path: filepath.Join(dir, "events.db")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := project.Open(filepath.Join(dir, "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id := uint32(99)
	if _, err := ps.Create(ctx, &id, "calls", project.Settings{RedirectHosts: []string{"example.com"}}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	f := &fixture{log: l, projects: ps, reg: reg}
	f.srv = New(cfg, l, testDialects(ps, gen, nil), reg, nil)
	if tls {
		f.http = httptest.NewTLSServer(f.srv)
	} else {
		f.http = httptest.NewServer(f.srv)
	}
	t.Cleanup(func() {
		f.http.Close()
		l.Close()
		ps.Close()
	})
	return f
}

func (f *fixture) do(t *testing.T, method, path string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.http.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := *f.http.Client() // a copy: tests call do from several goroutines
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func (f *fixture) stored(t *testing.T) []*event.Event {
	t.Helper()
	recs, err := f.log.Read(context.Background(), eventlog.Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []*event.Event
	for _, r := range recs {
		e, err := event.Decode(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func TestWebhookStoresAndAnswers(t *testing.T) {
	f := newFixture(t, Config{}, false)
	resp, body := f.do(t, "POST", "/calltrack/call", strings.NewReader("param1=value1&param2=value26"),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "curl/7.60.0"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got struct {
		Key string `json:"key"`
		ID  string `json:"id"`
	}
	if err := json.Unmarshal(body, &got); err != nil || got.Key != "in.gen.calltrack.call" {
		t.Fatalf("response %s", body)
	}
	evs := f.stored(t)
	if len(evs) != 1 {
		t.Fatalf("%d stored", len(evs))
	}
	e := evs[0]
	if e.ID.String() != got.ID || e.TD.IP != "127.0.0.1" || e.TD.UA != "curl/7.60.0" || string(e.Data) != `{"param1":"value1","param2":"value26"}` {
		t.Fatalf("stored %+v", e)
	}
	if e.Time != e.ReceivedAt || e.Time == 0 || e.ID.Millis() < e.ReceivedAt {
		t.Fatalf("times: time %d receivedAt %d id ms %d", e.Time, e.ReceivedAt, e.ID.Millis())
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "uid" {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value != e.UID || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode ||
		cookie.MaxAge != 3*365*24*3600 || cookie.Secure || cookie.Path != "/" {
		t.Fatalf("cookie %+v (uid %s)", cookie, e.UID)
	}
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	if n := testutil.ToFloat64(f.srv.m.requests.WithLabelValues("webhook", "webhook", "200")); n != 1 {
		t.Fatalf("request counter %v", n)
	}
	if n := testutil.ToFloat64(f.srv.m.appended.WithLabelValues("webhook", "0", "stored")); n != 1 {
		t.Fatalf("events counter %v", n)
	}
}

func TestCookieSecureUnderTLS(t *testing.T) {
	f := newFixture(t, Config{}, true)
	resp, body := f.do(t, "GET", "/crm/lead", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if c := resp.Cookies(); len(c) != 1 || !c[0].Secure || c[0].SameSite != http.SameSiteNoneMode || !c[0].HttpOnly {
		t.Fatalf("cookies %+v", c)
	}
}

// On plain HTTP the uid cookie is SameSite=Lax: browsers drop
// SameSite=None without Secure.
func TestCookieLaxOnPlainHTTP(t *testing.T) {
	f := newFixture(t, Config{}, false)
	resp, _ := f.do(t, "GET", "/site/view/99.gif", nil, nil)
	c := resp.Cookies()
	if len(c) != 1 || c[0].Secure || c[0].SameSite != http.SameSiteLaxMode || !c[0].HttpOnly || c[0].MaxAge != 3*365*24*3600 {
		t.Fatalf("cookies %+v (%q)", c, resp.Header.Get("Set-Cookie"))
	}
}

func TestBodyLimit(t *testing.T) {
	f := newFixture(t, Config{}, false)
	webhookOf(f.srv).BodyLimit = 1000
	big := `{"a":"` + strings.Repeat("x", 1000) + `"}`
	resp, body := f.do(t, "POST", "/crm/lead", strings.NewReader(big), map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 413 || !strings.Contains(string(body), "limit of 1000 bytes") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// Without Content-Length (chunked), the limit still holds.
	pr, pw := io.Pipe()
	go func() { pw.Write([]byte(big)); pw.Close() }()
	resp, body = f.do(t, "POST", "/crm/lead", pr, map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 413 {
		t.Fatalf("chunked: %d %s", resp.StatusCode, body)
	}
	// Exactly at the limit is fine.
	ok := `{"a":"` + strings.Repeat("x", 1000-8) + `"}`
	resp, body = f.do(t, "POST", "/crm/lead", strings.NewReader(ok), map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 200 {
		t.Fatalf("at the limit: %d %s", resp.StatusCode, body)
	}
	if n := len(f.stored(t)); n != 1 {
		t.Fatalf("%d stored, want 1", n)
	}
}

func TestErrorsStoreNothing(t *testing.T) {
	f := newFixture(t, Config{}, false)
	cases := []struct {
		method, path, ctype, body string
		status                    int
		field                     string
	}{
		{"POST", "/crm/lead", "application/json", `[1,2]`, 400, "body"},
		{"POST", "/crm/lead", "application/json", `{"a":`, 400, "body"},
		{"GET", "/crm/lead/abc", "", "", 400, "projectId"},
		{"GET", "/crm/lead/4242", "", "", 404, "projectId"},
		{"DELETE", "/crm/lead", "", "", 405, ""},
		{"GET", "/redir/click/99?to=https://evil.com/", "", "", 400, "to"},
		{"GET", "/api/v1/events", "", "", 404, ""},
		{"POST", "/", "application/json", `{}`, 403, ""},
		{"POST", "/crm/lead", "multipart/form-data; boundary=x", `--x--`, 415, ""},
	}
	for _, c := range cases {
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		resp, b := f.do(t, c.method, c.path, body, map[string]string{"Content-Type": c.ctype})
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d (%s)", c.method, c.path, resp.StatusCode, c.status, b)
			continue
		}
		var e struct {
			Message string             `json:"message"`
			Errors  []event.FieldError `json:"errors"`
		}
		if err := json.Unmarshal(b, &e); err != nil || e.Message == "" {
			t.Errorf("%s %s: body %s", c.method, c.path, b)
		}
		if c.field != "" && (len(e.Errors) == 0 || e.Errors[0].Path != c.field) {
			t.Errorf("%s %s: errors %+v, want path %s", c.method, c.path, e.Errors, c.field)
		}
		if strings.Contains(string(b), "goroutine") || strings.Contains(string(b), ".go:") {
			t.Errorf("stack trace on the wire: %s", b)
		}
	}
	if n := len(f.stored(t)); n != 0 {
		t.Fatalf("%d events stored by refused requests", n)
	}
}

func TestPixel(t *testing.T) {
	f := newFixture(t, Config{}, false)
	resp, body := f.do(t, "GET", "/promo/view/99.gif?c=1", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/gif" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	img, err := gif.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 1 || b.Dy() != 1 {
		t.Fatalf("bounds %v", b)
	}
	if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
		t.Fatalf("pixel not transparent: alpha %d", a)
	}
	evs := f.stored(t)
	if len(evs) != 1 || evs[0].Channel != "pixel" || evs[0].Key != "in.gen.promo.view" || evs[0].ProjectID != 99 {
		t.Fatalf("stored %+v", evs)
	}
}

func TestRedirect(t *testing.T) {
	f := newFixture(t, Config{}, false)
	resp, body := f.do(t, "GET", "/redir/click/99?to=https%3A%2F%2Fexample.com%2Fsale%3Fq%3D1", nil, nil)
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "https://example.com/sale?q=1" {
		t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	evs := f.stored(t)
	if len(evs) != 1 || evs[0].Channel != "redir" || evs[0].Key != "in.gen.redir.click" {
		t.Fatalf("stored %+v", evs)
	}
}

func TestCORS(t *testing.T) {
	f := newFixture(t, Config{}, false)
	resp, _ := f.do(t, "OPTIONS", "/crm/lead", nil, map[string]string{
		"Origin": "https://shop.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-custom",
	})
	h := resp.Header
	if resp.StatusCode != 200 || h.Get("Access-Control-Allow-Origin") != "https://shop.example" ||
		h.Get("Access-Control-Allow-Credentials") != "true" || h.Get("Access-Control-Allow-Headers") != "content-type,x-custom" ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("preflight %d %v", resp.StatusCode, h)
	}
	resp, _ = f.do(t, "POST", "/crm/lead", strings.NewReader(`{}`), map[string]string{"Origin": "https://shop.example", "Content-Type": "application/json"})
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example" || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("simple request headers %v", resp.Header)
	}
	if n := len(f.stored(t)); n != 1 {
		t.Fatalf("preflight stored something: %d", n)
	}
}

func TestClientIP(t *testing.T) {
	mk := func(trusted ...string) *Server {
		var ps []netip.Prefix
		for _, s := range trusted {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		return &Server{cfg: Config{TrustedProxies: ps}}
	}
	cases := []struct {
		name    string
		srv     *Server
		remote  string
		headers map[string]string
		want    string
		secure  bool
	}{
		{"untrusted peer ignores headers", mk(), "198.51.100.1:5000", map[string]string{"X-Forwarded-For": "1.2.3.4", "X-Real-IP": "5.6.7.8", "X-Forwarded-Proto": "https"}, "198.51.100.1", false},
		{"trusted proxy, XFF", mk("10.0.0.0/8"), "10.0.0.2:5000", map[string]string{"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"}, "1.2.3.4", true},
		{"spoofed left of real client", mk("10.0.0.0/8"), "10.0.0.2:5000", map[string]string{"X-Forwarded-For": "6.6.6.6, 1.2.3.4, 10.0.0.9"}, "1.2.3.4", false},
		{"all proxies", mk("10.0.0.0/8"), "10.0.0.2:5000", map[string]string{"X-Forwarded-For": "10.1.1.1, 10.0.0.9"}, "10.1.1.1", false},
		{"X-Real-IP", mk("127.0.0.1/32"), "127.0.0.1:5000", map[string]string{"X-Real-IP": "203.0.113.9"}, "203.0.113.9", false},
		{"garbage XFF falls back", mk("127.0.0.1/32"), "127.0.0.1:5000", map[string]string{"X-Forwarded-For": "not-an-ip"}, "127.0.0.1", false},
		{"IPv6 peer", mk(), "[2001:db8::1]:5000", nil, "2001:db8::1", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/x", nil)
			r.RemoteAddr = c.remote
			for k, v := range c.headers {
				r.Header.Set(k, v)
			}
			ip, secure := c.srv.client(r)
			if ip != c.want || secure != c.secure {
				t.Fatalf("got %s %v, want %s %v", ip, secure, c.want, c.secure)
			}
		})
	}
}

func TestLogUnavailableIs503(t *testing.T) {
	f := newFixture(t, Config{}, false)
	f.log.Close()
	resp, body := f.do(t, "GET", "/crm/lead", nil, nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "nothing was stored") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

// panicky is an Appender that panics, to check the handler's recovery.
type panicky struct{}

func (panicky) Read(context.Context, eventlog.Query) ([]eventlog.Record, error) { return nil, nil }

func (panicky) Append(context.Context, []*event.Event) ([]eventlog.Result, error) {
	panic("boom")
}

func TestPanicAnswersJSONWithoutStack(t *testing.T) {
	ps, err := project.Open(filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	gen, _ := event.NewGenerator(0, nil)
	srv := httptest.NewServer(New(Config{}, panicky{}, testDialects(ps, gen, nil), nil, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/crm/lead")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || string(b) != `{"message":"internal error; nothing was stored"}`+"\n" {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

func TestHealth(t *testing.T) {
	var notReady atomic.Pointer[error]
	down := eventlog.ErrUnavailable
	notReady.Store(&down)
	f := newFixture(t, Config{Ready: func() error {
		if p := notReady.Load(); p != nil {
			return *p
		}
		return nil
	}}, false)
	if resp, _ := f.do(t, "GET", "/healthz", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
	if resp, body := f.do(t, "GET", "/readyz", nil, nil); resp.StatusCode != 503 || string(body) != `{"reason":"event log unavailable","status":"not ready"}`+"\n" {
		t.Fatalf("readyz before ready %d %s", resp.StatusCode, body)
	}
	notReady.Store(nil)
	if resp, body := f.do(t, "GET", "/readyz", nil, nil); resp.StatusCode != 200 || string(body) != `{"status":"ready"}`+"\n" {
		t.Fatalf("readyz %d %s", resp.StatusCode, body)
	}
}

// Projects that keep raw requests store each request's body (or, without
// one, its query string) beside its events; other projects store none.
func TestRawRequestsKeptForProjectsThatAsk(t *testing.T) {
	f := newFixture(t, Config{KeepContent: func(p uint32) bool { return p == 99 }}, false)
	other := uint32(98)
	if _, err := f.projects.Create(context.Background(), &other, "other", project.Settings{}); err != nil {
		t.Fatal(err)
	}
	f.do(t, "GET", "/calltrack/call/99?phone=79990000000&utm_source=x", nil, nil)
	f.do(t, "POST", "/crm/lead/99", strings.NewReader("name=Ann&amount=10"), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	f.do(t, "GET", "/calltrack/call/98?phone=1", nil, nil)
	recs, err := f.log.Read(context.Background(), eventlog.Query{})
	if err != nil || len(recs) != 3 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	if recs[2].ContentID != 0 {
		t.Fatal("project 98 kept a raw request")
	}
	got, err := f.log.Contents(context.Background(), []int64{recs[0].ContentID, recs[1].ContentID})
	if err != nil {
		t.Fatal(err)
	}
	if string(got[recs[0].ContentID].Body) != "phone=79990000000&utm_source=x" || string(got[recs[1].ContentID].Body) != "name=Ann&amount=10" {
		t.Fatalf("contents %q / %q", got[recs[0].ContentID].Body, got[recs[1].ContentID].Body)
	}
}

// A batch keeps, for each event, the batch element it came from; a
// project that hashes PII keeps no raw request at all.
func TestRawRequestsOfBatches(t *testing.T) {
	for _, tc := range []struct {
		file, array string
		at          time.Time
		none        bool
	}{
		{"testdata/s2s/seed_curl_example.http", "messages", s2sClock, false},
		{"testdata/track/batch_mixed.http", "batch", trackClock, false},
		{"testdata/commerce/batch.http", "batch", commerceClock, false},
		{"testdata/s2s/hash_pii_replaces_raw.http", "", s2sClock, true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			srv, l := goldenServer(t, tc.at)
			srv.cfg.KeepContent = func(uint32) bool { return true }
			var elems []string
			for _, req := range parseExchanges(t, raw) {
				body, _ := io.ReadAll(req.Body)
				req.Body = io.NopCloser(bytes.NewReader(body))
				gjson.GetBytes(body, tc.array).ForEach(func(_, v gjson.Result) bool { elems = append(elems, v.Raw); return true })
				srv.ServeHTTP(httptest.NewRecorder(), req)
			}
			recs, err := l.Read(context.Background(), eventlog.Query{})
			if err != nil || len(recs) == 0 {
				t.Fatalf("%d records, %v", len(recs), err)
			}
			var ids []int64
			for _, r := range recs {
				if tc.none != (r.ContentID == 0) {
					t.Fatalf("record %s content id %d", r.ID, r.ContentID)
				}
				ids = append(ids, r.ContentID)
			}
			if tc.none {
				return
			}
			got, err := l.Contents(context.Background(), ids)
			if err != nil || len(got) != len(recs) {
				t.Fatalf("%d contents for %d events (one each), %v", len(got), len(recs), err)
			}
			for _, r := range recs {
				c := string(got[r.ContentID].Body)
				// The element as sent, or compacted (s2s and commerce keep
				// the compact element they validated).
				found := false
				for _, e := range elems {
					var compact bytes.Buffer
					json.Compact(&compact, []byte(e))
					found = found || e == c || compact.String() == c
				}
				if !found || c[0] != '{' || c == string(raw) {
					t.Fatalf("content of %s is not one batch element: %.200s", r.Key, c)
				}
			}
		})
	}
}
