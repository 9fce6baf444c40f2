package bigquerysink_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/bigquerysink"
	"github.com/sluicehq/sluice/internal/sink/sinktest"
)

var loopback = &sink.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}

func settings(s *bqServer, table string) *bigquerysink.Settings {
	return &bigquerysink.Settings{Project: s.project, Dataset: "analytics", Table: table, Credentials: s.keyJSON(), Endpoint: s.URL,
		Timeout: sink.Duration(3 * time.Second)}
}

// The bigquery type passes the conformance suite against the loopback
// API, with a service account's token; no request breaks the API's rules.
func TestConformance(t *testing.T) {
	srv := newBQServer(t)
	sinktest.Run(t, sinktest.Target{
		Destination: bigquerysink.Destination(),
		Settings:    func() sink.Settings { return settings(srv, "conformance") },
		Received: func(testing.TB) []sinktest.Received {
			var out []sinktest.Received
			for _, r := range srv.stored("analytics.conformance") {
				var cd map[string]any
				json.Unmarshal([]byte(r.JSON["custom_data"].(string)), &cd)
				out = append(out, sinktest.Received{EventID: r.JSON["id"].(string), IsTest: r.JSON["is_test"] == true, CustomData: cd, Raw: r})
			}
			return out
		},
		Fail: func(_ testing.TB, on bool) { srv.mu.Lock(); srv.fail = on; srv.mu.Unlock() },
		Check: func(t testing.TB, got sinktest.Received, sent *event.Event) {
			r := got.Raw.(storedRow).JSON
			want := map[string]any{"project_id": float64(sent.ProjectID), "key": sent.Key, "channel": "http", "service": "calltrack", "name": "call",
				"dialect": "webhook", "uid": "", "data": string(sent.Data), "time": time.UnixMilli(sent.Time).UTC().Format("2006-01-02T15:04:05.000000Z"),
				"received_at": time.UnixMilli(sent.ReceivedAt).UTC().Format("2006-01-02T15:04:05.000000Z"),
				"identities":  `[{"type":"user_id","value":"` + sent.Identities[0].Value + `"}]`}
			for k, v := range want {
				if r[k] != v {
					t.Fatalf("column %s = %#v, want %#v", k, r[k], v)
				}
			}
			if got.Raw.(storedRow).InsertID != sent.ID.String() || !strings.HasPrefix(r["batch_id"].(string), "msg_") {
				t.Fatalf("insertId %q batch %v", got.Raw.(storedRow).InsertID, r["batch_id"])
			}
		},
	})
	srv.noViolations(t)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.tokens == 0 {
		t.Fatal("no token was fetched")
	}
}

