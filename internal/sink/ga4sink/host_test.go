package ga4sink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/project"
	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/ga4sink"
	"github.com/sluicehq/sluice/internal/sink/sinktest"
)

func settings(rc *receiver) *ga4sink.Settings {
	return &ga4sink.Settings{MeasurementID: mid, APISecret: secret, Endpoint: ga4sink.EndpointCustom,
		CollectURL: rc.URL + "/mp/collect", Timeout: sink.Duration(2 * time.Second)}
}

// received lists the events the collector took (and, as tests, those the
// validation endpoint saw).
func (rc *receiver) received(testing.TB) []sinktest.Received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []sinktest.Received
	for i, reqs := range [][]gaRequest{rc.collected, rc.validated} {
		for _, r := range reqs {
			for _, e := range r.Events {
				id, _ := e.Params[ga4sink.EventIDParam].(string)
				out = append(out, sinktest.Received{EventID: id, IsTest: i == 1, CustomData: e.Params, Raw: [2]any{r, e}})
			}
		}
	}
	return out
}

// The google_analytics type passes the conformance suite against the
// loopback collector, and no request breaks the protocol's rules.
func TestConformance(t *testing.T) {
	rc := newReceiver(t, mid, secret)
	sinktest.Run(t, sinktest.Target{
		Destination: ga4sink.Destination(),
		Settings:    func() sink.Settings { return settings(rc) },
		Received:    rc.received,
		Fail:        func(_ testing.TB, on bool) { rc.fail.Store(on) },
		Check: func(t testing.TB, got sinktest.Received, sent *event.Event) {
			pair := got.Raw.([2]any)
			r, e := pair[0].(gaRequest), pair[1].(gaEvent)
			user := sent.Identities[0].Value
			if e.Name != "call" || r.UserID != user || r.ClientID != ga4sink.DerivedClientID("user_id:"+user) || r.TimestampMicros.String() != fmt.Sprint(sent.Time*1000) {
				t.Fatalf("request %+v event %+v", r, e)
			}
		},
	})
	rc.noViolations(t)
}

// The seed's track hit (as the track dialect stores it) reaches GA4 as a
// purchase with its two items, through a hook.
func TestTrackSeedHitArrivesAsAPurchase(t *testing.T) {
	rc := newReceiver(t, mid, secret)
	h := sinktest.NewHost(t, ga4sink.Destination(), &project.Settings{Track: project.TrackSettings{
		CustomDimensions: []project.CustomField{{Name: "source", Path: "event.source"}}}})
	var golden struct {
		Stored []event.Event `json:"stored"`
	}
	raw, err := os.ReadFile("../../ingest/testdata/track/seed_example.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &golden); err != nil || len(golden.Stored) != 1 {
		t.Fatalf("%v", err)
	}
	ev := golden.Stored[0]
	now := time.Now().UnixMilli()
	ev.ID, ev.ProjectID, ev.Time, ev.ReceivedAt = 0, sinktest.ProjectID, now, now // sent now
	pid := uint32(sinktest.ProjectID)
	if _, err := h.M.Create(context.Background(), hook.Hook{Name: "ga4", Active: true, ProjectID: &pid, Events: []string{"in.track.**"},
		Type: ga4sink.Type, Settings: settings(rc)}, hook.Start{}); err != nil {
		t.Fatal(err)
	}
	stored := h.Append(t, &ev)
	sinktest.WaitFor(t, "the purchase", func() bool { return len(rc.requests()) == 1 })
	rc.noViolations(t)
	r := rc.requests()[0]
	if r.ClientID != "13332315.454547" || r.UserID != "u2783187492" || len(r.Events) != 1 {
		t.Fatalf("request %+v", r)
	}
	e := r.Events[0]
	p := e.Params
	items, _ := p["items"].([]any)
	if e.Name != "purchase" || p["transaction_id"] != "4686570087" || fmt.Sprint(p["value"]) != "3029" || p["currency"] != "RUB" ||
		p["source"] != "CRM" || p[ga4sink.EventIDParam] != stored[0].ID.String() || len(items) != 2 {
		t.Fatalf("event %+v", e)
	}
	for _, it := range items {
		m := it.(map[string]any)
		if m["item_id"] != "64800237" || m["item_name"] != "ESTEE LAUDER Beautiful Belle" || m["item_brand"] != "ESTEE LAUDER" ||
			fmt.Sprint(m["price"]) != "3029" || fmt.Sprint(m["quantity"]) != "1" || fmt.Sprint(m["discount"]) != "2020" {
			t.Fatalf("item %v", m)
		}
	}
}

