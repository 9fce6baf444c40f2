package hook

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/identity"
	"github.com/sluicehq/sluice/internal/profile"
)

// withProfiles reopens f's manager with a real profile store and folds
// users into it: custom user id → the s2s user message's data.
func withProfiles(t *testing.T, f *fixture, users map[string]string) *profile.Store {
	t.Helper()
	ps, err := profile.Open(filepath.Join(f.dir, "profiles.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	f.m.Close()
	f.profiles = ps
	f.open(true)
	now := time.Now().UnixMilli()
	var evs []*event.Event
	n := 0
	for uid, data := range users {
		n++
		evs = append(evs, &event.Event{ID: event.ID(n), Key: "in.s2s.user", Channel: event.ChannelHTTP, Service: "s2s", Name: "user", ProjectID: 7,
			Time: now, Dialect: "s2s", ReceivedAt: now, Data: json.RawMessage(data),
			Identities: []event.Identity{{Type: identity.TypeCustomUserID, Value: uid}}})
	}
	if err := ps.Apply(context.Background(), "test", event.ID(n), evs); err != nil {
		t.Fatal(err)
	}
	return ps
}

// Profile attributes reach templates and filters as values, not as their
// JSON text: {{profile.firstName}} is Reza, profile.city == "Qom" matches,
// numbers and booleans compare and render as written.
func TestProfileAttributesAreValuesInTemplatesAndFilters(t *testing.T) {
	f := newFixture(t, true)
	ps := withProfiles(t, f, map[string]string{
		"reza": `{"type":"user","id":"m1","time":1,"firstName":"Reza","city":"Qom","age":31,"vip":true,"score":12.50,"big":12345678901234567890,"tags":["a","b"],"note":null,"customAttributes":{"tier":"gold"}}`,
		"sara": `{"type":"user","id":"m2","time":1,"firstName":"Sara","city":"Tehran","age":31,"vip":true}`,
		"omid": `{"type":"user","id":"m3","time":1,"firstName":"Omid","city":"Qom","age":25,"vip":true}`,
	})
	reza, err := ps.Find(context.Background(), 7, identity.TypeCustomUserID, "reza")
	if err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t, nil)
	pid := uint32(7)
	h := httpHook(rc.URL)
	h.ProjectID = &pid
	h.Filter = `profile.city == "Qom" && profile.age > 30 && profile.vip == true && profile.score == 12.5 && "b" in profile.tags && profile["customAttributes.tier"] == "gold"`
	h.CustomData = map[string]string{
		"name": "{{profile.firstName}}", "greeting": "Hello, {{profile.firstName}}!", "age": "{{profile.age}}", "vip": "{{profile.vip}}",
		"score": "{{profile.score}}", "big": "{{profile.big}}", "tags": "{{profile.tags}}", "note": "[{{profile.note}}]",
		"missing": "[{{profile.nope}}]", "tier": "{{profile.customAttributes.tier}}", "id": "{{profile.id}}",
	}
	if _, err := f.m.Create(context.Background(), h, Start{}); err != nil {
		t.Fatal(err)
	}
	// Without a filter, every event: the templates alone.
	all := newReceiver(t, nil)
	h2 := httpHook(all.URL)
	h2.ProjectID, h2.MaxBatchSize = &pid, 10
	h2.CustomData = map[string]string{"name": "{{profile.firstName}}", "age": "{{profile.age}}"}
	if _, err := f.m.Create(context.Background(), h2, Start{}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	var evs []*event.Event
	for i, uid := range []string{"sara", "omid", "nobody", "reza"} {
		evs = append(evs, &event.Event{Key: "in.gen.calltrack.call", Channel: event.ChannelHTTP, Service: "calltrack", Name: "call", ProjectID: 7,
			Data: json.RawMessage(`{"n":` + itoa(i) + `}`), Time: now, Dialect: "webhook", ReceivedAt: now,
			Identities: []event.Identity{{Type: identity.TypeCustomUserID, Value: uid}}})
	}
	res, err := f.log.Append(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both hooks past the events", func() bool {
		for _, g := range f.m.List() {
			if g.Cursor != res[3].ID {
				return false
			}
		}
		return true
	})
	var names []string
	for _, r := range all.requests() {
		for _, m := range r.msgs {
			cd := m["custom_data"].(map[string]any)
			names = append(names, cd["name"].(string)+"/"+cd["age"].(string))
		}
	}
	if strings.Join(names, " ") != "Sara/31 Omid/25 / Reza/31" {
		t.Fatalf("rendered %q", names)
	}
	reqs := rc.requests()
	if len(reqs) != 1 || len(reqs[0].msgs) != 1 || reqs[0].msgs[0]["id"] != res[3].ID.String() {
		t.Fatalf("want only reza's event, got %d requests: %v", len(reqs), reqs)
	}
	cd := reqs[0].msgs[0]["custom_data"].(map[string]any)
	want := map[string]string{
		"name": "Reza", "greeting": "Hello, Reza!", "age": "31", "vip": "true", "score": "12.50", "big": "12345678901234567890",
		"tags": `["a","b"]`, "note": "[]", "missing": "[]", "tier": "gold", "id": reza.ID,
	}
	for k, v := range want {
		if cd[k] != v {
			t.Errorf("custom_data.%s = %q, want %q", k, cd[k], v)
		}
	}
	if len(cd) != len(want) {
		t.Errorf("custom_data %v", cd)
	}
}

// A hook delivering an event sees a profile that already includes the
// event's own links and attributes: it waits (bounded) until the profile
// consumer has folded the event. Here the consumer starts only after the
// event is stored and the hook is ready to deliver it.
func TestHookWaitsForTheProfileConsumer(t *testing.T) {
	f := newFixture(t, true)
	ps, err := profile.Open(filepath.Join(f.dir, "profiles.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	consumer := &profile.Consumer{Store: ps, Log: f.log}
	f.m.Close()
	f.profiles = &profile.People{Store: ps, Log: f.log, Consumer: consumer}
	f.open(true)
	rc := newReceiver(t, nil)
	pid := uint32(7)
	h := httpHook(rc.URL)
	h.ProjectID = &pid
	h.Events = []string{"in.s2s.user"}
	h.CustomData = map[string]string{"greeting": "Hello, {{profile.firstName}}!", "profile": "{{profile.id}}",
		"events": "{{profile.traits.events}}", "by_key": "{{profile.traits.eventsByKey}}"}
	h.Filter = `profile.traits.events >= 1 && profile.traits.eventsByKey["in.s2s.user"] == 1`
	if _, err := f.m.Create(context.Background(), h, Start{}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	if _, err := f.log.Append(context.Background(), []*event.Event{{Key: "in.s2s.user", Channel: event.ChannelHTTP, Service: "s2s", Name: "user",
		ProjectID: 7, Time: now, Dialect: "s2s", ReceivedAt: now, Data: json.RawMessage(`{"type":"user","id":"m1","time":1,"firstName":"Ann"}`),
		Identities: []event.Identity{{Type: identity.TypeCustomUserID, Value: "ann"}}}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the hook has the event; no profile yet
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go consumer.Run(ctx)
	waitFor(t, "a delivery", func() bool { return len(rc.requests()) > 0 })
	reqs := rc.requests()
	cd := reqs[0].msgs[0]["custom_data"].(map[string]any)
	ann, err := ps.Find(context.Background(), 7, identity.TypeCustomUserID, "ann")
	if err != nil {
		t.Fatal(err)
	}
	if cd["greeting"] != "Hello, Ann!" || cd["profile"] != ann.ID || cd["events"] != "1" || cd["by_key"] != `{"in.s2s.user":1}` {
		t.Fatalf("custom_data %v (profile %s)", cd, ann.ID)
	}
}
