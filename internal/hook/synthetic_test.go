package hook

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/event"
)

// The pre-test's synthetic event is one its hook takes and one its
// dialect could have stored: key, dialect, service, name and payload
// agree, and it is a valid canonical event (docs/event.schema.json).
func TestSyntheticEventIsConsistent(t *testing.T) {
	doc, err := os.ReadFile("../../docs/event.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("event.schema.json", parsed); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("event.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1795428000123)
	for _, tc := range []struct {
		globs                       []string
		key, dialect, service, name string
		data                        string // gjson path=value pairs the payload has
	}{
		{[]string{"in.s2s.revenue.*"}, "in.s2s.revenue.test", "s2s", "s2s", "test", "type=revenue name=test currency=USD"},
		{[]string{"in.s2s.action.signup"}, "in.s2s.action.signup", "s2s", "s2s", "signup", "type=action name=signup"},
		{[]string{"in.s2s.user"}, "in.s2s.user", "s2s", "s2s", "user", "type=user"},
		{[]string{"in.s2s.*"}, "in.s2s.user", "s2s", "s2s", "user", "type=user"},
		{[]string{"in.gen.calltrack.*"}, "in.gen.calltrack.test", "webhook", "calltrack", "test", "test=true"},
		{[]string{"in.gen.*"}, "in.gen.test.event", "webhook", "test", "event", "test=true"},
		{[]string{"in.gen.*.call"}, "in.gen.test.call", "webhook", "test", "call", "test=true"},
		{[]string{"in.gen.crm.lea?"}, "in.gen.crm.leax", "webhook", "crm", "leax", "test=true"},
		{[]string{"in.**"}, "in.gen.test.event", "webhook", "test", "event", "test=true"},
		{[]string{"in.track.*"}, "in.track.transaction.completed", "track", "track", "Completed Transaction", "event.name=Completed_Transaction"},
		{[]string{"in.track.custom.*"}, "in.track.custom.test", "track", "track", "test", "event.name=test"},
		{[]string{"in.commerce.purchase-v1"}, "in.commerce.purchase-v1", "commerce", "commerce", "Test", "properties.eventType=purchase-v1"},
		{[]string{"in.commerce.*"}, "in.commerce.purchase-v1", "commerce", "commerce", "Test", "properties.eventType=purchase-v1"},
		{[]string{"in.commerce.custom.*"}, "in.commerce.custom.test", "commerce", "commerce", "test", "name=test"},
		{[]string{"out.nothing", "in.s2s.revenue.buy"}, "in.s2s.revenue.buy", "s2s", "s2s", "buy", "type=revenue name=buy"},
	} {
		t.Run(strings.Join(tc.globs, ","), func(t *testing.T) {
			e := syntheticFor(Hook{Events: tc.globs}, now)
			if e.Key != tc.key || e.Dialect != tc.dialect || e.Service != tc.service || e.Name != tc.name || e.Time != now.UnixMilli() {
				t.Fatalf("%s %s %s %q at %d", e.Key, e.Dialect, e.Service, e.Name, e.Time)
			}
			matched := false
			for _, g := range tc.globs {
				matched = matched || event.MatchGlob(g, e.Key)
			}
			if !matched {
				t.Fatalf("%s is not taken by %v", e.Key, tc.globs)
			}
			if err := e.Validate(); err != nil {
				t.Fatal(err)
			}
			body := e.AppendJSON(nil)
			inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(body))
			if err := schema.Validate(inst); err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			for _, kv := range strings.Split(tc.data, " ") {
				k, v, _ := strings.Cut(kv, "=")
				if got := gjson.GetBytes(e.Data, k).String(); got != strings.ReplaceAll(v, "_", " ") {
					t.Errorf("data.%s = %q, want %q: %s", k, got, v, e.Data)
				}
			}
		})
	}
}

// Through the pre-test: the message sent is that event, in the hook's
// project.
func TestPreTestSendsTheSyntheticEventOfTheHooksKeys(t *testing.T) {
	f := newFixture(t, true)
	rc := newReceiver(t, nil)
	pid := uint32(7)
	hk := httpHook(rc.URL)
	hk.Active, hk.ProjectID, hk.Events = false, &pid, []string{"in.s2s.revenue.*"}
	h, err := f.m.Create(context.Background(), hk, Start{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.m.Test(context.Background(), h.ID, nil)
	if err != nil || res.Event != "synthetic" || !res.Delivered {
		t.Fatalf("%+v %v", res, err)
	}
	var msgs []map[string]any
	if err := json.Unmarshal([]byte(res.Request.Body), &msgs); err != nil || len(msgs) != 1 {
		t.Fatal(err)
	}
	m := msgs[0]
	if m["key"] != "in.s2s.revenue.test" || m["dialect"] != "s2s" || m["service"] != "s2s" || m["name"] != "test" || m["projectId"] != float64(7) ||
		m["is_test"] != true || m["data"].(map[string]any)["type"] != "revenue" {
		t.Fatalf("%v", m)
	}
}