// An s2s revenue reaches BigQuery as a row, through a hook; the table is
// created (once) with the documented schema, partitioning and clustering.
func TestS2SRevenueArrivesAsARow(t *testing.T) {
	srv := newBQServer(t)
	h := sinktest.NewHost(t, bigquerysink.Destination(), nil)
	pid := uint32(sinktest.ProjectID)
	if _, err := h.M.Create(context.Background(), hook.Hook{Name: "bq", Active: true, ProjectID: &pid, Events: []string{"in.s2s.revenue.*"},
		Type: bigquerysink.Type, Settings: settings(srv, "revenue"), CustomData: map[string]string{"source": "s2s"}}, hook.Start{}); err != nil {
		t.Fatal(err)
	}
	data := `{"type":"revenue","id":"b2c1d1f0-0000-4000-8000-000000000002","time":1680000000000,"name":"buy","revenue":53.7,"currency":"IRR"}`
	evs := h.Append(t, &event.Event{Key: "in.s2s.revenue.buy", Channel: event.ChannelHTTP, Service: "s2s", Name: "buy", ProjectID: pid,
		Data: json.RawMessage(data), Time: 1680000000000, Dialect: "s2s", ReceivedAt: 1680004800000,
		Identities: []event.Identity{{Type: "custom_user_id", Value: "r.akbari"}}})
	sinktest.WaitFor(t, "the row", func() bool { return len(srv.stored("analytics.revenue")) == 1 })
	srv.noViolations(t)
	r := srv.stored("analytics.revenue")[0]
	want := map[string]any{"id": evs[0].ID.String(), "project_id": float64(7), "key": "in.s2s.revenue.buy", "time": "2023-03-28T10:40:00.000000Z",
		"received_at": "2023-03-28T12:00:00.000000Z", "dialect": "s2s", "service": "s2s", "name": "buy", "data": data,
		"custom_data": `{"source":"s2s"}`, "identities": `[{"type":"custom_user_id","value":"r.akbari"}]`, "is_test": false}
	for k, v := range want {
		if r.JSON[k] != v {
			t.Errorf("column %s = %#v, want %#v", k, r.JSON[k], v)
		}
	}
	if r.InsertID != evs[0].ID.String() {
		t.Errorf("insertId %s", r.InsertID)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if got := strings.Join(srv.calls, "\n"); !strings.HasPrefix(got, "POST /token\nGET /bigquery/v2/projects/test-project/datasets/analytics/tables/revenue\n"+
		"POST /bigquery/v2/projects/test-project/datasets/analytics/tables\nPOST /bigquery/v2/projects/test-project/datasets/analytics/tables/revenue/insertAll") {
		t.Fatalf("calls:\n%s", got)
	}
}

func batch(id string, n int, data string) *sink.Batch {
	b := &sink.Batch{ID: id, Attempt: 1}
	for i := range n {
		b.Messages = append(b.Messages, []byte(fmt.Sprintf(`{"key":"in.gen.crm.lead","channel":"http","service":"crm","name":"lead","projectId":7,"td":{},"data":%s,"id":"%d","time":1700000000000,"dialect":"webhook","receivedAt":1700000000001,"custom_data":{},"is_test":false}`, data, 7000000000000000000+i)))
	}
	return b
}

// A batch sent twice is one row per event (insert ids); rows BigQuery
// refuses as invalid make a permanent error naming them; a status is a
// status; a table that went away is created again.
func TestDedupInvalidRowsAndStatus(t *testing.T) {
	srv := newBQServer(t)
	ctx := context.Background()
	s, err := bigquerysink.New(bigquerysink.Config{Project: srv.project, Dataset: "d", Table: "t", Credentials: []byte(srv.keyJSON()), Endpoint: srv.URL,
		CreateTable: true, Timeout: 3 * time.Second, Guard: loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 2 {
		if rep, err := s.Deliver(ctx, batch("b1", 3, `{"n":1}`)); err != nil || rep.Response != "3 rows streamed into test-project.d.t" {
			t.Fatalf("%+v %v", rep, err)
		}
	}
	if n := len(srv.stored("d.t")); n != 3 {
		t.Fatalf("%d rows after the same batch twice", n)
	}
	srv.mu.Lock()
	srv.invalidRow = "poison"
	srv.mu.Unlock()
	_, err = s.Deliver(ctx, batch("b2", 2, `{"poison":true}`))
	var se *sink.Error
	if !errors.As(err, &se) || !se.Permanent || se.Class != sink.ClassInvalid ||
		!strings.Contains(err.Error(), "row 0 (event 7000000000000000000): data: JSON parsing error") {
		t.Fatalf("invalid rows: %v", err)
	}
	srv.mu.Lock()
	srv.invalidRow, srv.fail = "", true
	srv.mu.Unlock()
	rep, err := s.Deliver(ctx, batch("b3", 1, `{}`))
	if !errors.As(err, &se) || se.Permanent || se.Class != sink.ClassStatus || rep.Status != 403 || !strings.Contains(rep.Response, "Access Denied") {
		t.Fatalf("403: %+v %v", rep, err)
	}
	srv.mu.Lock()
	srv.fail = false
	delete(srv.tables, "d.t")
	srv.mu.Unlock()
	if _, err := s.Deliver(ctx, batch("b4", 1, `{}`)); err == nil {
		t.Fatal("an insert into a missing table succeeded")
	}
	if _, err := s.Deliver(ctx, batch("b4", 1, `{"again":1}`)); err != nil {
		t.Fatalf("after the table was created again: %v", err)
	}
	srv.noViolations(t)
}

// The settings are checked when the hook is saved; the key is never
// quoted in an error.
func TestSettingsChecks(t *testing.T) {
	srv := newBQServer(t)
	key, _ := json.Marshal(srv.keyJSON())
	d, _ := hook.NewDestinations([]sink.Destination{bigquerysink.Destination()})
	for js, want := range map[string]string{
		`{"project":"my-project","dataset":"analytics","credentials":` + string(key) + `}`:      "",
		`{"project":"my-project","dataset":"analytics","endpoint":"http://127.0.0.1:9050"}`:     "",
		`{"project":"my-project","dataset":"analytics"}`:                                        "bigquery.credentials: required: a service account's JSON key",
		`{"project":"My_Project","dataset":"analytics","endpoint":"http://127.0.0.1:9050"}`:     "bigquery.project: required: a Google Cloud project id",
		`{"project":"my-project","dataset":"a-b","endpoint":"http://127.0.0.1:9050"}`:           "bigquery.dataset: required: letters, digits and underscores",
		`{"project":"my-project","dataset":"analytics","credentials":"{\"type\":\"user\"}"}`:    `bigquery.credentials: not a service account's JSON key: "type" is not "service_account"`,
		`{"project":"my-project","dataset":"analytics","credentials":"not json at all secret"}`: "bigquery.credentials: not a service account's JSON key (not JSON)",
		`{"project":"my-project","dataset":"analytics","endpoint":"ftp://x"}`:                   "bigquery.endpoint: an http:// or https:// URL",
	} {
		var h hook.Hook
		if err := json.Unmarshal([]byte(`{"name":"b","events":["in.*"],"type":"bigquery","bigquery":`+js+`}`), &h); err != nil {
			t.Fatal(err)
		}
		err := d.Check(h)
		if (want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", js, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the credentials are quoted: %v", err)
		}
	}
}
