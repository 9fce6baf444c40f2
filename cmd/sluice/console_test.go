package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

var screenshots = flag.Bool("screenshots", false, "write the console's screenshots to docs/console/ (else to a temp dir)")

// chromium finds the browser: $SLUICE_CHROMIUM, else Debian's chromium
// (scripts/deps.sh installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("SLUICE_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("the console tests need Chromium: run scripts/deps.sh as root, or apt-get install chromium, or set SLUICE_CHROMIUM")
	return ""
}

// receiver is a loopback target for hooks that records what it gets.
type receiver struct {
	*httptest.Server
	failing atomic.Bool
	mu      sync.Mutex
	bodies  []string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(b))
		r.mu.Unlock()
		if r.failing.Load() {
			http.Error(w, "down for the test", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(r.Close)
	return r
}

// waitBody waits until a received body contains all of parts.
func (r *receiver) waitBody(t *testing.T, d time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, b := range r.bodies {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(b, p)
			}
			if ok {
				r.mu.Unlock()
				return b
			}
		}
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the receiver got no body with %q within %v", parts, d)
	return ""
}

// browser drives one Chromium tab and collects what it reports as errors
// and warnings (exceptions, console calls, the browser's log: CSP
// violations, failed loads).
type browser struct {
	t    *testing.T
	ctx  context.Context
	shot string // where screenshots go

	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 860),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, shot: t.TempDir()}
	if *screenshots {
		b.shot = filepath.Join("..", "..", "docs", "console")
		os.MkdirAll(b.shot, 0o755)
	}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	msgs := chromedp.Console(ctx)
	if _, err := chromedp.Call(ctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enable the browser log: %v", err)
	}
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.Type == chromedp.ConsoleException {
				b.mu.Lock()
				b.errors = append(b.errors, fmt.Sprintf("%s %s", m, m.URL))
				b.mu.Unlock()
			}
		}
	}()
	return b
}

