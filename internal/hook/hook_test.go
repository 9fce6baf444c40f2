package hook

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
	"github.com/sluicehq/sluice/internal/project"
	"github.com/sluicehq/sluice/internal/sink/httpsink"
)

type fixture struct {
	t        testing.TB
	log      *sqlite.Log
	ps       *project.Store
	m        *Manager
	dir      string
	profiles Profiles // nil: no profiles
	// hooksPath is hooks.db (default: in dir); logger the manager's;
	// store, when set, the hooks' store instead of hooks.db.
	hooksPath string
	logger    *slog.Logger
	store     Store
}

func newFixture(t testing.TB, allowLoopback bool) *fixture {
	t.Helper()
	return newFixtureWith(t, allowLoopback, func(*fixture) {})
}

// newFixtureWith is newFixture with set run on the fixture before the
// manager opens.
func newFixtureWith(t testing.TB, allowLoopback bool, set func(*fixture)) *fixture {
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
	id := uint32(7)
	if _, err := ps.Create(context.Background(), &id, "shop", project.Settings{}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, log: l, ps: ps, dir: dir}
	set(f)
	f.open(allowLoopback)
	t.Cleanup(func() { f.m.Close(); l.Close(); ps.Close() })
	return f
}

func (f *fixture) open(allowLoopback bool) {
	cfg := Config{Path: filepath.Join(f.dir, "hooks.db"), KeyPath: filepath.Join(f.dir, "hooks.key"), Destinations: testDestinations()}
	if f.hooksPath != "" {
		cfg.Path = f.hooksPath
	}
	cfg.Store = f.store
	if allowLoopback {
		cfg.AllowNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	var profiles Profiles
	if f.profiles != nil {
		profiles = f.profiles
	}
	m, err := Open(cfg, f.log, f.ps, profiles, nil, f.logger)
	if err != nil {
		f.t.Fatal(err)
	}
	m.Start(context.Background())
	f.m = m
}

// appendEvents stores n events with key and data {"amount": i}.
func (f *fixture) appendEvents(key string, project uint32, n int) []event.ID {
	f.t.Helper()
	var evs []*event.Event
	for i := 0; i < n; i++ {
		evs = append(evs, &event.Event{Key: key, Channel: event.ChannelHTTP, Service: strings.Split(key, ".")[2], Name: "call", ProjectID: project,
			Data: json.RawMessage(`{"amount":` + itoa(i) + `,"city":"Moscow"}`), Time: time.Now().UnixMilli(), Dialect: "webhook",
			ReceivedAt: time.Now().UnixMilli(), Identities: []event.Identity{{Type: "user_id", Value: "u-" + itoa(i)}}})
	}
	res, err := f.log.Append(context.Background(), evs)
	if err != nil {
		f.t.Fatal(err)
	}
	var ids []event.ID
	for _, r := range res {
		ids = append(ids, r.ID)
	}
	return ids
}

func itoa(i int) string { return strconv.Itoa(i) }
func jsonInt(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// receiver is a real HTTP target on loopback that records every request
// and answers as told.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []received
	answer func(n int, r *http.Request) (int, string, map[string]string)
}

type received struct {
	at     time.Time
	header http.Header
	body   []byte
	msgs   []map[string]any
}

func newReceiver(t *testing.T, answer func(n int, r *http.Request) (int, string, map[string]string)) *receiver {
	rc := &receiver{answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var msgs []map[string]any
		json.Unmarshal(body, &msgs)
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, received{at: time.Now(), header: r.Header.Clone(), body: body, msgs: msgs})
		n := len(rc.reqs)
		answer := rc.answer
		rc.mu.Unlock()
		status, resp, hdr := 200, `{"ok":true}`, map[string]string(nil)
		if answer != nil {
			status, resp, hdr = answer(n, r)
		}
		for k, v := range hdr {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		io.WriteString(w, resp)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// setAnswer changes how the receiver answers from the next request on.
func (rc *receiver) setAnswer(answer func(n int, r *http.Request) (int, string, map[string]string)) {
	rc.mu.Lock()
	rc.answer = answer
	rc.mu.Unlock()
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func intp(n int) *int { return &n }

func httpHook(url string) Hook {
	return Hook{Name: "crm", Active: true, Events: []string{"in.gen.calltrack.*"}, Type: "http",
		Settings: &httpsink.Settings{URL: url, Timeout: Duration(2 * time.Second)}, MaxBatchSize: 3, BatchTimeout: Duration(50 * time.Millisecond),
		RetryTimes: intp(2), RetryPeriod: Duration(20 * time.Millisecond)}
}

func TestDeliveryBatchesSignsAndRendersCustomData(t *testing.T) {
	f := newFixture(t, true)
	rc := newReceiver(t, nil)
	pid := uint32(7)
	h := httpHook(rc.URL)
	h.ProjectID = &pid
	h.Filter = `event.data.amount >= 1 && event.service == "calltrack"`
	httpOf(&h).Headers = map[string]string{"X-Team": "crm"}
	httpOf(&h).Auth = &httpsink.Auth{Type: "bearer", Token: "target-token"}
	h.CustomData = map[string]string{
		"id": "{{uuid}}", "date": "{{event_date}}", "ymd": "{{event_date_ymd}}", "rfc": "{{event_date_rfc3339}}",
		"unix": "{{event_date_unix}}", "nano": "{{event_date_unixnano}}", "project": "{{project_name}} #{{project_id}}",
		"key": "{{event.key}}", "svc": "{{event.service}}/{{event.name}}", "amount": "{{event.data.amount}}", "missing": "[{{event.data.nope.deeper}}]",
		"fixed": "Black Friday", "prof": "{{profile.name}}",
	}
	created, err := f.m.Create(context.Background(), h, Start{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.SigningSecret, "whsec_") {
		t.Fatalf("secret %q", created.SigningSecret)
	}
	if got, _ := f.m.Get(created.ID); got.SigningSecret != "" || httpOf(&got).Auth.Token != "" {
		t.Fatalf("secret returned after creation: %+v", got)
	}
	f.appendEvents("in.gen.other.call", 7, 2)     // another key
	f.appendEvents("in.gen.calltrack.call", 8, 2) // another project
	ids := f.appendEvents("in.gen.calltrack.call", 7, 8)
	// amount 0 is filtered out: 7 events, batches of 3, 3, 1.
	waitFor(t, "7 messages", func() bool {
		n := 0
		for _, r := range rc.requests() {
			n += len(r.msgs)
		}
		return n == 7
	})
	reqs := rc.requests()
	if len(reqs) != 3 || len(reqs[0].msgs) != 3 || len(reqs[1].msgs) != 3 || len(reqs[2].msgs) != 1 {
		t.Fatalf("batches %d", len(reqs))
	}
	wh, err := standardwebhooks.NewWebhook(created.SigningSecret)
	if err != nil {
		t.Fatal(err)
	}
	seenBatch := map[string]bool{}
	k := 1
	for _, r := range reqs {
		if err := wh.Verify(r.body, r.header); err != nil {
			t.Fatalf("signature: %v", err)
		}
		if id := r.header.Get("webhook-id"); !strings.HasPrefix(id, "msg_") || seenBatch[id] {
			t.Fatalf("webhook-id %q", id)
		} else {
			seenBatch[id] = true
		}
		if r.header.Get("Authorization") != "Bearer target-token" || r.header.Get("X-Team") != "crm" || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("headers %v", r.header)
		}
		for _, m := range r.msgs {
			if m["id"] != ids[k].String() || m["key"] != "in.gen.calltrack.call" || m["is_test"] != false || m["sends_trying_num"] != nil {
				t.Fatalf("message %d: %v", k, m)
			}
			cd := m["custom_data"].(map[string]any)
			at := ids[k].Time().UTC()
			evTime := time.UnixMilli(int64(m["time"].(float64))).UTC()
			_ = at
			want := map[string]string{
				"date": evTime.Format(EventDateLayout), "ymd": evTime.Format("2006-01-02"), "rfc": evTime.Format(time.RFC3339),
				"unix": jsonInt(int(evTime.Unix())), "nano": jsonInt(int(evTime.UnixNano())), "project": "shop #7",
				"key": "in.gen.calltrack.call", "svc": "calltrack/call", "amount": jsonInt(k), "missing": "[]", "fixed": "Black Friday", "prof": "",
			}
			for name, v := range want {
				if cd[name] != v {
					t.Errorf("custom_data.%s = %q, want %q", name, cd[name], v)
				}
			}
			if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(cd["id"].(string)) {
				t.Errorf("uuid %v", cd["id"])
			}
			k++
		}
	}
	waitFor(t, "cursor", func() bool { h, _ := f.m.Get(created.ID); return h.Cursor == ids[len(ids)-1] })
}

func TestRetriesFlappingThenSuccess(t *testing.T) {
	f := newFixture(t, true)
	rc := newReceiver(t, func(n int, r *http.Request) (int, string, map[string]string) {
		if n <= 2 {
			return 500, "flap", nil
		}
		return 200, "ok", nil
	})
	h, err := f.m.Create(context.Background(), httpHook(rc.URL), Start{})
	if err != nil {
		t.Fatal(err)
	}
	f.appendEvents("in.gen.calltrack.call", 7, 2)
	waitFor(t, "3 attempts", func() bool { return len(rc.requests()) == 3 })
	reqs := rc.requests()
	for i, r := range reqs {
		if r.header.Get("webhook-id") != reqs[0].header.Get("webhook-id") {
			t.Fatal("batch id changed across retries")
		}
		try, has := r.msgs[0]["sends_trying_num"]
		if (i == 0 && has) || (i > 0 && try != float64(i)) {
			t.Fatalf("attempt %d: sends_trying_num %v", i+1, try)
		}
	}
	waitFor(t, "attempt log", func() bool { d, _ := f.m.Deliveries(context.Background(), h.ID, 10); return len(d) == 3 })
	d, _ := f.m.Deliveries(context.Background(), h.ID, 10)
	if d[0].Status != 200 || d[0].Error != "" || d[1].Status != 500 || d[1].ErrorClass != "status" || d[1].NextAttemptAt == nil ||
		d[2].Response != "flap" || d[2].Attempt != 1 || d[0].Attempt != 3 {
		t.Fatalf("attempt log %+v", d)
	}
	if dls, _ := f.m.DeadLetters(context.Background(), h.ID, DeadLetterQuery{}); len(dls) != 0 {
		t.Fatalf("dead letters %+v", dls)
	}
}

func TestTimeoutsParkDeadLettersAndStopTheHook(t *testing.T) {
	f := newFixture(t, true)
	var slow atomic.Int32 // answers still sleeping
	rc := newReceiver(t, func(n int, r *http.Request) (int, string, map[string]string) {
		slow.Add(1)
		defer slow.Add(-1)
		time.Sleep(300 * time.Millisecond)
		return 200, "late", nil
	})
	hk := httpHook(rc.URL)
	httpOf(&hk).Timeout = Duration(100 * time.Millisecond)
	hk.RetryTimes = intp(1)
	hk.MaxBatchSize = 1
	hk.StopAfterDeadLetters = 2
	h, err := f.m.Create(context.Background(), hk, Start{})
	if err != nil {
		t.Fatal(err)
	}
	f.appendEvents("in.gen.calltrack.call", 7, 3)
	waitFor(t, "the hook to stop", func() bool { g, _ := f.m.Get(h.ID); return !g.Active })
	g, _ := f.m.Get(h.ID)
	if !strings.Contains(g.StoppedReason, "2 consecutive dead letters") || !strings.Contains(g.StoppedReason, "timeout") {
		t.Fatalf("reason %q", g.StoppedReason)
	}
	dls, _ := f.m.DeadLetters(context.Background(), h.ID, DeadLetterQuery{})
	if len(dls) != 2 || dls[0].Attempts != 2 || !strings.HasPrefix(dls[0].LastError, "timeout") || dls[0].Events != 1 {
		t.Fatalf("dead letters %+v", dls)
	}
	d, _ := f.m.Deliveries(context.Background(), h.ID, 10)
	if len(d) != 4 || d[0].ErrorClass != "timeout" {
		t.Fatalf("attempts %+v", d)
	}
	waitFor(t, "the late answers", func() bool { return len(rc.requests()) == 4 && slow.Load() == 0 })
	// Replay one, then the rest, against a target that now answers.
	rc.setAnswer(nil)
	res, err := f.m.Replay(context.Background(), h.ID, DeadLetterQuery{ID: dls[0].ID})
	if err != nil || len(res) != 1 || !res[0].Delivered || res[0].BatchID != dls[0].BatchID {
		t.Fatalf("replay one: %+v %v", res, err)
	}
	last := rc.requests()[len(rc.requests())-1]
	if last.header.Get("webhook-id") != dls[0].BatchID {
		t.Fatal("replay changed the batch id")
	}
	if res, _ := f.m.Replay(context.Background(), h.ID, DeadLetterQuery{}); len(res) != 1 || !res[0].Delivered {
		t.Fatalf("replay all: %+v", res)
	}
	if left, _ := f.m.DeadLetters(context.Background(), h.ID, DeadLetterQuery{}); len(left) != 0 {
		t.Fatalf("left %+v", left)
	}
	// Activating resumes at its place: the third event arrives.
	if _, err := f.m.Activate(context.Background(), h.ID, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the third event", func() bool {
		for _, r := range rc.requests() {
			if r.header.Get("webhook-id") != dls[0].BatchID && r.header.Get("webhook-id") != dls[1].BatchID && len(r.msgs) == 1 && r.msgs[0]["data"].(map[string]any)["amount"] == float64(2) {
				return true
			}
		}
		return false
	})
}

func TestRetryAfterIsHonouredAndClamped(t *testing.T) {
	f := newFixture(t, true)
	rc := newReceiver(t, func(n int, r *http.Request) (int, string, map[string]string) {
		if n == 1 {
			return 429, "slow down", map[string]string{"Retry-After": "30"}
		}
		return 200, "", nil
	})
	hk := httpHook(rc.URL)
	hk.RetryPeriod = Duration(200 * time.Millisecond)
	if _, err := f.m.Create(context.Background(), hk, Start{}); err != nil {
		t.Fatal(err)
	}
	f.appendEvents("in.gen.calltrack.call", 7, 1)
	waitFor(t, "two attempts", func() bool { return len(rc.requests()) == 2 })
	reqs := rc.requests()
	// Retry-After 30 s, clamped to two periods: 400 ms.
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 380*time.Millisecond || gap > 2*time.Second {
		t.Fatalf("gap %v", gap)
	}
}

func TestGoneStopsTheHookAndTheBatchWaits(t *testing.T) {
	f := newFixture(t, true)
	rc := newReceiver(t, func(n int, r *http.Request) (int, string, map[string]string) {
		if n == 1 {
			return 410, "gone", nil
		}
		return 200, "", nil
	})
	h, _ := f.m.Create(context.Background(), httpHook(rc.URL), Start{})
	ids := f.appendEvents("in.gen.calltrack.call", 7, 1)
	waitFor(t, "stop", func() bool { g, _ := f.m.Get(h.ID); return !g.Active })
	g, _ := f.m.Get(h.ID)
	if g.StoppedReason != "the target answered 410 Gone: activate the hook again once it takes deliveries" || g.Cursor >= ids[0] {
		t.Fatalf("%+v", g)
	}
	if dls, _ := f.m.DeadLetters(context.Background(), h.ID, DeadLetterQuery{}); len(dls) != 0 {
		t.Fatal("a 410 parked the batch")
	}
	if _, err := f.m.Activate(context.Background(), h.ID, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "redelivery", func() bool { return len(rc.requests()) == 2 })
	r := rc.requests()
	if r[1].header.Get("webhook-id") != r[0].header.Get("webhook-id") {
		t.Fatal("the batch changed id")
	}
}

func TestSuccessRegexAndRedirectsFail(t *testing.T) {
	f := newFixture(t, true)
	rc := newReceiver(t, func(n int, r *http.Request) (int, string, map[string]string) {
		switch n {
		case 1:
			return 200, `{"status":"error"}`, nil
		case 2:
			return 302, "", map[string]string{"Location": "http://example.com/"}
		}
		return 200, `{"status":"ok"}`, nil
	})
	hk := httpHook(rc.URL)
	httpOf(&hk).SuccessRegex = `"status":"ok"`
	h, _ := f.m.Create(context.Background(), hk, Start{})
	f.appendEvents("in.gen.calltrack.call", 7, 1)
	waitFor(t, "three attempts", func() bool { d, _ := f.m.Deliveries(context.Background(), h.ID, 10); return len(d) == 3 })
	d, _ := f.m.Deliveries(context.Background(), h.ID, 10)
	if d[2].ErrorClass != "regex" || d[1].ErrorClass != "status" || d[1].Status != 302 || d[0].Error != "" {
		t.Fatalf("%+v", d)
	}
}

func TestStopActivateAndStartFromNow(t *testing.T) {
	f := newFixture(t, true)
	rc := newReceiver(t, nil)
	h, _ := f.m.Create(context.Background(), httpHook(rc.URL), Start{})
	if _, err := f.m.Stop(context.Background(), h.ID); err != nil {
		t.Fatal(err)
	}
	f.appendEvents("in.gen.calltrack.call", 7, 2)
	time.Sleep(150 * time.Millisecond)
	if len(rc.requests()) != 0 {
		t.Fatal("a stopped hook delivered")
	}
	// Resume from its place: both arrive.
	f.m.Activate(context.Background(), h.ID, nil)
	waitFor(t, "2", func() bool { return len(rc.requests()) == 1 && len(rc.requests()[0].msgs) == 2 })
	f.m.Stop(context.Background(), h.ID)
	f.appendEvents("in.gen.calltrack.call", 7, 2)
	// From now: those two are skipped, a later one arrives.
	f.m.Activate(context.Background(), h.ID, &Start{})
	f.appendEvents("in.gen.calltrack.call", 7, 1)
	waitFor(t, "the later one", func() bool { return len(rc.requests()) == 2 })
	time.Sleep(150 * time.Millisecond)
	if r := rc.requests(); len(r) != 2 || len(r[1].msgs) != 1 {
		t.Fatalf("%d requests", len(r))
	}
	// A backfill from the start.
	zero := time.UnixMilli(1)
	c, _ := f.m.Create(context.Background(), httpHook(rc.URL), Start{From: &zero})
	waitFor(t, "backfill", func() bool { g, _ := f.m.Get(c.ID); return g.Cursor == f.log.Head() })
}

func TestPreTest(t *testing.T) {
	f := newFixture(t, true)
	rc := newReceiver(t, func(n int, r *http.Request) (int, string, map[string]string) {
		return 202, strings.Repeat("x", 3000), nil
	})
	hk := httpHook(rc.URL)
	hk.Active = false
	hk.CustomData = map[string]string{"src": "{{event.service}}"}
	h, _ := f.m.Create(context.Background(), hk, Start{})
	// No matching event yet: a synthetic one.
	res, err := f.m.Test(context.Background(), h.ID, nil)
	if err != nil || res.Event != "synthetic" || !res.Delivered || res.Status != 202 || len(res.Response) != 1024 ||
		!strings.Contains(res.Request.Body, `"is_test":true`) || res.Request.Header["Webhook-Signature"] == nil {
		t.Fatalf("%+v %v", res, err)
	}
	f.appendEvents("in.gen.calltrack.call", 7, 3)
	res, _ = f.m.Test(context.Background(), h.ID, nil)
	if res.Event != "stored" || !strings.Contains(res.Request.Body, `"amount":2`) || !strings.Contains(res.Request.Body, `"custom_data":{"src":"calltrack"}`) {
		t.Fatalf("%+v", res)
	}
	sample := `{"key":"in.gen.crm.lead","channel":"http","service":"crm","name":"lead","projectId":7,"td":{},"data":{"x":1},"id":"1","time":1,"dialect":"webhook","receivedAt":1}`
	res, _ = f.m.Test(context.Background(), h.ID, json.RawMessage(sample))
	if res.Event != "sample" || !strings.Contains(res.Request.Body, `"custom_data":{"src":"crm"}`) {
		t.Fatalf("%+v", res)
	}
	g, _ := f.m.Get(h.ID)
	if g.Active || g.Cursor != h.Cursor || len(rc.requests()) != 3 {
		t.Fatalf("the test moved the hook: %+v", g)
	}
}

func TestSSRFGuardRefusesLoopbackUnlessAllowed(t *testing.T) {
	f := newFixture(t, false)
	rc := newReceiver(t, nil)
	hk := httpHook(rc.URL)
	hk.RetryTimes = intp(0)
	hk.StopAfterDeadLetters = 1
	h, _ := f.m.Create(context.Background(), hk, Start{})
	f.appendEvents("in.gen.calltrack.call", 7, 1)
	waitFor(t, "stop", func() bool { g, _ := f.m.Get(h.ID); return !g.Active })
	d, _ := f.m.Deliveries(context.Background(), h.ID, 10)
	if len(d) != 1 || d[0].ErrorClass != "blocked" || len(rc.requests()) != 0 {
		t.Fatalf("%+v", d)
	}
	for _, ip := range []string{"127.0.0.1", "10.1.2.3", "169.254.169.254", "192.168.1.1", "::1", "fd00:ec2::254", "100.64.0.1"} {
		if (&Manager{}).guardFor(nil).Check(netip.MustParseAddr(ip)) == nil {
			t.Errorf("%s allowed", ip)
		}
	}
	if err := (&Manager{}).guardFor(nil).Check(netip.MustParseAddr("93.184.216.34")); err != nil {
		t.Error(err)
	}
}

// An IPv6 address that carries a refused IPv4 address is refused when
// the hook dials it, although the IPv4 network itself is allowed:
// allow_networks names the addresses dialled.
func TestSSRFGuardRefusesEmbeddedIPv4ThroughAHook(t *testing.T) {
	f := newFixture(t, true) // 127.0.0.0/8 allowed
	rc := newReceiver(t, nil)
	port := rc.URL[strings.LastIndex(rc.URL, ":")+1:]
	for _, host := range []string{"[2002:7f00:1::]", "[64:ff9b::7f00:1]", "[::127.0.0.1]"} {
		hk := httpHook("http://" + host + ":" + port + "/")
		hk.Active = false
		h, err := f.m.Create(context.Background(), hk, Start{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.m.Test(context.Background(), h.ID, nil)
		if err != nil || res.Delivered || !strings.Contains(res.Error, "refused by the SSRF guard") || !strings.Contains(res.Error, "of 127.0.0.1") {
			t.Fatalf("%s: %+v %v", host, res, err)
		}
	}
	hk := httpHook("http://[2002:7f00:1::]:" + port + "/")
	hk.RetryTimes, hk.StopAfterDeadLetters = intp(0), 1
	h, err := f.m.Create(context.Background(), hk, Start{})
	if err != nil {
		t.Fatal(err)
	}
	f.appendEvents("in.gen.calltrack.call", 7, 1)
	waitFor(t, "stop", func() bool { g, _ := f.m.Get(h.ID); return !g.Active })
	d, _ := f.m.Deliveries(context.Background(), h.ID, 10)
	if len(d) != 1 || d[0].ErrorClass != "blocked" || !strings.Contains(d[0].Error, "6to4 address of 127.0.0.1") || len(rc.requests()) != 0 {
		t.Fatalf("%+v", d)
	}
}
