// Package sinktest is the conformance suite every destination runs: a
// hook of the type, in a real hook manager over a real event log, against
// the destination's real server (or its loopback stand-in), must deliver
// every matching event with custom_data rendered and nothing else; park
// dead letters while the target fails and deliver them by replay once it
// is back; count what it delivered; pass the pre-test; never return its
// secrets; and dial nothing the SSRF guard refuses.
//
// A destination's tests call Run with a Target that says how to point a
// hook at its server, what the server holds and how to make it fail.
package sinktest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/project"
	"github.com/sluicehq/sluice/internal/sink"
)

// Target is one destination under the suite.
type Target struct {
	// Destination is the type under test.
	Destination sink.Destination
	// Settings are settings that point at the running target, with
	// every secret the type has set.
	Settings func() sink.Settings
	// Received is what the target holds now: one entry per event, in any
	// order.
	Received func(t testing.TB) []Received
	// Fail makes the target refuse deliveries (on) or take them again.
	Fail func(t testing.TB, on bool)
	// Check, when set, checks what the target holds for one event beyond
	// the suite's checks (headers, routes, columns); sent is the event
	// as stored.
	Check func(t testing.TB, got Received, sent *event.Event)
	// Project, when set, is given project 7's settings (custom
	// dimensions and metrics).
	Project *project.Settings
}

// Received is one event as the target holds it.
type Received struct {
	EventID string
	// IsTest is true for the pre-test's event.
	IsTest bool
	// CustomData are the hook's custom_data fields as the target has
	// them.
	CustomData map[string]any
	// Raw is what the target keeps, for Check.
	Raw any
}

// ProjectID is the project of the suite's events.
const ProjectID = 7