func (b *browser) fatal(what string, err error) {
	b.t.Helper()
	loc, _ := chromedp.Run(b.ctx, chromedp.Location())
	body, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body.innerText`))
	b.mu.Lock()
	defer b.mu.Unlock()
	b.t.Fatalf("%s: %v\nat %s:\n%s\nbrowser errors: %v", what, err, loc, body, b.errors)
}

// run runs actions with a deadline.
func (b *browser) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fatal(what, err)
	}
}

// runAgain is run for idempotent steps on a page that may still be
// replacing its document (a form's answer loading): when the node a step
// found is gone before it acts ("No node with given id found"), the
// steps run again, up to three times.
func (b *browser) runAgain(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	for n := 1; ; n++ {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		err := chromedp.Do(ctx, steps...)
		cancel()
		if err == nil {
			return
		}
		if n == 3 || !strings.Contains(err.Error(), "No node with given id found") {
			b.fatal(what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fatal(expr, err)
	}
	return v
}

// wait polls a JavaScript condition until it is true.
func (b *browser) wait(what, expr string, d time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	for {
		if ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](expr)); err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.fatal(what, fmt.Errorf("not within %v: %s", d, expr))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	// A page that is replaced between finding the node and reading it
	// (a form's answer arriving) leaves a stale node id: read again.
	for try := 0; err != nil && strings.Contains(err.Error(), "No node with given id") && try < 5; try++ {
		time.Sleep(50 * time.Millisecond)
		s, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	}
	if err != nil {
		b.fatal("read "+sel, err)
	}
	return s
}

func (b *browser) attr(sel, name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
	if err != nil {
		b.fatal("read "+sel+" "+name, err)
	}
	return v.Value
}

func (b *browser) location() string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.fatal("location", err)
	}
	return s
}

func (b *browser) cookies() []*network.Cookie {
	b.t.Helper()
	res, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		b.fatal("cookies", err)
	}
	return res.Cookies
}

// screenshot writes the viewport as <name>.png (docs/console/ with
// -screenshots).
func (b *browser) screenshot(name string) {
	b.t.Helper()
	time.Sleep(150 * time.Millisecond) // let the last frame paint
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.fatal("screenshot "+name, err)
	}
	if err := os.WriteFile(filepath.Join(b.shot, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// curl runs the real curl, as an integrator would.
func curl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "10"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v: %s", args, err, out)
	}
	return string(out)
}

// The console, in a real Chromium against the real binary: sign-in, the
// live view, hooks from the form to a loopback receiver and every action
// on them, pre-test, dead-letter replay, a profile and its timeline, CSRF,
// sign-out; a screenshot of every page; no error in the browser console.
func TestConsoleInABrowser(t *testing.T) {
	recv := newReceiver(t)
	cfgFile := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfgFile, []byte("hooks:\n  allow_networks: [127.0.0.0/8]\n  content_retention: 1h\n"), 0o600)
	s := startServer(t, t.TempDir(), "--config", cfgFile)
	auth := []string{"Authorization", "Bearer " + testAdminToken}
	// A token for project 0, for the track and s2s senders.
	if r := do(t, "POST", s.admin+"/api/v1/projects/0/tokens", "application/json", `{"name":"sender","secret":"abc123"}`, auth...); r.status != 201 {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	var p0 struct {
		Settings struct {
			AppID string `json:"app_id"`
		} `json:"settings"`
	}
	json.Unmarshal(do(t, "GET", s.admin+"/api/v1/projects/0", "", "", auth...).body, &p0)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("abc123:"))

	b := newBrowser(t)
	start := time.Now()

	// An unauthenticated page leads to sign-in, which refuses a wrong
	// token and then goes where it was asked to.
	b.run("open /hooks signed out", chromedp.Navigate(s.admin+"/hooks"), chromedp.WaitVisible(chromedp.CSS("#token")))
	if loc := b.location(); loc != s.admin+"/signin?next=%2Fhooks" {
		t.Fatalf("signed out, /hooks went to %s", loc)
	}
	b.screenshot("signin")
	b.run("wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "sla_not_the_token_at_all"), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#signin-error")))
	if msg := b.text("#signin-error"); !strings.Contains(msg, "not the admin token") {
		t.Fatalf("wrong token answered %q\n%s", msg, s.errOut.String())
	}
	for _, c := range b.cookies() {
		if c.Name == "sluice_session" {
			t.Fatal("a wrong token got a session")
		}
	}
	b.runAgain("sign in", chromedp.SetValue(chromedp.CSS("#token"), testAdminToken), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#hooks-rows")))
	if loc := b.location(); loc != s.admin+"/hooks" {
		t.Fatalf("signed in at %s, want /hooks", loc)
	}
	var session *network.Cookie
	for _, c := range b.cookies() {
		if c.Name == "sluice_session" {
			session = c
		}
	}
	if session == nil || !session.HTTPOnly || session.SameSite != network.CookieSameSiteStrict || session.Expires <= float64(time.Now().Unix()) || session.Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, expiring, not Secure over plain HTTP", session)
	}

	// Live: an event sent with curl shows within 2 s, and a refused
	// request with its error path.
	b.run("live", chromedp.Navigate(s.admin+"/live"), chromedp.WaitVisible(chromedp.CSS("#live-rows")))
	b.wait("the stream is open", `document.querySelector('#live-status').textContent.startsWith('Live')`, 5*time.Second)
	sent := time.Now()
	curl(t, s.ingest+"/calltrack/call/0?param=from-curl")
	b.wait("the event in the live view", `!!document.querySelector('#live-rows tr[data-key="in.gen.calltrack.call"]')`, 2*time.Second)
	if d := time.Since(sent); d > 2*time.Second {
		t.Fatalf("the event showed after %v", d)
	}
	curl(t, "-X", "POST", "-H", "Content-Type: application/json", "-H", "Authorization: "+basic, s.ingest+"/track",
		"-d", `{"hitId":"4c59d330-35c7-11e9-8f27-8d1d7d4690e7","sentAt":"2019-02-21T10:56:10.723Z","event":{"name":"Completed Transaction","value":"many"}}`)
	b.wait("the refusal in the live view", `[...document.querySelectorAll('#live-rows tr[data-kind="refusal"]')].some(r => r.textContent.includes('event.value: must be a number'))`, 2*time.Second)
	b.run("open the refusal", chromedp.Click(chromedp.CSS(`#live-rows tr[data-kind="refusal"] button.open`)), chromedp.WaitVisible(chromedp.CSS("#detail .errors-list")))
	if d := b.text("#detail"); !strings.Contains(d, "event.value") || !strings.Contains(d, "track") || !strings.Contains(d, "POST /track") {
		t.Fatalf("refusal detail:\n%s", d)
	}
	b.run("open the event", chromedp.Click(chromedp.CSS(`#live-rows tr[data-kind="event"] button.open`)), chromedp.WaitVisible(chromedp.CSS("#detail pre")))
	if d := b.text("#detail"); !strings.Contains(d, `"param": "from-curl"`) || !strings.Contains(d, "Canonical JSON") {
		t.Fatalf("event detail:\n%s", d)
	}
	// Paused, what comes waits; resumed, it shows.
	b.run("pause", chromedp.Click(chromedp.CSS("#live-pause")))
	curl(t, s.ingest+"/calltrack/call/0?param=while-paused")
	b.wait("one waiting", `document.querySelector('#live-status').textContent.includes('Paused · 1 waiting')`, 2*time.Second)
	if rows := eval[int](b, `document.querySelectorAll('#live-rows tr').length`); rows != 2 {
		t.Fatalf("%d rows while paused, want 2", rows)
	}
	b.run("resume", chromedp.Click(chromedp.CSS("#live-pause")))
	b.wait("the waiting event shows", `document.querySelectorAll('#live-rows tr').length === 3`, 2*time.Second)
	b.run("select the refusal", chromedp.Click(chromedp.CSS(`#live-rows tr[data-kind="refusal"] button.open`)), chromedp.WaitVisible(chromedp.CSS("#detail .errors-list")))
	b.screenshot("live")

	// A hook through the form: a bad URL is answered at its field, a good
	// one is created and delivers to the loopback receiver.
	b.run("new hook", chromedp.Navigate(s.admin+"/hooks/new"), chromedp.WaitVisible(chromedp.CSS("#h-name")),
		chromedp.SendKeys(chromedp.CSS("#h-name"), "crm calls"),
		chromedp.SendKeys(chromedp.CSS("#h-events"), "in.gen.calltrack.*"),
		chromedp.SendKeys(chromedp.CSS("#h-url"), "ftp://crm.example.com/hook"),
		chromedp.SendKeys(chromedp.CSS("#h-btime"), "10ms"),
		chromedp.SendKeys(chromedp.CSS("#h-rtimes"), "0"),
		chromedp.SendKeys(chromedp.CSS("#h-rperiod"), "10ms"),
		chromedp.SendKeys(chromedp.CSS("#h-custom"), "caller = {{event.data.param}}"),
		chromedp.WaitEnabled(chromedp.CSS("#hook-save")), // once the page's script has bound the form
		chromedp.Click(chromedp.CSS("#hook-save")),
		chromedp.WaitVisible(chromedp.CSS(`[data-path="http.url"] .field-error`)))
	// Another delivery type shows its own fields, and its errors there.
	eval[bool](b, `(() => { const s = document.querySelector('#h-type'); s.value = 'kafka'; s.dispatchEvent(new Event('change')); return true })()`)
	b.run("kafka", chromedp.WaitVisible(chromedp.CSS("#k-topic")), chromedp.WaitNotVisible(chromedp.CSS("#h-url")), chromedp.Click(chromedp.CSS("#hook-save")),
		chromedp.WaitVisible(chromedp.CSS(`fieldset[data-type="kafka"] .field-error`)))
	if e := b.text(`fieldset[data-type="kafka"]`); !strings.Contains(e, "kafka.") && !strings.Contains(e, "required") {
		t.Fatalf("kafka errors:\n%s", e)
	}
	eval[bool](b, `(() => { const s = document.querySelector('#h-type'); s.value = 'http'; s.dispatchEvent(new Event('change')); return true })()`)
	b.run("http again", chromedp.WaitVisible(chromedp.CSS("#h-url")), chromedp.Click(chromedp.CSS("#hook-save")),
		chromedp.WaitVisible(chromedp.CSS(`[data-path="http.url"] .field-error`)))
	if msg := b.text(`[data-path="http.url"] .field-error`); !strings.Contains(msg, "http") {
		t.Fatalf("url error %q", msg)
	}
	if b.attr("#h-url", "aria-invalid") != "true" {
		t.Fatal("the url field is not marked invalid")
	}
	b.screenshot("hook-errors")
	b.run("fix the url", chromedp.SetValue(chromedp.CSS("#h-url"), recv.URL+"/crm"), chromedp.Click(chromedp.CSS("#hook-save")),
		chromedp.WaitVisible(chromedp.CSS("#hook-continue")))
	if secret := b.text("#hook-secret code"); !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("signing secret %q", secret)
	}
	b.run("to the hook", chromedp.Click(chromedp.CSS("#hook-continue")), chromedp.WaitVisible(chromedp.CSS("#test-send")))
	hookURL := b.location()
	hookID := hookURL[strings.LastIndex(hookURL, "/")+1:]
	curl(t, s.ingest+"/calltrack/call/0?param=to-the-hook")
	recv.waitBody(t, 5*time.Second, `"caller":"to-the-hook"`)

	// Pre-test: the target's answer is shown.
	b.run("pre-test", chromedp.WaitEnabled(chromedp.CSS("#test-send")), chromedp.Click(chromedp.CSS("#test-send")), chromedp.WaitVisible(chromedp.CSS("#test-outcome")))
	if out := b.text("#test-result"); !strings.Contains(out, "delivered") || !strings.Contains(out, "status 200") || !strings.Contains(out, `{"ok":true}`) {
		t.Fatalf("pre-test result:\n%s", out)
	}
	recv.waitBody(t, time.Second, `"is_test":true`)
	b.wait("attempts listed", `document.querySelectorAll('#attempts-rows tr').length >= 1 && !document.querySelector('#attempts-rows td.empty')`, 3*time.Second)

	// A dead letter, replayed from the page.
	recv.failing.Store(true)
	curl(t, s.ingest+"/calltrack/call/0?param=dead")
	for deadline := time.Now().Add(10 * time.Second); ; {
		r := do(t, "GET", s.admin+"/api/v1/hooks/"+hookID+"/dead-letters", "", "", auth...)
		if strings.Contains(string(r.body), `"batch_id"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter: %s", r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	recv.failing.Store(false)
	b.run("dead letters", chromedp.Click(chromedp.CSS("#dl-refresh")), chromedp.WaitVisible(chromedp.CSS("#dl-rows button[data-dl]")))
	b.screenshot("hook-deliveries")
	eval[bool](b, `(() => { window.scrollTo(0, 0); return true })()`)
	b.screenshot("hook")
	b.run("replay", chromedp.Click(chromedp.CSS("#dl-rows button[data-dl]")))
	b.wait("replayed", `document.querySelector('#dl-result').textContent.includes('delivered')`, 5*time.Second)
	b.wait("no dead letter left", `!!document.querySelector('#dl-rows td.empty')`, 3*time.Second)

	// Stop, activate, clone and delete from the list.
	row := fmt.Sprintf(`#hooks-rows tr[data-hook=%q]`, hookID)
	menu := func(action string) {
		t.Helper()
		b.run("menu "+action, chromedp.Click(chromedp.CSS(row+" details.menu summary")), chromedp.Click(chromedp.CSS(row+` button[data-action="`+action+`"]`)))
	}
	b.run("hooks", chromedp.Navigate(s.admin+"/hooks"), chromedp.WaitVisible(chromedp.CSS(row)))
	menu("stop")
	b.wait("stopped", `document.querySelector('`+row+`').textContent.includes('stopped')`, 3*time.Second)
	if r := do(t, "GET", s.admin+"/api/v1/hooks/"+hookID, "", "", auth...); !strings.Contains(string(r.body), `"active":false`) {
		t.Fatalf("after Stop: %s", r.body)
	}
	menu("activate")
	b.wait("active", `document.querySelector('`+row+`').textContent.includes('active')`, 3*time.Second)
	menu("clone")
	b.wait("on the clone's page", fmt.Sprintf(`location.pathname.startsWith('/hooks/hk_') && location.pathname !== '/hooks/%s'`, hookID), 3*time.Second)
	cloneID := strings.TrimPrefix(b.location(), s.admin+"/hooks/")
	b.run("hooks", chromedp.Navigate(s.admin+"/hooks"), chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#hooks-rows tr[data-hook=%q]`, cloneID))))
	b.screenshot("hooks")
	row = fmt.Sprintf(`#hooks-rows tr[data-hook=%q]`, cloneID)
	menu("delete")
	b.run("confirm", chromedp.Click(chromedp.CSS(row+` button[data-action="delete"]`)))
	b.wait("the clone is gone", fmt.Sprintf(`!document.querySelector('#hooks-rows tr[data-hook=%q]')`, cloneID), 3*time.Second)
	if r := do(t, "GET", s.admin+"/api/v1/hooks/"+cloneID, "", "", auth...); r.status != 404 {
		t.Fatalf("deleted clone: %d", r.status)
	}

	// A profile and its timeline.
	if r := do(t, "POST", s.ingest+"/", "application/json", `{"customUserId":"r.akbari","messages":[{"type":"user","id":"m-1","time":1680000000000,"firstName":"Reza","customAttributes":{"job":"developer"}}]}`,
		"X-Application-Id", p0.Settings.AppID, "X-API-Key", "abc123"); r.status != 200 {
		t.Fatalf("s2s: %d %s", r.status, r.body)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if r := do(t, "GET", s.admin+"/api/v1/projects/0/profiles/custom_user_id/r.akbari", "", "", auth...); r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no profile")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.run("profiles", chromedp.Navigate(s.admin+"/profiles"), chromedp.WaitVisible(chromedp.CSS("#pf-value")),
		chromedp.SendKeys(chromedp.CSS("#pf-value"), "r.akbari"), chromedp.Submit(chromedp.CSS("#pf-value")),
		chromedp.WaitVisible(chromedp.CSS("#profile-title")))
	b.wait("the timeline", `document.querySelectorAll('#timeline-rows tr[data-id]').length >= 1`, 3*time.Second)
	if p := b.text("#profile"); !strings.Contains(p, "custom_user_id") || !strings.Contains(p, "r.akbari") || !strings.Contains(p, "firstName") || !strings.Contains(p, "in.s2s.user") {
		t.Fatalf("profile page:\n%s", p)
	}
	b.screenshot("profiles")

	// A state-changing request with the session but without its CSRF
	// token is refused, and changes nothing; with it, it goes through.
	ck := "sluice_session=" + session.Value
	if r := do(t, "POST", s.admin+"/api/v1/hooks/"+hookID+"/stop", "", "", "Cookie", ck); r.status != 403 || !strings.Contains(string(r.body), "CSRF") {
		t.Fatalf("stop without the CSRF token: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", s.admin+"/api/v1/hooks/"+hookID+"/stop", "", "", "Cookie", ck, "X-CSRF-Token", "forged"); r.status != 403 {
		t.Fatalf("stop with a wrong CSRF token: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", s.admin+"/api/v1/hooks/"+hookID, "", "", "Cookie", ck); r.status != 200 || !strings.Contains(string(r.body), `"active":true`) {
		t.Fatalf("the hook after refused stops: %d %s", r.status, r.body)
	}
	csrf := b.attr(`meta[name="csrf-token"]`, "content")
	if r := do(t, "POST", s.admin+"/api/v1/hooks/"+hookID+"/stop", "", "", "Cookie", ck, "X-CSRF-Token", csrf); r.status != 200 {
		t.Fatalf("stop with the CSRF token: %d %s", r.status, r.body)
	}
	do(t, "POST", s.admin+"/api/v1/hooks/"+hookID+"/activate", "", "", auth...)

	// The other pages, for the docs; then every page at phone width
	// without sideways scrolling.
	b.run("events", chromedp.Navigate(s.admin+"/events"), chromedp.WaitVisible(chromedp.CSS("#events-rows tr[data-id]")),
		chromedp.Click(chromedp.CSS("#events-rows tr[data-id] button.open")), chromedp.WaitVisible(chromedp.CSS("#detail pre")))
	if href := b.text("#export"); href == "" {
		t.Fatal("no export link")
	}
	b.screenshot("events")
	b.run("projects", chromedp.Navigate(s.admin+"/projects"), chromedp.WaitVisible(chromedp.CSS(`#projects-rows a[href="/projects/0"]`)))
	b.screenshot("projects")
	b.run("project", chromedp.Navigate(s.admin+"/projects/0"), chromedp.WaitVisible(chromedp.CSS("#tokens-rows tr")),
		chromedp.SendKeys(chromedp.CSS("#t-name"), "crm"), chromedp.WaitEnabled(chromedp.CSS("#token-form button[type=submit]")),
		chromedp.Click(chromedp.CSS("#token-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#token-secret code")))
	b.screenshot("project")
	b.run("overview", chromedp.Navigate(s.admin+"/"), chromedp.WaitVisible(chromedp.CSS("#chart-events_by_dialect")))
	b.wait("charts drawn", `!!document.querySelector('#chart-events_by_dialect polyline')`, 5*time.Second)
	b.screenshot("overview")

	// Keyboard: the first Tab reaches the skip link, the next ones the
	// navigation, each with a visible focus ring.
	var focus []string
	for range 4 {
		b.run("tab", chromedp.KeyEvent(kb.Tab))
		focus = append(focus, eval[string](b, `document.activeElement.textContent.trim() + '|' + getComputedStyle(document.activeElement).outlineStyle`))
	}
	if strings.Join(focus, ",") != "Skip to content|solid,sluice|solid,Overview|solid,Live|solid" {
		t.Fatalf("focus by keyboard: %v", focus)
	}

	b.run("phone", chromedp.EmulateViewport(390, 844))
	for _, pg := range []string{"/", "/live", "/events", "/projects", "/projects/0", "/hooks", "/hooks/" + hookID, "/profiles?project=0&type=custom_user_id&value=r.akbari"} {
		b.run("phone "+pg, chromedp.Navigate(s.admin+pg), chromedp.WaitReady(chromedp.CSS("main")), chromedp.Sleep(200*time.Millisecond))
		if eval[bool](b, `document.documentElement.scrollWidth > window.innerWidth + 1`) {
			t.Errorf("%s scrolls sideways at 390 px", pg)
		}
		if pg == "/hooks/"+hookID {
			b.screenshot("phone-hook")
		}
	}
	b.run("desktop", chromedp.ResetViewport())

	// Erasure, from the page: asked twice, then gone from the API too.
	b.run("erase", chromedp.Navigate(s.admin+"/profiles?project=0&type=custom_user_id&value=r.akbari"), chromedp.WaitVisible(chromedp.CSS("#profile-erase")), chromedp.Click(chromedp.CSS("#profile-erase")), chromedp.Click(chromedp.CSS("#profile-erase")), chromedp.WaitVisible(chromedp.CSS("#erased")))
	if e := b.text("#erased"); !strings.Contains(e, "1 profiles, 1 identities") {
		t.Fatalf("erasure answered:\n%s", e)
	}
	if r := do(t, "GET", s.admin+"/api/v1/projects/0/profiles/custom_user_id/r.akbari", "", "", auth...); r.status != 404 {
		t.Fatalf("the erased profile: %d %s", r.status, r.body)
	}

	// Sign-out ends the session.
	b.run("sign out", chromedp.Navigate(s.admin+"/hooks"), chromedp.WaitVisible(chromedp.CSS(".signout button")),
		chromedp.Click(chromedp.CSS(".signout button")), chromedp.WaitVisible(chromedp.CSS("#token")))
	if r := do(t, "GET", s.admin+"/api/v1/hooks", "", "", "Cookie", ck); r.status != 401 {
		t.Fatalf("the session after sign-out: %d", r.status)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	var unexpected []string
	for _, e := range b.errors {
		// The form's refused save (400) and the wrong sign-in (401) are
		// answers the pages show; Chromium notes them as failed loads.
		if strings.Contains(e, "status of 400") && strings.Contains(e, "/api/v1/hooks") || strings.Contains(e, "status of 401") && strings.Contains(e, "/signin") {
			continue
		}
		unexpected = append(unexpected, e)
	}
	if len(unexpected) > 0 {
		t.Errorf("the browser reported:\n%s", strings.Join(unexpected, "\n"))
	}
	t.Logf("browser part took %v", time.Since(start))
}
