package console_test

import (
	"crypto/sha256"
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/admin"
	"github.com/sluicehq/sluice/internal/console"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
	"github.com/sluicehq/sluice/internal/project"
)

const token = "sla_console_test_token_0123"

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	srv   *httptest.Server
	clock *clock
}

// newFixture serves the real admin API with the console in front of it,
// as app composes them.
func newFixture(t *testing.T, tls bool, cfg console.Config) *fixture {
	t.Helper()
	dir := t.TempDir()
	l, err := sqlite.Open(sqlite.Config{Path: filepath.Join(dir, "events.db")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := project.Open(filepath.Join(dir, "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}
	cfg.TokenHash = sha256.Sum256([]byte(token))
	cfg.Now = c.now
	web := console.New(cfg, nil)
	h := admin.New(admin.Config{TokenHash: cfg.TokenHash, Sessions: web, Console: web}, ps, l, nil, nil)
	f := &fixture{clock: c}
	if tls {
		f.srv = httptest.NewTLSServer(h)
	} else {
		f.srv = httptest.NewServer(h)
	}
	t.Cleanup(func() { f.srv.Close(); l.Close(); ps.Close() })
	return f
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects.
func (f *fixture) browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	c := *f.srv.Client() // a copy: the server's client is shared
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func send(t *testing.T, c *http.Client, method, u string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, body)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

var hiddenRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
var metaRE = regexp.MustCompile(`<meta name="csrf-token" content="([^"]*)">`)

func cookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// signIn signs c in and returns the session's CSRF token.
func (f *fixture) signIn(t *testing.T, c *http.Client, next string) (csrf string, resp *http.Response) {
	t.Helper()
	_, page := send(t, c, "GET", f.srv.URL+"/signin?next="+url.QueryEscape(next), nil)
	m := hiddenRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no sign-in token in the form:\n%s", page)
	}
	form := url.Values{"csrf": {m[1]}, "token": {token}, "next": {next}}
	resp, _ = send(t, c, "POST", f.srv.URL+"/signin", strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in answered %d", resp.StatusCode)
	}
	_, page = send(t, c, "GET", f.srv.URL+"/hooks", nil)
	mm := metaRE.FindStringSubmatch(page)
	if mm == nil || mm[1] == "" {
		t.Fatalf("no CSRF token on a signed-in page:\n%s", page)
	}
	return mm[1], resp
}

func TestSignIn(t *testing.T) {
	f := newFixture(t, false, console.Config{SessionTTL: time.Hour})
	c := f.browser(t)

	// A page signed out leads to sign-in, keeping where it was going.
	resp, _ := send(t, c, "GET", f.srv.URL+"/hooks?x=1", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin?next=%2Fhooks%3Fx%3D1" {
		t.Fatalf("signed out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The API signed out is a JSON 401, as before.
	if resp, _ := send(t, c, "GET", f.srv.URL+"/api/v1/projects", nil); resp.StatusCode != 401 {
		t.Fatalf("API signed out: %d", resp.StatusCode)
	}

	// A wrong token: 401, the form again, no session.
	resp, page := send(t, c, "GET", f.srv.URL+"/signin", nil)
	if ck := cookie(resp, "sluice_signin"); ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("sign-in form cookie %+v", ck)
	}
	m := hiddenRE.FindStringSubmatch(page)
	form := url.Values{"csrf": {m[1]}, "token": {"sla_wrong_token_0123456789"}, "next": {"/live"}}
	resp, page = send(t, c, "POST", f.srv.URL+"/signin", strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != 401 || !strings.Contains(page, "That is not the admin token.") || cookie(resp, "sluice_session") != nil {
		t.Fatalf("wrong token: %d, session %v:\n%s", resp.StatusCode, cookie(resp, "sluice_session"), page)
	}
	// The form's token is single-use per form: the page above has a new
	// one; a post without the form's cookie is refused (login CSRF).
	bare := f.srv.Client()
	form.Set("token", token)
	resp, _ = send(t, bare, "POST", f.srv.URL+"/signin", strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != 403 || cookie(resp, "sluice_session") != nil {
		t.Fatalf("sign-in without the form's cookie: %d", resp.StatusCode)
	}
	// From another origin: refused.
	m = hiddenRE.FindStringSubmatch(page)
	form.Set("csrf", m[1])
	resp, _ = send(t, c, "POST", f.srv.URL+"/signin", strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded", "Origin", "https://evil.example")
	if resp.StatusCode != 403 {
		t.Fatalf("sign-in from another origin: %d", resp.StatusCode)
	}

	// The right token: a session cookie, HttpOnly, SameSite=Strict,
	// expiring, not Secure over plain HTTP; then where it was going.
	_, resp = f.signIn(t, c, "/live")
	ck := cookie(resp, "sluice_session")
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.MaxAge != 3600 || len(ck.Value) < 40 {
		t.Fatalf("session cookie %+v", ck)
	}
	if resp.Header.Get("Location") != "/live" {
		t.Fatalf("after sign-in: %s", resp.Header.Get("Location"))
	}
	if resp, _ := send(t, c, "GET", f.srv.URL+"/api/v1/projects", nil); resp.StatusCode != 200 {
		t.Fatalf("API with the session: %d", resp.StatusCode)
	}

	// It expires.
	f.clock.add(time.Hour + time.Second)
	if resp, _ := send(t, c, "GET", f.srv.URL+"/api/v1/projects", nil); resp.StatusCode != 401 {
		t.Fatalf("API with an expired session: %d", resp.StatusCode)
	}
	if resp, _ := send(t, c, "GET", f.srv.URL+"/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("page with an expired session: %d", resp.StatusCode)
	}
}

// Where to go after signing in is a path of this site, never another.
func TestSignInGoesOnlyHere(t *testing.T) {
	f := newFixture(t, false, console.Config{})
	for _, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"} {
		_, resp := f.signIn(t, f.browser(t), next)
		if loc := resp.Header.Get("Location"); loc != "/" {
			t.Errorf("next=%q went to %q", next, loc)
		}
	}
	// Browsers drop tabs and newlines and read \ as /: each of these
	// would land on evil.example. The form does not carry them on.
	for _, next := range []string{"/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "/x/\\..\\..\\/evil.example", "/\x7f/evil.example"} {
		_, page := send(t, f.browser(t), "GET", f.srv.URL+"/signin?next="+url.QueryEscape(next), nil)
		if m := regexp.MustCompile(`name="next" value="([^"]*)"`).FindStringSubmatch(page); m == nil || m[1] != "/" {
			t.Errorf("next=%q: the sign-in form carries %q", next, m)
		}
	}
	// A path of this site is kept.
	if _, resp := f.signIn(t, f.browser(t), "/hooks?x=1#top"); resp.Header.Get("Location") != "/hooks?x=1#top" {
		t.Errorf("next=/hooks?x=1#top went to %q", resp.Header.Get("Location"))
	}
}

func TestSecureCookieUnderTLS(t *testing.T) {
	f := newFixture(t, true, console.Config{})
	_, resp := f.signIn(t, f.browser(t), "/")
	if ck := cookie(resp, "sluice_session"); ck == nil || !ck.Secure {
		t.Fatalf("session cookie under TLS %+v", ck)
	}
}

// With the session, every state-changing API call needs the session's
// CSRF token and the console's own origin; a refused one changes nothing.
func TestCSRF(t *testing.T) {
	f := newFixture(t, false, console.Config{})
	c := f.browser(t)
	csrf, _ := f.signIn(t, c, "/")
	body := func() io.Reader { return strings.NewReader(`{"name":"shop"}`) }
	for _, tc := range []struct {
		name string
		hdr  []string
		want int
	}{
		{"no token", []string{}, 403},
		{"a wrong token", []string{"X-CSRF-Token", csrf + "x"}, 403},
		{"another origin", []string{"X-CSRF-Token", csrf, "Origin", "https://evil.example"}, 403},
		{"the token", []string{"X-CSRF-Token", csrf, "Origin", f.srv.URL}, 201},
	} {
		hdr := append([]string{"Content-Type", "application/json"}, tc.hdr...)
		resp, b := send(t, c, "POST", f.srv.URL+"/api/v1/projects", body(), hdr...)
		if resp.StatusCode != tc.want {
			t.Fatalf("%s: %d %s", tc.name, resp.StatusCode, b)
		}
		if tc.want == 403 && !strings.Contains(b, `"message"`) {
			t.Fatalf("%s: not a JSON error: %s", tc.name, b)
		}
	}
	_, list := send(t, c, "GET", f.srv.URL+"/api/v1/projects", nil)
	if n := strings.Count(list, `"name":"shop"`); n != 1 {
		t.Fatalf("%d projects named shop after one accepted call: %s", n, list)
	}
	// The bearer token needs no CSRF token (it is not sent by browsers
	// on their own).
	resp, _ := send(t, f.srv.Client(), "POST", f.srv.URL+"/api/v1/projects", body(), "Authorization", "Bearer "+token, "Content-Type", "application/json")
	if resp.StatusCode != 201 {
		t.Fatalf("bearer: %d", resp.StatusCode)
	}
	// A wrong bearer token is not rescued by a session.
	resp, _ = send(t, c, "GET", f.srv.URL+"/api/v1/projects", nil, "Authorization", "Bearer wrong")
	if resp.StatusCode != 401 {
		t.Fatalf("wrong bearer with a session: %d", resp.StatusCode)
	}
	// Profiling takes only the bearer token.
	if resp, _ := send(t, c, "GET", f.srv.URL+"/debug/pprof/", nil); resp.StatusCode != 401 {
		t.Fatalf("pprof with a session: %d", resp.StatusCode)
	}
}

func TestSignOut(t *testing.T) {
	f := newFixture(t, false, console.Config{})
	c := f.browser(t)
	csrf, _ := f.signIn(t, c, "/")
	resp, _ := send(t, c, "POST", f.srv.URL+"/signout", strings.NewReader("csrf=wrong"), "Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != 403 {
		t.Fatalf("sign-out without the CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := send(t, c, "GET", f.srv.URL+"/api/v1/projects", nil); resp.StatusCode != 200 {
		t.Fatal("a refused sign-out ended the session")
	}
	resp, _ = send(t, c, "POST", f.srv.URL+"/signout", strings.NewReader("csrf="+csrf), "Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin" {
		t.Fatalf("sign-out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if ck := cookie(resp, "sluice_session"); ck == nil || ck.MaxAge >= 0 {
		t.Fatalf("sign-out does not clear the cookie: %+v", ck)
	}
	// The session is gone on the server too, not only in this browser.
	if resp, _ := send(t, c, "GET", f.srv.URL+"/api/v1/projects", nil); resp.StatusCode != 401 {
		t.Fatalf("after sign-out: %d", resp.StatusCode)
	}
}

// Past the bound, the session that expires first is dropped.
func TestSessionBound(t *testing.T) {
	f := newFixture(t, false, console.Config{MaxSessions: 2})
	first := f.browser(t)
	f.signIn(t, first, "/")
	f.clock.add(time.Second)
	second := f.browser(t)
	f.signIn(t, second, "/")
	third := f.browser(t)
	f.signIn(t, third, "/")
	for i, c := range []*http.Client{first, second, third} {
		want := 200
		if i == 0 {
			want = 401
		}
		if resp, _ := send(t, c, "GET", f.srv.URL+"/api/v1/projects", nil); resp.StatusCode != want {
			t.Errorf("session %d: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
}

// Every page, the sign-in form, the static files and a 404 refuse
// framing and send a policy without inline script; every page renders.
func TestPagesAndHeaders(t *testing.T) {
	f := newFixture(t, false, console.Config{})
	c := f.browser(t)
	f.signIn(t, c, "/")
	for _, p := range []struct {
		path   string
		status int
		ctype  string
	}{
		{"/", 200, "text/html"}, {"/live", 200, "text/html"}, {"/events", 200, "text/html"}, {"/projects", 200, "text/html"},
		{"/projects/0", 200, "text/html"}, {"/hooks", 200, "text/html"}, {"/hooks/new", 200, "text/html"},
		{"/hooks/hk_x", 200, "text/html"}, {"/profiles", 200, "text/html"}, {"/nowhere", 404, "text/html"},
		{"/static/console.css", 200, "text/css"}, {"/static/js/main.js", 200, "text/javascript"}, {"/favicon.ico", 200, "image/svg+xml"},
		{"/static/nothing.js", 404, "text/plain"},
	} {
		resp, body := send(t, c, "GET", f.srv.URL+p.path, nil)
		if resp.StatusCode != p.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), p.ctype) {
			t.Errorf("%s: %d %s", p.path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", p.path, csp)
		}
		if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: framing or sniffing allowed", p.path)
		}
		if p.ctype == "text/html" && p.status == 200 && !strings.Contains(body, `<main id="main"`) {
			t.Errorf("%s: no page", p.path)
		}
	}
	resp, _ := send(t, f.srv.Client(), "GET", f.srv.URL+"/signin", nil)
	if resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Error("the sign-in form may be framed")
	}
}

// The embedded files hold no inline script, no inline handler and no
// inline style (the CSP would block them), and every module main.js
// imports exists and is served.
func TestNoInlineScript(t *testing.T) {
	inline := regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]|\son[a-z]+\s*=|\sstyle\s*=|javascript:`)
	err := filepath.WalkDir("templates", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if loc := inline.FindIndex(b); loc != nil {
			t.Errorf("%s: inline script or style: %q", path, b[loc[0]:min(loc[1]+40, len(b))])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, false, console.Config{})
	c := f.srv.Client()
	_, main := send(t, c, "GET", f.srv.URL+"/static/js/main.js", nil)
	imports := regexp.MustCompile(`from '\./([a-z]+\.js)'`).FindAllStringSubmatch(main, -1)
	if len(imports) < 8 {
		t.Fatalf("main.js imports %d modules", len(imports))
	}
	seen := map[string]bool{}
	var walk func(name string)
	walk = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		resp, js := send(t, c, "GET", f.srv.URL+"/static/js/"+name, nil)
		if resp.StatusCode != 200 {
			t.Errorf("module %s: %d", name, resp.StatusCode)
			return
		}
		if strings.Contains(js, "innerHTML") || strings.Contains(js, "eval(") || strings.Contains(js, "new Function") {
			t.Errorf("module %s builds markup or code from strings", name)
		}
		for _, m := range regexp.MustCompile(`from '\./([a-z]+\.js)'`).FindAllStringSubmatch(js, -1) {
			walk(m[1])
		}
	}
	walk("main.js")
}

// The forms that the pages' scripts submit through the API are served
// with their submit buttons disabled, and a script enables them only as
// it binds the form (onSubmit): a click before that would submit the form
// natively, as a GET with every field in the URL (a hook's bearer token or
// password, a pre-test sample, a schema).
func TestScriptFormsWaitForTheirScript(t *testing.T) {
	f := newFixture(t, false, console.Config{})
	c := f.browser(t)
	f.signIn(t, c, "/")
	button := regexp.MustCompile(`<button type="submit"[^>]*>`)
	for path, forms := range map[string][]string{
		"/hooks/hk_x": {"hook-form", "test-form"},
		"/hooks/new":  {"hook-form"},
		"/projects/0": {"settings-form", "token-form", "type-form", "schema-form"},
		"/projects":   {"project-create"},
	} {
		_, body := send(t, c, "GET", f.srv.URL+path, nil)
		for _, id := range forms {
			i := strings.Index(body, `<form id="`+id+`"`)
			if i < 0 {
				t.Errorf("%s: no form %s", path, id)
				continue
			}
			end := i + strings.Index(body[i:], "</form>")
			bs := button.FindAllString(body[i:end], -1)
			if len(bs) == 0 {
				t.Errorf("%s: form %s has no submit button", path, id)
			}
			for _, b := range bs {
				if !strings.Contains(b, " disabled") || !strings.Contains(b, "data-until-bound") {
					t.Errorf("%s: form %s: %s is not disabled until its script binds it", path, id, b)
				}
			}
		}
	}
	// The scripts of those pages bind their submits through onSubmit only.
	for _, name := range []string{"hook.js", "project.js", "projects.js"} {
		b, err := os.ReadFile(filepath.Join("static/js", name))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "onSubmit(") || strings.Contains(string(b), "addEventListener('submit'") {
			t.Errorf("%s binds a submit without onSubmit", name)
		}
	}
}
