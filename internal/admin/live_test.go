package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog/logtest"
	"github.com/sluicehq/sluice/internal/live"
)

// sseMessage is one Server-Sent Event.
type sseMessage struct {
	event, id, data string
}

// openStream starts GET path and returns its messages as they come.
func (f *fixture) openStream(t *testing.T, path string) (<-chan sseMessage, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan sseMessage, 100)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var m sseMessage
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if m.event != "" || m.data != "" {
					out <- m
				}
				m = sseMessage{}
			case strings.HasPrefix(line, "event: "):
				m.event = line[7:]
			case strings.HasPrefix(line, "id: "):
				m.id = line[4:]
			case strings.HasPrefix(line, "data: "):
				m.data = line[6:]
			}
		}
	}()
	return out, resp
}

func next(t *testing.T, c <-chan sseMessage) sseMessage {
	t.Helper()
	select {
	case m, ok := <-c:
		if !ok {
			t.Fatal("the stream ended")
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
	}
	return sseMessage{}
}

// The live stream sends what is committed and refused from now on, as
// filtered, each event with its canonical JSON and whether its raw request
// is kept, each refusal with its status and field paths; limit= ends it.
func TestLiveStream(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.log.Append(ctx, []*event.Event{logtest.Event(1, "in.gen.old.one", 0)}); err != nil {
		t.Fatal(err)
	}
	for f.hub.Position() < f.log.Head() {
		time.Sleep(time.Millisecond)
	}
	msgs, resp := f.openStream(t, "/api/v1/live?project=1&key=in.gen.crm.*&limit=3")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	all, _ := f.openStream(t, "/api/v1/live?backlog=10")
	evs := []*event.Event{logtest.Event(2, "in.gen.crm.lead", 1), logtest.Event(1, "in.gen.other.x", 2), logtest.Event(1, "in.gen.crm.lead", 3)}
	withContent := logtest.Event(1, "in.gen.crm.deal", 4)
	withContent.Content = &event.Content{Body: []byte(`{"deal":4}`), ReceivedAt: 1_700_000_000_000}
	evs = append(evs, withContent)
	res, err := f.log.Append(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	for f.hub.Position() < f.log.Head() {
		time.Sleep(time.Millisecond)
	}
	one := uint32(1)
	f.hub.Refused(live.Refusal{Status: 400, Dialect: "track", ProjectID: &one, Source: "127.0.0.1", Method: "POST", Path: "/track",
		Message: "invalid hit", Errors: event.FieldErrors{{Path: "event.value", Message: "must be a number"}}})
	// Project 1, key in.gen.crm.*: events 3 and 4, and no refusal (the
	// key filter leaves them out).
	for _, want := range []struct {
		n       int
		id      event.ID
		content bool
	}{{3, res[2].ID, false}, {4, res[3].ID, true}} {
		m := next(t, msgs)
		var body struct {
			Event   event.Event `json:"event"`
			Content bool        `json:"content"`
		}
		if err := json.Unmarshal([]byte(m.data), &body); err != nil {
			t.Fatalf("%v: %s", err, m.data)
		}
		if m.event != "event" || m.id != want.id.String() || body.Event.ID != want.id || string(body.Event.Data) != fmt.Sprintf(`{"n":%d}`, want.n) || body.Content != want.content {
			t.Fatalf("message %+v, want event %d (content %v)", m, want.n, want.content)
		}
	}
	// The unfiltered stream had the old event as backlog, then all four,
	// then the refusal.
	var got []string
	for range 6 {
		m := next(t, all)
		if m.event == "refusal" {
			var r live.Refusal
			if err := json.Unmarshal([]byte(m.data), &r); err != nil {
				t.Fatal(err)
			}
			if r.Status != 400 || r.Dialect != "track" || *r.ProjectID != 1 || len(r.Errors) != 1 || r.Errors[0].Path != "event.value" || r.Seq != 1 {
				t.Fatalf("refusal %s", m.data)
			}
			got = append(got, "refusal")
			continue
		}
		var body struct {
			Event event.Event `json:"event"`
		}
		json.Unmarshal([]byte(m.data), &body)
		got = append(got, string(body.Event.Data))
	}
	if want := `[{"n":0} {"n":1} {"n":2} {"n":3} {"n":4} refusal]`; fmt.Sprint(got) != want {
		t.Fatalf("unfiltered stream %v, want %s", got, want)
	}
	// A third matching item ends the limited stream.
	f.log.Append(ctx, []*event.Event{logtest.Event(1, "in.gen.crm.lead", 5)})
	next(t, msgs)
	select {
	case _, ok := <-msgs:
		if ok {
			t.Fatal("a fourth message after limit=3")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end at its limit")
	}

	b := f.api(t, "GET", "/api/v1/live?project=x&key=a%01&kinds=nope&backlog=5000&identity_type=phone_hash", "", 400, nil)
	for _, field := range []string{`"project"`, `"key"`, `"kinds"`, `"backlog"`, `"identity_type"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("error body %s lacks %s", b, field)
		}
	}
	if status, _, _ := f.call(t, "GET", "/api/v1/live", "", ""); status != 401 {
		t.Fatalf("live without a token: %d", status)
	}
}

// Twenty waiting long-polls are told of commits by the one follower: the
// log is not read per waiting client per commit, and a matching commit
// wakes them all.
func TestLongPollsShareTheFollower(t *testing.T) {
	f := newFixture(t)
	head := f.log.Head()
	const waiters, commits = 20, 30
	var wg sync.WaitGroup
	pages := make(chan eventsPage, waiters)
	for range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var page eventsPage
			f.api(t, "GET", "/api/v1/events?key=in.gen.wanted.*&wait=5s&after="+head.String(), "", 200, &page)
			pages <- page
		}()
	}
	// Let them all read once and wait.
	deadline := time.Now().Add(5 * time.Second)
	for f.reads.reads.Load() < waiters && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	before := f.reads.reads.Load()
	for i := range commits {
		if _, err := f.log.Append(context.Background(), []*event.Event{logtest.Event(0, "in.gen.other.x", i)}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := f.log.Append(context.Background(), []*event.Event{logtest.Event(0, "in.gen.wanted.y", 99)})
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(pages)
	for p := range pages {
		if len(p.Events) != 1 || p.Next != res[0].ID {
			t.Fatalf("a long-poll answered %d events, next %s; want the wanted one %s", len(p.Events), p.Next, res[0].ID)
		}
	}
	// The hub reads at most once per commit; twenty clients reading at
	// every commit would be 620.
	if reads := f.reads.reads.Load() - before; reads > commits+2 {
		t.Fatalf("%d reads of the log for %d commits and %d waiting clients", reads, commits+1, waiters)
	}
}

// GET /api/v1/events/{id} answers one event, with its raw request when
// kept; an identity selects events by what they carry.
func TestEventByIDAndIdentitySearch(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	plain := logtest.Event(0, "in.gen.a.b", 1)
	plain.Identities = []event.Identity{{Type: "phone_hash", Value: "p1"}}
	kept := logtest.Event(0, "in.gen.a.b", 2)
	kept.Identities = []event.Identity{{Type: "email_hash", Value: "p1"}, {Type: "custom_user_id", Value: "u7"}}
	kept.Content = &event.Content{Body: []byte("caller=%2B98912&x=1"), ReceivedAt: 1_700_000_000_123}
	binary := logtest.Event(0, "in.gen.a.b", 3)
	binary.Content = &event.Content{Body: []byte{0xff, 0xfe, 0x00}, ReceivedAt: 1}
	res, err := f.log.Append(ctx, []*event.Event{plain, kept, binary})
	if err != nil {
		t.Fatal(err)
	}
	var one struct {
		Event   event.Event   `json:"event"`
		Content *EventContent `json:"content"`
	}
	f.api(t, "GET", "/api/v1/events/"+res[0].ID.String(), "", 200, &one)
	if one.Event.ID != res[0].ID || one.Content != nil {
		t.Fatalf("plain event %+v", one)
	}
	f.api(t, "GET", "/api/v1/events/"+res[1].ID.String(), "", 200, &one)
	if one.Event.ID != res[1].ID || one.Content == nil || one.Content.Body != "caller=%2B98912&x=1" || one.Content.Encoding != "text" || one.Content.ReceivedAt != 1_700_000_000_123 {
		t.Fatalf("event with content %+v %+v", one.Event, one.Content)
	}
	one.Content = nil
	f.api(t, "GET", "/api/v1/events/"+res[2].ID.String(), "", 200, &one)
	if one.Content == nil || one.Content.Encoding != "base64" || one.Content.Body != "//4A" {
		t.Fatalf("binary content %+v", one.Content)
	}
	f.api(t, "GET", "/api/v1/events/"+(res[2].ID+1).String(), "", 404, nil)
	f.api(t, "GET", "/api/v1/events/x", "", 400, nil)

	var page eventsPage
	for _, c := range []struct {
		query string
		want  []event.ID
	}{
		{"identity=p1", []event.ID{res[0].ID, res[1].ID}},
		{"identity=p1&identity_type=email_hash", []event.ID{res[1].ID}},
		{"identity=u7&newest=true", []event.ID{res[1].ID}},
		{"identity=p1&newest=true&limit=1", []event.ID{res[1].ID}},
		{"identity=nobody", nil},
	} {
		f.api(t, "GET", "/api/v1/events?"+c.query, "", 200, &page)
		var got []event.ID
		for _, raw := range page.Events {
			var e event.Event
			json.Unmarshal(raw, &e)
			got = append(got, e.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: %v, want %v", c.query, got, c.want)
		}
	}
	// A search with nothing found still moves the cursor past what it
	// looked at.
	f.api(t, "GET", "/api/v1/events?identity=nobody", "", 200, &page)
	if page.Next != res[2].ID {
		t.Fatalf("next %s after a fruitless search, want %s", page.Next, res[2].ID)
	}
	f.api(t, "GET", "/api/v1/events?identity_type=x", "", 400, nil)
}

// The export is JSON Lines of the selected events, oldest first, across
// pages, up to its limit.
func TestExportJSONLines(t *testing.T) {
	f := newFixture(t)
	var evs []*event.Event
	for i := range 25 {
		evs = append(evs, logtest.Event(uint32(i%2), "in.gen.a.b", i))
	}
	if _, err := f.log.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	status, b, h := f.call(t, "GET", "/api/v1/events/export?project=1", "", "Bearer "+adminToken)
	if status != 200 || h.Get("Content-Type") != "application/x-ndjson" || !strings.Contains(h.Get("Content-Disposition"), "attachment") {
		t.Fatalf("export: %d %v", status, h)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 12 {
		t.Fatalf("%d lines, want the 12 events of project 1", len(lines))
	}
	for i, l := range lines {
		var e event.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.ProjectID != 1 || string(e.Data) != fmt.Sprintf(`{"n":%d}`, 2*i+1) {
			t.Fatalf("line %d: %s (%v)", i, l, err)
		}
	}
	_, b, _ = f.call(t, "GET", "/api/v1/events/export?limit=5", "", "Bearer "+adminToken)
	if n := strings.Count(string(b), "\n"); n != 5 {
		t.Fatalf("limit=5 exported %d lines", n)
	}
	f.api(t, "GET", "/api/v1/events/export?limit=100001", "", 400, nil)
	f.api(t, "GET", "/api/v1/events/export?wait=1s", "", 400, nil)
}

// The overview turns counters into rates between two samples, histogram
// buckets into quantiles, and reports each hook's gauges.
func TestOverviewSamples(t *testing.T) {
	reg := prometheus.NewRegistry()
	events := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ingest_events_total"}, []string{"dialect", "project", "result"})
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_ingest_requests_total"}, []string{"dialect", "route", "status"})
	commit := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_log_commit_duration_seconds", Buckets: []float64{0.001, 0.002, 0.004}})
	lag := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_hook_lag_events"}, []string{"hook"})
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_hook_failures_total"}, []string{"hook", "class"})
	reg.MustRegister(events, requests, commit, lag, failures)
	s := NewSampler(SamplerConfig{Interval: 2 * time.Second, Keep: 2}, reg)
	t0 := time.UnixMilli(1_700_000_000_000)
	events.WithLabelValues("webhook", "0", "stored").Add(100) // before the first sample: not a rate
	s.Sample(t0)
	events.WithLabelValues("webhook", "0", "stored").Add(10)
	events.WithLabelValues("webhook", "0", "duplicate").Add(8) // not stored: not counted
	events.WithLabelValues("track", "3", "stored").Add(4)
	requests.WithLabelValues("track", "hit", "400").Add(6)
	requests.WithLabelValues("track", "hit", "200").Add(50)
	for range 99 {
		commit.Observe(0.0015)
	}
	commit.Observe(0.003)
	lag.WithLabelValues("hk_a").Set(7)
	failures.WithLabelValues("hk_a", "status").Add(2)
	s.Sample(t0.Add(2 * time.Second))
	o := s.Overview()
	if len(o.Times) != 1 || o.Times[0] != t0.Add(2*time.Second).UnixMilli() {
		t.Fatalf("times %v", o.Times)
	}
	got := map[string]string{}
	for _, c := range o.Charts {
		for _, se := range c.Series {
			got[c.Name+"/"+se.Label] = fmt.Sprint(*se.Values[0])
		}
	}
	for k, want := range map[string]string{
		"events_by_dialect/webhook": "5", "events_by_dialect/track": "2",
		"events_by_project/0": "5", "events_by_project/3": "2",
		"refusals_by_status/400": "3",
		"commit_latency/p50":     "1.505", // within the 1–2 ms bucket
		"commit_latency/p99":     "2",
		"hook_lag/hk_a":          "7", "hook_failures/hk_a": "1",
	} {
		if got[k] != want {
			t.Errorf("%s = %s, want %s", k, got[k], want)
		}
	}
	if _, ok := got["refusals_by_status/200"]; ok {
		t.Error("a 200 counted as a refusal")
	}
	if h := o.Hooks["hk_a"]; h == nil || h.LagEvents != 7 || h.Failures != 2 {
		t.Errorf("hook stats %+v", o.Hooks["hk_a"])
	}
	// Keep bounds the samples.
	s.Sample(t0.Add(4 * time.Second))
	s.Sample(t0.Add(6 * time.Second))
	if o := s.Overview(); len(o.Times) != 2 || *o.Charts[0].Series[0].Values[1] != 0 {
		t.Fatalf("after four samples: %d times", len(o.Times))
	}
}
