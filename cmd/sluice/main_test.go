package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/datadir"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/pgtest"
)

// The end-to-end tests run the real binary: this test binary re-executes
// itself as `sluice` when SLUICE_E2E_CHILD is set.
func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_E2E_CHILD") == "1" {
		main()
		return
	}
	pgtest.Main(m) // stops the PostgreSQL of the tests that started one
}

const testAdminToken = "sla_e2e_admin_token_0123456789"

// server is a running sluice process.
type server struct {
	t      *testing.T
	dir    string
	cmd    *exec.Cmd
	out    *syncBuffer
	errOut *syncBuffer
	ingest string
	admin  string
	exited chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// childEnv is the environment of a child sluice: it runs as the command,
// and a race-enabled build does not sleep a second at exit (the race
// runtime's atexit_sleep_ms), which made every CLI call cost a second.
func childEnv(env ...string) []string {
	return append(append(os.Environ(), "SLUICE_E2E_CHILD=1", "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE")), env...)
}

// sluice runs the binary with args to completion.
func sluice(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = childEnv(env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// startServer runs `sluice serve` on free loopback ports with dir as its
// data directory, and waits until it listens.
func startServer(t *testing.T, dir string, args ...string) *server {
	t.Helper()
	return startServerEnv(t, dir, nil, args...)
}

// startServerEnv is startServer with env added to the server's
// environment.
func startServerEnv(t *testing.T, dir string, env []string, args ...string) *server {
	t.Helper()
	s := &server{t: t, dir: dir, out: &syncBuffer{}, errOut: &syncBuffer{}, exited: make(chan error, 1)}
	all := append([]string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", dir, "--log-format", "json"}, args...)
	s.cmd = exec.Command(os.Args[0], all...)
	s.cmd.Env = append(append(os.Environ(), "SLUICE_E2E_CHILD=1", "SLUICE_ADMIN_TOKEN="+testAdminToken), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.errOut
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() { s.kill() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		info, err := datadir.ReadRunInfo(dir)
		if err == nil && info.PID == s.cmd.Process.Pid {
			s.ingest, s.admin = info.Ingest, info.Admin
			break
		}
		select {
		case err := <-s.exited:
			t.Fatalf("server exited before listening: %v\nstderr:\n%s", err, s.errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start\nstderr:\n%s", s.errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// kill sends SIGKILL and waits for the process to go.
func (s *server) kill() {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
	}
}

// stop sends SIGTERM and returns the exit status.
func (s *server) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		return err
	case <-time.After(60 * time.Second):
		s.t.Fatal("server did not stop after SIGTERM")
		return nil
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

var client = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func do(t *testing.T, method, url, contentType, body string, hdr ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// events reads every stored event through the admin API, in log order.
func (s *server) events(t *testing.T, query string) []event.Event {
	t.Helper()
	var out []event.Event
	after := ""
	for {
		url := s.admin + "/api/v1/events?limit=10000&" + query
		if after != "" {
			url += "&after=" + after
		}
		r := do(t, "GET", url, "", "", "Authorization", "Bearer "+testAdminToken)
		if r.status != 200 {
			t.Fatalf("events: %d %s", r.status, r.body)
		}
		var page struct {
			Events []event.Event `json:"events"`
			Next   string        `json:"next"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatalf("events page: %v: %s", err, r.body)
		}
		out = append(out, page.Events...)
		if len(page.Events) < 10000 {
			return out
		}
		after = page.Next
	}
}

// The seed's curl examples, through the real server: the answers, the
// stored messages field by field, and the same messages after a restart.
func TestSeedExamplesEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("projects:\n  - id: 99\n    name: calls\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, dir, "--config", cfg)

	type exchange struct {
		name, method, path, ctype, body string
		wantProject                     uint32
		wantData                        string
	}
	cases := []exchange{
		{"GET with params", "GET", "/calltrack/call/99?param=myparamvalue", "", "", 99, `{"param":"myparamvalue"}`},
		{"name in the query", "GET", "/calltrack?name=call", "", "", 0, `{"name":"call"}`},
		{"projectId in the query", "GET", "/calltrack/call?projectId=99&param=values", "", "", 99, `{"projectId":"99","param":"values"}`},
		{"POST JSON", "POST", "/calltrack/call", "application/json", `{"key1":"value1", "key2":"value2"}`, 0, `{"key1":"value1","key2":"value2"}`},
		{"POST urlencoded", "POST", "/calltrack/call", "application/x-www-form-urlencoded", "param1=value1&param2=value26", 0, `{"param1":"value1","param2":"value26"}`},
		{"POST with name and projectId in the query", "POST", "/calltrack?name=call&projectId=99", "application/json", `{"data": "mydaa"}`, 99, `{"data":"mydaa","name":"call","projectId":"99"}`},
	}
	type sent struct {
		exchange
		id  string
		uid string
		at  time.Time
	}
	var all []sent
	for _, c := range cases {
		before := time.Now()
		r := do(t, c.method, s.ingest+c.path, c.ctype, c.body, "User-Agent", "curl/7.60.0")
		if r.status != 200 {
			t.Fatalf("%s: status %d: %s", c.name, r.status, r.body)
		}
		var ans map[string]string
		if err := json.Unmarshal(r.body, &ans); err != nil || len(ans) != 2 || ans["key"] != "in.gen.calltrack.call" {
			t.Fatalf("%s: answer %s", c.name, r.body)
		}
		if _, err := event.ParseID(ans["id"]); err != nil {
			t.Fatalf("%s: id %q", c.name, ans["id"])
		}
		var uid string
		for _, ck := range (&http.Response{Header: r.header}).Cookies() {
			if ck.Name == "uid" {
				uid = ck.Value
			}
		}
		if uid == "" {
			t.Fatalf("%s: no uid cookie in %v", c.name, r.header)
		}
		all = append(all, sent{c, ans["id"], uid, before})
	}

	check := func(stage string) {
		got := s.events(t, "")
		if len(got) != len(all) {
			t.Fatalf("%s: %d events stored, want %d", stage, len(got), len(all))
		}
		for i, e := range got {
			w := all[i]
			if e.ID.String() != w.id || e.Key != "in.gen.calltrack.call" || e.Channel != "http" || e.Service != "calltrack" ||
				e.Name != "call" || e.ProjectID != w.wantProject || e.UID != w.uid || e.Dialect != "webhook" {
				t.Fatalf("%s: %s: stored %+v", stage, w.name, e)
			}
			if e.TD.IP != "127.0.0.1" || e.TD.UA != "curl/7.60.0" || e.TD.Ref != "" || !strings.HasPrefix(e.TD.Host, "127.0.0.1:") {
				t.Fatalf("%s: %s: td %+v", stage, w.name, e.TD)
			}
			if string(e.Data) != w.wantData {
				t.Fatalf("%s: %s: data %s, want %s", stage, w.name, e.Data, w.wantData)
			}
			if e.Time != e.ReceivedAt || e.Time < w.at.UnixMilli() || e.Time > w.at.Add(10*time.Second).UnixMilli() {
				t.Fatalf("%s: %s: time %d receivedAt %d sent at %d", stage, w.name, e.Time, e.ReceivedAt, w.at.UnixMilli())
			}
			// The message has exactly the seed's fields, plus ours.
			raw, _ := json.Marshal(&e)
			var fields map[string]json.RawMessage
			json.Unmarshal(raw, &fields)
			for _, k := range []string{"key", "channel", "service", "name", "projectId", "uid", "td", "data", "id", "time", "dialect", "receivedAt"} {
				if _, ok := fields[k]; !ok {
					t.Fatalf("%s: field %s missing from %s", stage, k, raw)
				}
			}
			if len(fields) != 12 {
				t.Fatalf("%s: unexpected fields in %s", stage, raw)
			}
		}
	}
	check("before restart")
	if err := s.stop(); err != nil {
		t.Fatalf("SIGTERM: exit %v\n%s", err, s.errOut.String())
	}
	s = startServer(t, dir, "--config", cfg)
	check("after restart")
}

// A SIGKILL in the middle of a load must not lose or duplicate any event
// that was answered 2xx.
func TestKill9UnderLoadLosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	acked := map[int]string{} // seq → id
	var mu sync.Mutex
	seq := 0
	for round := 0; round < 3; round++ {
		s := startServer(t, dir)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		roundAcks := 0
		for w := 0; w < 24; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tr := &http.Transport{}
				defer tr.CloseIdleConnections()
				c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
				for ctx.Err() == nil {
					mu.Lock()
					seq++
					n := seq
					mu.Unlock()
					body := fmt.Sprintf(`{"seq":%d,"pad":"%s"}`, n, strings.Repeat("x", 300))
					req, _ := http.NewRequestWithContext(ctx, "POST", s.ingest+"/crash/event/0", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					resp, err := c.Do(req)
					if err != nil {
						continue // the server is gone: not acknowledged
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						continue
					}
					var ans struct{ ID string }
					if json.Unmarshal(b, &ans) != nil || ans.ID == "" {
						continue // a torn answer is no acknowledgement
					}
					mu.Lock()
					acked[n] = ans.ID
					roundAcks++
					mu.Unlock()
				}
			}()
		}
		// Let the load run, then kill the server in the middle of it.
		time.Sleep(time.Duration(600+round*400) * time.Millisecond)
		s.kill()
		time.Sleep(100 * time.Millisecond)
		cancel()
		wg.Wait()
		if roundAcks == 0 {
			t.Fatalf("round %d: no request was acknowledged\n%s", round, s.errOut.String())
		}
		t.Logf("round %d: %d acknowledged before SIGKILL", round, roundAcks)
	}

	s := startServer(t, dir)
	stored := map[int][]string{}
	for _, e := range s.events(t, "key=in.gen.crash.event") {
		var d struct{ Seq int }
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		stored[d.Seq] = append(stored[d.Seq], e.ID.String())
	}
	for n, ids := range stored {
		if len(ids) != 1 {
			t.Fatalf("seq %d stored %d times: %v", n, len(ids), ids)
		}
	}
	for n, id := range acked {
		ids, ok := stored[n]
		if !ok {
			t.Fatalf("seq %d acknowledged with id %s is lost (%d acknowledged, %d stored)", n, id, len(acked), len(stored))
		}
		if ids[0] != id {
			t.Fatalf("seq %d acknowledged as %s, stored as %s", n, id, ids[0])
		}
	}
	t.Logf("%d acknowledged, %d stored (the rest were in flight at the kill)", len(acked), len(stored))
}

// SIGTERM stops accepting, finishes in-flight requests and exits 0; every
// acknowledged event is there after a restart.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	var acked sync.Map
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", s.ingest+"/term/event/0", strings.NewReader(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)))
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var ans struct{ ID string }
				if resp.StatusCode == 200 && json.Unmarshal(b, &ans) == nil {
					acked.Store(ans.ID, true)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	err := s.stop()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, s.errOut.String())
	}
	if !strings.Contains(s.errOut.String(), "shutting down") || !strings.Contains(s.errOut.String(), `"msg":"stopped"`) {
		t.Fatalf("shutdown not logged:\n%s", s.errOut.String())
	}
	if _, err := os.Stat(filepath.Join(dir, datadir.RunFile)); !os.IsNotExist(err) {
		t.Fatal("run.json left behind after a clean stop")
	}
	s = startServer(t, dir)
	ids := map[string]bool{}
	for _, e := range s.events(t, "") {
		ids[e.ID.String()] = true
	}
	n := 0
	acked.Range(func(k, _ any) bool {
		n++
		if !ids[k.(string)] {
			t.Errorf("acknowledged %s missing after restart", k)
		}
		return true
	})
	if n == 0 {
		t.Fatal("nothing was acknowledged")
	}
}

// Signals that keep coming while the process stops (timeout(1) sends its
// SIGTERM to the command and again to its process group; an impatient
// Ctrl-C) never kill it: it exits with its own status. The default action
// restored as Main returned killed a cleanly stopped `events tail
// --follow` in the docs harness (status 143).
func TestSignalsWhileStoppingDoNotKill(t *testing.T) {
	s := startServer(t, t.TempDir())
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			time.Sleep(50 * time.Microsecond)
		}
	}()
	var err error
	select {
	case err = <-s.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("server did not stop")
	}
	close(done)
	if err != nil {
		t.Fatalf("exit while signalled: %v\n%s", err, s.errOut.String())
	}
}

// The banner tells where things listen and gives a curl that works.
func TestStartBannerAndFirstCurl(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	// The banner follows the listeners, which answer first: wait for it.
	out := s.out.String()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(out, "curl '") && time.Now().Before(deadline); out = s.out.String() {
		time.Sleep(10 * time.Millisecond)
	}
	for _, want := range []string{"sluice", "ingest  " + s.ingest, "admin   " + s.admin, "curl '" + s.ingest + "/calltrack/call/0?param=myparamvalue'"} {
		if !strings.Contains(out, want) {
			t.Fatalf("banner lacks %q:\n%s", want, out)
		}
	}
	r := do(t, "GET", s.ingest+"/calltrack/call/0?param=myparamvalue", "", "")
	if r.status != 200 {
		t.Fatalf("banner curl: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := do(t, "GET", s.admin+p, "", ""); r.status != 200 {
			t.Fatalf("%s: %d", p, r.status)
		}
	}
	metrics := string(do(t, "GET", s.admin+"/metrics", "", "").body)
	for _, m := range []string{
		`sluice_ingest_requests_total{dialect="webhook",route="webhook",status="200"} 1`,
		`sluice_ingest_events_total{dialect="webhook",project="0",result="stored"} 1`,
		"sluice_log_commit_batch_events_count",
		"sluice_log_commit_duration_seconds_bucket",
		"sluice_ingest_request_duration_seconds_bucket",
		"sluice_log_events_stored_total 1",
		"sluice_build_info",
	} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
}

// Without SLUICE_ADMIN_TOKEN the first start makes a token, prints it once
// and keeps only its hash; the API refuses calls without it.
func TestGeneratedAdminToken(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", dir)
	cmd.Env = append(os.Environ(), "SLUICE_E2E_CHILD=1")
	cmd.Env = append(cmd.Env, "SLUICE_ADMIN_TOKEN=")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var info datadir.RunInfo
	for i := 0; i < 3000; i++ {
		var err error
		if info, err = datadir.ReadRunInfo(dir); err == nil && info.PID == cmd.Process.Pid {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The banner is printed just after the run info is written.
	var token string
	for i := 0; i < 500 && token == ""; i++ {
		for _, f := range strings.Fields(out.String()) {
			if v, ok := strings.CutPrefix(f, "SLUICE_ADMIN_TOKEN="); ok {
				token = v
			}
		}
		if token == "" {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !strings.HasPrefix(token, "sla_") {
		t.Fatalf("no generated token in:\n%s", out.String())
	}
	if r := do(t, "GET", info.Admin+"/api/v1/projects", "", ""); r.status != 401 {
		t.Fatalf("no token: %d", r.status)
	}
	if r := do(t, "GET", info.Admin+"/api/v1/projects", "", "", "Authorization", "Bearer "+token); r.status != 200 {
		t.Fatalf("generated token: %d %s", r.status, r.body)
	}
	state, _ := os.ReadFile(filepath.Join(dir, datadir.StateFile))
	if bytes.Contains(state, []byte(token)) {
		t.Fatal("the admin token is stored in clear")
	}
}

// The CLI works directly on the data directory when no server runs, and
// through the admin API when one does.
func TestCLIProjectsTokensAndTail(t *testing.T) {
	dir := t.TempDir()
	env := []string{"SLUICE_DATA_DIR=" + dir, "SLUICE_ADMIN_TOKEN="}
	out, errOut, code := sluice(t, env, "project", "create", "--name", "offline-shop", "--webhook-auth", "token")
	if code != 0 || !strings.Contains(out, "project 1 (offline-shop) created") {
		t.Fatalf("offline create: %d %s %s", code, out, errOut)
	}
	out, _, code = sluice(t, env, "token", "create", "--project", "1", "--name", "crm", "--secret", "abc123")
	if code != 0 || !strings.Contains(out, "abc123") {
		t.Fatalf("offline token: %d %s", code, out)
	}

	s := startServer(t, dir)
	env = []string{"SLUICE_DATA_DIR=" + dir, "SLUICE_ADMIN_TOKEN=" + testAdminToken}
	out, errOut, code = sluice(t, env, "project", "list")
	if code != 0 || !strings.Contains(out, "offline-shop") || !strings.Contains(out, "default") {
		t.Fatalf("online list: %d %s %s", code, out, errOut)
	}
	// The admin token is reset offline only: with a server running, it
	// says so, whatever the token set.
	for _, tok := range []string{"", testAdminToken, "wrong"} {
		if _, errOut, code := sluice(t, []string{"SLUICE_DATA_DIR=" + dir, "SLUICE_ADMIN_TOKEN=" + tok}, "admin-token", "reset"); code != 1 ||
			errOut != "sluice admin-token: a server is running on "+dir+": stop it first (the admin token can only be reset offline)\n" {
			t.Fatalf("reset with a server running (token %q): exit %d %q", tok, code, errOut)
		}
	}
	// The server's refusal, said once.
	if _, errOut, code := sluice(t, env, "token", "create", "--project", "1", "--name", "y", "--secret", "short"); code != 1 ||
		errOut != "sluice token: invalid: secret: shorter than 6 characters (400)\n" {
		t.Fatalf("refused token: exit %d %q", code, errOut)
	}
	out, _, code = sluice(t, env, "token", "create", "--project", "1", "--name", "online", "--json")
	var ct struct {
		Token  struct{ ID string }
		Secret string
	}
	if code != 0 || json.Unmarshal([]byte(out), &ct) != nil || !strings.HasPrefix(ct.Secret, "sl_") {
		t.Fatalf("online token create: %d %s", code, out)
	}
	// Project 1 needs a token: the imported one and the new one work.
	for _, tok := range []string{"abc123", ct.Secret} {
		if r := do(t, "GET", s.ingest+"/crm/lead/1?token="+tok, "", ""); r.status != 200 {
			t.Fatalf("token %s: %d %s", tok, r.status, r.body)
		}
	}
	if r := do(t, "GET", s.ingest+"/crm/lead/1", "", ""); r.status != 401 {
		t.Fatalf("no token: %d", r.status)
	}
	out, _, code = sluice(t, env, "token", "revoke", "--project", "1", ct.Token.ID)
	if code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %d %s", code, out)
	}
	if r := do(t, "GET", s.ingest+"/crm/lead/1?token="+ct.Secret, "", ""); r.status != 401 {
		t.Fatalf("revoked token: %d", r.status)
	}
	out, _, code = sluice(t, env, "token", "list", "--project", "1")
	if code != 0 || strings.Count(out, "tok_") != 2 || strings.Contains(out, ct.Secret) {
		t.Fatalf("token list: %s", out)
	}
	// events tail prints NDJSON, filtered.
	out, _, code = sluice(t, env, "events", "tail", "--project", "1", "--key", "in.gen.crm.*")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("tail: %d %q", code, out)
	}
	for _, l := range lines {
		var e event.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.ProjectID != 1 || e.Key != "in.gen.crm.lead" {
			t.Fatalf("tail line %q", l)
		}
		if strings.Contains(string(e.Data), "token") {
			t.Fatalf("the token was stored as data: %s", e.Data)
		}
	}
	// --follow prints what arrives after it starts.
	cmd := exec.Command(os.Args[0], "events", "tail", "--follow", "--key", "in.gen.follow.*")
	cmd.Env = append(append(os.Environ(), "SLUICE_E2E_CHILD=1"), env...)
	fo := &syncBuffer{}
	cmd.Stdout = fo
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	time.Sleep(500 * time.Millisecond)
	do(t, "GET", s.ingest+"/follow/me/0?n=1", "", "")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(fo.String(), `"key":"in.gen.follow.me"`) {
		if time.Now().After(deadline) {
			t.Fatalf("follow printed %q", fo.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Without the admin token, a running server cannot be managed.
	_, errOut, code = sluice(t, []string{"SLUICE_DATA_DIR=" + dir, "SLUICE_ADMIN_TOKEN="}, "project", "list")
	if code == 0 || !strings.Contains(errOut, "SLUICE_ADMIN_TOKEN") {
		t.Fatalf("no token: %d %s", code, errOut)
	}
}

func TestUnknownConfigKeyIsNamed(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(cfg, []byte("listen: \":0\"\nbody_limt: 1MiB\n"), 0o600)
	_, errOut, code := sluice(t, nil, "serve", "--config", cfg, "--data-dir", t.TempDir())
	if code == 0 || !strings.Contains(errOut, "body_limt") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestHashCommand(t *testing.T) {
	out, _, code := sluice(t, nil, "hash", "email", "Test@TEST.com")
	if code != 0 || strings.TrimSpace(out) != "f660ab912ec121d1b1e928a0bb4bc61b15f5ad44d5efdc4e1c92a25e99b8e44a" {
		t.Fatalf("email: %d %q", code, out)
	}
	out, _, code = sluice(t, nil, "hash", "phone", "--region", "IR", "--normalized", "09121122333")
	lines := strings.Fields(out)
	if code != 0 || len(lines) != 2 || lines[0] != "989121122333" || len(lines[1]) != 64 {
		t.Fatalf("phone: %d %q", code, out)
	}
	_, errOut, code := sluice(t, nil, "hash", "phone", "09121122333")
	if code == 0 || !strings.Contains(errOut, "country code") {
		t.Fatalf("phone without region: %d %q", code, errOut)
	}
}

// A first start that fails before its banner (the ingest port is taken)
// does not use up the admin token it generated: the next start generates
// one and shows it.
func TestFailedFirstStartKeepsTheTokenToShow(t *testing.T) {
	dir := t.TempDir()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	env := childEnv("SLUICE_ADMIN_TOKEN=")
	out, errOut, code := sluice(t, env, "serve", "--listen", taken.Addr().String(), "--admin-listen", "127.0.0.1:0", "--data-dir", dir)
	if code == 0 || !strings.Contains(errOut, "address already in use") || strings.Contains(out, "SLUICE_ADMIN_TOKEN=") {
		t.Fatalf("first start: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	cmd := exec.Command(os.Args[0], "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", dir)
	cmd.Env = env
	buf := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(buf.String(), "export SLUICE_ADMIN_TOKEN=sla_"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the second start showed no admin token:\n%s", buf.String())
		}
	}
}
