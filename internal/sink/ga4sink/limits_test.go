package ga4sink_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/ga4sink"
)

// withCustomData is a calltrack message with custom_data cd.
func withCustomData(id string, ms int64, cd map[string]string) []byte {
	b, _ := json.Marshal(cd)
	m := message(id, "alice", ms, `{}`)
	return []byte(strings.Replace(string(m), `"custom_data":{}`, `"custom_data":`+string(b), 1))
}

func trackHit(id string, ms int64, lineItems []string) []byte {
	return []byte(fmt.Sprintf(`{"key":"in.track.transaction.completed","channel":"http","service":"track","name":"Completed Transaction","projectId":7,`+
		`"data":{"event":{"name":"Completed Transaction","transaction":{"orderId":"o-1","total":10,"currency":"RUB","lineItems":[%s]}}},`+
		`"id":%q,"time":%d,"dialect":"track","receivedAt":%d,"identities":[],"custom_data":{},"is_test":false}`, strings.Join(lineItems, ","), id, ms, ms))
}

// Every limit of the protocol is checked before anything is sent: a
// batch with an event that breaks one is refused whole, for good, with
// the event and the reason; the collector sees nothing.
func TestLimitsAreEnforcedBeforeSending(t *testing.T) {
	now := time.Now()
	ms := now.UnixMilli()
	many := map[string]string{}
	for i := range 25 {
		many[fmt.Sprintf("k%02d", i)] = "v"
	}
	item := `{"product":{"id":"p","name":"n"},"quantity":1}`
	items := func(n int, it string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = it
		}
		return out
	}
	for _, c := range []struct {
		name      string
		msg       []byte
		custom    []sink.Custom
		userProps []string
		want      string
	}{
		{"parameters", withCustomData("e1", ms, many), nil, nil, "event e1 (call): 26 parameters"},
		{"parameters with custom fields", withCustomData("e1", ms, map[string]string{"a": "1"}),
			func() []sink.Custom {
				var cs []sink.Custom
				for i := range 24 {
					cs = append(cs, sink.Custom{Name: fmt.Sprintf("dim%d", i), Value: json.RawMessage(`"x"`)})
				}
				return cs
			}(), nil, "26 parameters (custom_data and the project's custom fields count); GA4 takes at most 25"},
		{"parameter name", withCustomData("e1", ms, map[string]string{"my key": "v"}), nil, nil, `event e1 (call): parameter name "my key" has " "`},
		{"parameter name long", withCustomData("e1", ms, map[string]string{strings.Repeat("a", 41): "v"}), nil, nil, "is longer than 40 characters"},
		{"parameter reserved prefix", withCustomData("e1", ms, map[string]string{"ga_source": "v"}), nil, nil, `parameter name "ga_source" starts with the reserved prefix ga_`},
		{"parameter reserved", withCustomData("e1", ms, map[string]string{"firebase_conversion": "v"}), nil, nil, `starts with the reserved prefix firebase_`},
		{"parameter value", withCustomData("e1", ms, map[string]string{"note": strings.Repeat("ж", 101)}), nil, nil, "parameter note is 101 characters long; GA4 takes at most 100"},
		{"too old", message("e1", "alice", now.Add(-73*time.Hour).UnixMilli(), `{}`), nil, nil, "event e1 (call): it happened 3 days ago; GA4 takes events (timestamp_micros) up to 72 hours old"},
		{"user property value", message("e1", "alice", ms, `{}`), []sink.Custom{{Name: "tier", Value: json.RawMessage(`"` + strings.Repeat("x", 37) + `"`)}}, []string{"tier"},
			"user property tier is 37 characters long; GA4 takes at most 36"},
		{"user property name", message("e1", "alice", ms, `{}`), []sink.Custom{{Name: "first_open_time", Value: json.RawMessage(`"x"`)}}, []string{"first_open_time"},
			`user property name "first_open_time" is reserved`},
		{"user id", message("e1", strings.Repeat("u", 257), ms, `{}`), nil, nil, "user_id is 257 bytes long; GA4 takes at most 256"},
		{"items", trackHit("t1", ms, items(201, item)), nil, nil, "event t1 (purchase): 201 items; GA4 takes at most 200"},
		{"item without id or name", trackHit("t1", ms, []string{`{"product":{"category":"c"},"quantity":1}`}), nil, nil, "items[0] has neither item_id nor item_name"},
		{"item value", trackHit("t1", ms, []string{`{"product":{"id":"p","name":"` + strings.Repeat("n", 101) + `"},"quantity":1}`}), nil, nil,
			"items[0]: parameter item_name is 101 characters long"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := newReceiver(t, mid, secret)
			s := newSink(t, rc, now, c.userProps...)
			b := &sink.Batch{ID: "b", Attempt: 1, Messages: [][]byte{message("ok", "bob", ms, `{}`), c.msg},
				Meta: []sink.Meta{{}, {Custom: c.custom}}}
			_, err := s.Deliver(context.Background(), b)
			var se *sink.Error
			if !errors.As(err, &se) || se.Class != sink.ClassInvalid || !se.Permanent || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a permanent invalid error with …%s…", err, c.want)
			}
			if n := len(rc.requests()); n != 0 {
				t.Fatalf("%d requests sent", n)
			}
		})
	}
}

// A batch past the body limit (130 kB) is split, its events kept in order.
func TestLargeRequestsAreSplit(t *testing.T) {
	now := time.Now()
	rc := newReceiver(t, mid, secret)
	s := newSink(t, rc, now)
	it := `{"product":{"id":"p","name":"` + strings.Repeat("n", 100) + `","category":"` + strings.Repeat("c", 100) + `","manufacturer":"` + strings.Repeat("m", 100) + `"},"quantity":1}`
	var b sink.Batch
	b.ID, b.Attempt = "big", 1
	for i := range 25 {
		lis := make([]string, 20)
		for j := range lis {
			lis[j] = it
		}
		b.Messages = append(b.Messages, trackHit(fmt.Sprint(i), now.UnixMilli(), lis))
	}
	if _, err := s.Deliver(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	rc.noViolations(t)
	reqs := rc.requests()
	n := 0
	for _, r := range reqs {
		if len(r.raw) > ga4sink.MaxBodyBytes {
			t.Fatalf("a body of %d bytes", len(r.raw))
		}
		for _, e := range r.Events {
			if e.Params[ga4sink.EventIDParam] != fmt.Sprint(n) {
				t.Fatalf("event %v, want %d", e.Params[ga4sink.EventIDParam], n)
			}
			n++
		}
	}
	if len(reqs) < 2 || n != 25 {
		t.Fatalf("%d requests, %d events", len(reqs), n)
	}
}