// Run runs the suite against tg.
func Run(t *testing.T, tg Target) {
	f := newFixture(t, tg, true)
	ctx := context.Background()
	pid := uint32(ProjectID)
	h := hook.Hook{Name: "conformance " + tg.Destination.Type, Active: true, ProjectID: &pid, Events: []string{"in.gen.calltrack.*"},
		Filter: `event.data.city != "Qom"`, Type: tg.Destination.Type, Settings: tg.Settings(), MaxBatchSize: 10,
		RetryTimes: new(1), RetryPeriod: hook.Duration(50 * time.Millisecond), StopAfterDeadLetters: 100,
		CustomData: map[string]string{"campaign": "Black Friday", "svc": "{{event.service}}"}}
	secrets := map[string]string{}
	for _, s := range h.Settings.Secrets() {
		if *s.Value != "" {
			secrets[s.Name] = *s.Value
		}
	}
	created, err := f.m.Create(ctx, h, hook.Start{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}

	t.Run("secrets are never returned", func(t *testing.T) {
		// What the API shows is the settings as given, defaults filled
		// and every secret empty.
		want := tg.Destination.New()
		given, _ := json.Marshal(tg.Settings())
		if err := json.Unmarshal(given, want); err != nil {
			t.Fatal(err)
		}
		want.Defaults()
		for _, s := range want.Secrets() {
			*s.Value = ""
		}
		wantJSON, _ := json.Marshal(want)
		for _, g := range []hook.Hook{created, mustGet(t, f.m, created.ID), f.m.List()[0]} {
			for _, s := range g.Settings.Secrets() {
				if *s.Value != "" {
					t.Fatalf("secret %s returned: %q", s.Name, *s.Value)
				}
			}
			b, err := json.Marshal(g)
			if err != nil {
				t.Fatal(err)
			}
			var obj map[string]json.RawMessage
			json.Unmarshal(b, &obj)
			if !sameJSON(obj[tg.Destination.Section], wantJSON) {
				t.Fatalf("%s: %s\nwant %s", tg.Destination.Section, obj[tg.Destination.Section], wantJSON)
			}
		}
	})

	sent := map[string]*event.Event{}
	for _, e := range f.append(ProjectID, "Moscow", 25) {
		sent[e.ID.String()] = e
	}
	f.append(ProjectID+1, "Moscow", 3) // another project
	f.append(ProjectID, "Qom", 3)      // filtered out

	t.Run("every matching event arrives once with custom_data", func(t *testing.T) {
		waitFor(t, "25 events", func() bool { return len(tg.Received(t)) >= 25 })
		time.Sleep(100 * time.Millisecond) // nothing more comes
		got := tg.Received(t)
		if len(got) != 25 {
			t.Fatalf("%d events, want 25", len(got))
		}
		seen := map[string]bool{}
		for _, r := range got {
			e := sent[r.EventID]
			switch {
			case e == nil:
				t.Fatalf("event %q was not sent to this hook: %+v", r.EventID, r)
			case seen[r.EventID]:
				t.Fatalf("event %s twice", r.EventID)
			case r.IsTest:
				t.Fatalf("event %s marked as a test", r.EventID)
			case fmt.Sprint(r.CustomData["campaign"]) != "Black Friday" || fmt.Sprint(r.CustomData["svc"]) != "calltrack":
				t.Fatalf("event %s custom_data %v", r.EventID, r.CustomData)
			}
			seen[r.EventID] = true
			if tg.Check != nil {
				tg.Check(t, r, e)
			}
		}
		waitFor(t, "the cursor", func() bool { g, _ := f.m.Get(created.ID); return g.Cursor >= f.log.Head() })
		// The counter moves once the loop has heard of the commit that
		// moved the cursor.
		waitFor(t, "sluice_hook_events_delivered_total", func() bool { return f.counter("sluice_hook_events_delivered_total", created.ID) >= 25 })
		if n := f.counter("sluice_hook_events_delivered_total", created.ID); n != 25 {
			t.Fatalf("sluice_hook_events_delivered_total %v, want 25", n)
		}
	})

	t.Run("a failing target parks dead letters that a replay delivers", func(t *testing.T) {
		tg.Fail(t, true)
		late := f.append(ProjectID, "Moscow", 4)
		waitFor(t, "dead letters of 4 events", func() bool {
			dls, _ := f.m.DeadLetters(ctx, created.ID, hook.DeadLetterQuery{})
			n := 0
			for _, d := range dls {
				n += d.Events
			}
			return n == 4
		})
		d, _ := f.m.Deliveries(ctx, created.ID, 1)
		if len(d) != 1 || d[0].ErrorClass == "" || d[0].Error == "" {
			t.Fatalf("attempt log %+v", d)
		}
		// The counter moves once the loop has heard of the commit that the
		// dead letters are read from.
		waitFor(t, "sluice_hook_dead_letters_total", func() bool { return f.counter("sluice_hook_dead_letters_total", created.ID) >= 1 })
		if n := f.counter("sluice_hook_retries_total", created.ID); n < 1 {
			t.Fatalf("sluice_hook_retries_total %v", n)
		}
		tg.Fail(t, false)
		res, err := f.m.Replay(ctx, created.ID, hook.DeadLetterQuery{})
		if err != nil || len(res) == 0 {
			t.Fatalf("replay %+v %v", res, err)
		}
		for _, r := range res {
			if !r.Delivered {
				t.Fatalf("replay %+v", res)
			}
		}
		waitFor(t, "the replayed events", func() bool {
			seen := map[string]bool{}
			for _, r := range tg.Received(t) {
				seen[r.EventID] = true
			}
			for _, e := range late {
				if !seen[e.ID.String()] {
					return false
				}
			}
			return true
		})
		if dls, _ := f.m.DeadLetters(ctx, created.ID, hook.DeadLetterQuery{}); len(dls) != 0 {
			t.Fatalf("dead letters left after the replay: %+v", dls)
		}
	})

	t.Run("the pre-test goes through", func(t *testing.T) {
		before := len(tg.Received(t))
		tr, err := f.m.Test(ctx, created.ID, nil)
		if err != nil || !tr.Delivered || tr.Request == nil || tr.Event != "stored" {
			t.Fatalf("pre-test %+v %v", tr, err)
		}
		for _, v := range secrets {
			if strings.Contains(fmt.Sprint(tr.Request), v) {
				t.Fatalf("a secret in the pre-test's request: %+v", tr.Request)
			}
		}
		waitFor(t, "the test event", func() bool {
			for _, r := range tg.Received(t) {
				if r.IsTest {
					return true
				}
			}
			return false
		})
		if g, _ := f.m.Get(created.ID); g.Cursor < f.log.Head() {
			t.Fatal("the pre-test moved the cursor back")
		}
		if n := len(tg.Received(t)); n != before+1 {
			t.Fatalf("%d events after the pre-test, want %d", n, before+1)
		}
	})

	t.Run("the SSRF guard refuses the target", func(t *testing.T) {
		g := newFixture(t, tg, false)
		h.Active = false
		h.Settings = tg.Settings()
		c, err := g.m.Create(ctx, h, hook.Start{})
		if err != nil {
			t.Fatal(err)
		}
		g.append(ProjectID, "Moscow", 1)
		tr, err := g.m.Test(ctx, c.ID, nil)
		if err != nil || tr.Delivered || !strings.Contains(tr.Error, "refused by the SSRF guard") {
			t.Fatalf("pre-test through the guard: %+v %v", tr, err)
		}
	})
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

func mustGet(t testing.TB, m *hook.Manager, id string) hook.Hook {
	t.Helper()
	h, err := m.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

type fixture struct {
	t   testing.TB
	log *sqlite.Log
	m   *hook.Manager
	reg *prometheus.Registry
}

// Host is a hook manager over a real event log and project store (project
// 7, "shop"), for a destination's own tests of the delivery loop.
type Host struct {
	M   *hook.Manager
	Log *sqlite.Log
	f   *fixture
}

// NewHost opens a Host whose hooks reach loopback, with dest registered
// and project 7 given settings (nil: none).
func NewHost(t testing.TB, dest sink.Destination, settings *project.Settings) *Host {
	t.Helper()
	f := newFixture(t, Target{Destination: dest, Project: settings}, true)
	return &Host{M: f.m, Log: f.log, f: f}
}

// Delivered is sluice_hook_events_delivered_total of a hook.
func (h *Host) Delivered(hookID string) float64 {
	return h.f.counter("sluice_hook_events_delivered_total", hookID)
}

// Fill stores n webhook-sized calltrack calls of project 7, of users
// users (u-0 … u-<users-1>, in turn), at one time.
func (h *Host) Fill(t testing.TB, n, users int) {
	t.Helper()
	now := time.Now().UnixMilli()
	for i := 0; i < n; i += 5000 {
		var evs []*event.Event
		for j := i; j < min(i+5000, n); j++ {
			evs = append(evs, &event.Event{Key: "in.gen.calltrack.call", Channel: event.ChannelHTTP, Service: "calltrack", Name: "call", ProjectID: ProjectID,
				Data: json.RawMessage(fmt.Sprintf(`{"amount":%d,"phone":"79990000000","campaign":"black-friday"}`, j)), Time: now, Dialect: "webhook",
				ReceivedAt: now, TD: event.TD{IP: "203.0.113.7", UA: "curl/8.5"}, Identities: []event.Identity{{Type: "user_id", Value: fmt.Sprintf("u-%d", j%users)}}})
		}
		h.Append(t, evs...)
	}
}

// Bench delivers the n stored events through a new hook of mk, b.N
// times from the start of the log, and reports events/s.
func (h *Host) Bench(b *testing.B, n int, mk func() hook.Hook) {
	from := time.UnixMilli(1)
	start := time.Now()
	for i := 0; i < b.N; i++ {
		created, err := h.M.Create(context.Background(), mk(), hook.Start{From: &from})
		if err != nil {
			b.Fatal(err)
		}
		for h.Delivered(created.ID) < float64(n) {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		if err := h.M.Delete(context.Background(), created.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "events/s")
}

// Append stores events (ids assigned) and returns them.
func (h *Host) Append(t testing.TB, evs ...*event.Event) []*event.Event {
	t.Helper()
	res, err := h.Log.Append(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		evs[i].ID = r.ID
	}
	return evs
}

func newFixture(t testing.TB, tg Target, allowLoopback bool) *fixture {
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
	id := uint32(ProjectID)
	var st project.Settings
	if tg.Project != nil {
		st = *tg.Project
	}
	if _, err := ps.Create(context.Background(), &id, "shop", st); err != nil {
		t.Fatal(err)
	}
	cfg := hook.Config{Path: filepath.Join(dir, "hooks.db"), KeyPath: filepath.Join(dir, "hooks.key"), Destinations: []sink.Destination{tg.Destination}}
	if allowLoopback {
		cfg.AllowNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	reg := prometheus.NewRegistry()
	m, err := hook.Open(cfg, l, ps, nil, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Start(context.Background())
	t.Cleanup(func() { m.Close(); l.Close(); ps.Close() })
	return &fixture{t: t, log: l, m: m, reg: reg}
}

// append stores n calltrack calls of project, data {"amount": i, "city":
// city}, each of its own user.
func (f *fixture) append(projectID uint32, city string, n int) []*event.Event {
	f.t.Helper()
	now := time.Now().UnixMilli()
	var evs []*event.Event
	for i := range n {
		evs = append(evs, &event.Event{Key: "in.gen.calltrack.call", Channel: event.ChannelHTTP, Service: "calltrack", Name: "call", ProjectID: projectID,
			Data: json.RawMessage(fmt.Sprintf(`{"amount":%d,"city":%q}`, i, city)), Time: now, Dialect: "webhook", ReceivedAt: now,
			Identities: []event.Identity{{Type: "user_id", Value: fmt.Sprintf("u-%d", i)}}})
	}
	res, err := f.log.Append(context.Background(), evs)
	if err != nil {
		f.t.Fatal(err)
	}
	for i, r := range res {
		evs[i].ID = r.ID
	}
	return evs
}

// counter is the value of the hook's series of counter name.
func (f *fixture) counter(name, hookID string) float64 {
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "hook" && l.GetValue() == hookID {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// WaitFor polls cond for up to 20 s.
func WaitFor(t testing.TB, what string, cond func() bool) { waitFor(t, what, cond) }

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