// A batch GA4 cannot take is parked at the first attempt, whatever the
// retries, with the reason as its last error.
func TestABatchBeyondTheLimitsIsParkedAtOnce(t *testing.T) {
	rc := newReceiver(t, mid, secret)
	h := sinktest.NewHost(t, ga4sink.Destination(), nil)
	pid := uint32(sinktest.ProjectID)
	created, err := h.M.Create(context.Background(), hook.Hook{Name: "ga4", Active: true, ProjectID: &pid, Events: []string{"in.gen.**"},
		Type: ga4sink.Type, Settings: settings(rc), RetryTimes: new(3), RetryPeriod: hook.Duration(time.Hour),
		CustomData: map[string]string{"note": "{{event.data.note}}"}}, hook.Start{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	evs := h.Append(t, &event.Event{Key: "in.gen.crm.lead", Channel: event.ChannelHTTP, Service: "crm", Name: "lead", ProjectID: pid,
		Data: json.RawMessage(`{"note":"` + strings.Repeat("x", 150) + `"}`), Time: now, Dialect: "webhook", ReceivedAt: now})
	var dls []hook.DeadLetter
	sinktest.WaitFor(t, "the dead letter", func() bool {
		dls, _ = h.M.DeadLetters(context.Background(), created.ID, hook.DeadLetterQuery{})
		return len(dls) == 1
	})
	want := fmt.Sprintf("invalid: GA4 cannot take the batch: event %s (lead): parameter note is 150 characters long; GA4 takes at most 100", evs[0].ID)
	if dls[0].Attempts != 1 || dls[0].LastError != want {
		t.Fatalf("dead letter %+v\nwant %s", dls[0], want)
	}
	d, _ := h.M.Deliveries(context.Background(), created.ID, 10)
	if len(d) != 1 || d[0].ErrorClass != sink.ClassInvalid || d[0].NextAttemptAt != nil {
		t.Fatalf("attempts %+v", d)
	}
	if len(rc.requests()) != 0 {
		t.Fatal("something was sent")
	}
}

// The pre-test goes to the validation endpoint and shows its messages;
// nothing is collected.
func TestPreTestShowsTheValidationMessages(t *testing.T) {
	rc := newReceiver(t, mid, secret)
	h := sinktest.NewHost(t, ga4sink.Destination(), nil)
	pid := uint32(sinktest.ProjectID)
	created, err := h.M.Create(context.Background(), hook.Hook{Name: "ga4", ProjectID: &pid, Events: []string{"in.track.**"},
		Type: ga4sink.Type, Settings: settings(rc)}, hook.Start{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	// A transaction with a value and no currency: GA4 says so.
	sample := fmt.Sprintf(`{"key":"in.track.transaction.completed","channel":"http","service":"track","name":"Completed Transaction","projectId":7,`+
		`"data":{"event":{"name":"Completed Transaction","transaction":{"orderId":"o-1","total":10}}},"id":"1","time":%d,"dialect":"track","receivedAt":%d}`, now, now)
	res, err := h.M.Test(context.Background(), created.ID, json.RawMessage(sample))
	if err != nil {
		t.Fatal(err)
	}
	if res.Delivered || res.Status != 200 || res.Error != "invalid: GA4 validation: events[0].params.currency: currency is required when value is set (VALUE_REQUIRED)" ||
		!strings.Contains(res.Response, `"validationMessages":[{"fieldPath":"events[0].params.currency"`) ||
		!strings.HasPrefix(res.Request.URL, rc.URL+"/debug/mp/collect?") || strings.Contains(res.Request.URL, secret) {
		t.Fatalf("%+v", res)
	}
	// With a currency it passes.
	res, err = h.M.Test(context.Background(), created.ID, json.RawMessage(strings.Replace(sample, `"total":10`, `"total":10,"currency":"RUB"`, 1)))
	if err != nil || !res.Delivered || res.Error != "" || !strings.Contains(res.Response, `"validationMessages":[]`) {
		t.Fatalf("%+v %v", res, err)
	}
	if len(rc.requests()) != 0 || len(rc.validated) != 2 {
		t.Fatalf("%d collected, %d validated", len(rc.requests()), len(rc.validated))
	}
}

// The settings are checked when the hook is saved; the endpoints are
// Google's, the EU's, or a collector's with its validation endpoint.
func TestSettings(t *testing.T) {
	d, _ := hook.NewDestinations([]sink.Destination{ga4sink.Destination()})
	for js, want := range map[string]string{
		`{"measurement_id":"G-ABC123","api_secret":"s"}`:                                                 "",
		`{"measurement_id":"UA-1234-1","api_secret":"s"}`:                                                "google_analytics.measurement_id: required: the web stream's measurement id",
		`{"measurement_id":"G-ABC123"}`:                                                                  "google_analytics.api_secret: required",
		`{"measurement_id":"G-ABC123","api_secret":"s","endpoint":"us"}`:                                 "google_analytics.endpoint: global, eu or custom",
		`{"measurement_id":"G-ABC123","api_secret":"s","endpoint":"custom"}`:                             "google_analytics.collect_url: required",
		`{"measurement_id":"G-ABC123","api_secret":"s","collect_url":"https://x.example/"}`:              "google_analytics.collect_url: only with endpoint: custom",
		`{"measurement_id":"G-ABC123","api_secret":"s","user_properties":["tier","ga_tier"]}`:            `google_analytics.user_properties[1]: user property name "ga_tier" starts with the reserved prefix ga_`,
		`{"measurement_id":"G-ABC123","api_secret":"s","user_properties":["a_very_long_name_over_245"]}`: "longer than 24 characters",
	} {
		var h hook.Hook
		if err := json.Unmarshal([]byte(`{"name":"g","events":["in.*"],"type":"google_analytics","google_analytics":`+js+`}`), &h); err != nil {
			t.Fatal(err)
		}
		err := d.Check(h)
		if (want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", js, err, want)
		}
	}
	for _, c := range []struct {
		s                   ga4sink.Settings
		collect, validation string
	}{
		{ga4sink.Settings{Endpoint: ga4sink.EndpointGlobal}, "https://www.google-analytics.com/mp/collect", "https://www.google-analytics.com/debug/mp/collect"},
		{ga4sink.Settings{Endpoint: ga4sink.EndpointEU}, "https://region1.google-analytics.com/mp/collect", "https://region1.google-analytics.com/debug/mp/collect"},
		{ga4sink.Settings{Endpoint: ga4sink.EndpointCustom, CollectURL: "https://owox.example/ga/mp/collect"}, "https://owox.example/ga/mp/collect", "https://owox.example/ga/debug/mp/collect"},
		{ga4sink.Settings{Endpoint: ga4sink.EndpointCustom, CollectURL: "https://c.example/in", ValidationURL: "https://c.example/check"}, "https://c.example/in", "https://c.example/check"},
		{ga4sink.Settings{Endpoint: ga4sink.EndpointCustom, CollectURL: "https://c.example/in"}, "https://c.example/in", "https://c.example/in"},
	} {
		if col, val := c.s.URLs(); col != c.collect || val != c.validation {
			t.Errorf("%+v: %s %s", c.s, col, val)
		}
	}
}
