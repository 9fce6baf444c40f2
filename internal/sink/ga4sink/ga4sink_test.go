package ga4sink_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/ga4sink"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const (
	mid    = "G-TEST1234"
	secret = "mp-secret-value"
)

var loopback = &sink.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}

func newSink(t *testing.T, rc *receiver, now time.Time, userProps ...string) *ga4sink.Sink {
	t.Helper()
	s, err := ga4sink.New(ga4sink.Config{CollectURL: rc.URL + "/mp/collect", ValidationURL: rc.URL + "/debug/mp/collect",
		MeasurementID: mid, APISecret: secret, UserProperties: userProps, Guard: loopback, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// goldenCase is a hook message with what the loop would give beside it.
type goldenCase struct {
	Message json.RawMessage `json:"message"`
	Custom  []struct {
		Name   string          `json:"name"`
		Metric bool            `json:"metric"`
		Value  json.RawMessage `json:"value"`
	} `json:"custom"`
	Profile        *sink.Profile `json:"profile"`
	UserProperties []string      `json:"user_properties"`
}

// Each mapping has a golden file: a message in (testdata/*.case.json, an
// event as the ingest goldens store it, with custom_data), the requests
// the collector received out; each follows the protocol's rules.
func TestMappingGoldens(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.case.json")
	if len(files) < 12 {
		t.Fatalf("%d cases", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".case.json")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var c goldenCase
			if err := json.Unmarshal(raw, &c); err != nil {
				t.Fatal(err)
			}
			var ev struct {
				ID   string `json:"id"`
				Key  string `json:"key"`
				Time int64  `json:"time"`
				PID  uint32 `json:"projectId"`
			}
			json.Unmarshal(c.Message, &ev)
			now := time.UnixMilli(ev.Time).Add(time.Hour)
			rc := newReceiver(t, mid, secret)
			rc.now = func() time.Time { return now }
			s := newSink(t, rc, now, c.UserProperties...)
			md := sink.Meta{EventID: ev.ID, Key: ev.Key, ProjectID: ev.PID, Profile: c.Profile}
			for _, cu := range c.Custom {
				md.Custom = append(md.Custom, sink.Custom{Name: cu.Name, Metric: cu.Metric, Value: cu.Value})
			}
			if _, err := s.Deliver(context.Background(), &sink.Batch{ID: "b1", Messages: [][]byte{c.Message}, Attempt: 1, Meta: []sink.Meta{md}}); err != nil {
				t.Fatal(err)
			}
			rc.noViolations(t)
			var got bytes.Buffer
			got.WriteString("[\n")
			for i, r := range rc.requests() {
				if i > 0 {
					got.WriteString(",\n")
				}
				json.Indent(&got, r.raw, "", "  ")
			}
			got.WriteString("\n]\n")
			golden := filepath.Join("testdata", name+".golden.json")
			if *update {
				os.WriteFile(golden, got.Bytes(), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("requests differ from %s:\n%s", golden, got.String())
			}
		})
	}
}

// message is a hook message of a calltrack call by user, at time ms.
func message(id, user string, ms int64, data string) []byte {
	return []byte(fmt.Sprintf(`{"key":"in.gen.calltrack.call","channel":"http","service":"calltrack","name":"call","projectId":7,"data":%s,"id":%q,"time":%d,"dialect":"webhook","receivedAt":%d,"identities":[{"type":"user_id","value":%q}],"custom_data":{},"is_test":false}`,
		data, id, ms, ms, user))
}

// A request carries one user's events at one time, at most 25 of them;
// the batch of 120 events of two users in two seconds (30 events of each
// user each second) is 8 requests.
func TestRequestsPerUserWithinTheLimit(t *testing.T) {
	now := time.Now()
	rc := newReceiver(t, mid, secret)
	s := newSink(t, rc, now)
	b := &sink.Batch{ID: "b-group", Attempt: 1}
	for i := range 120 {
		user := []string{"alice", "bob"}[i%2]
		ms := now.Add(-time.Duration(i/60) * time.Second).UnixMilli()
		b.Messages = append(b.Messages, message(fmt.Sprint(i), user, ms, `{}`))
	}
	rep, err := s.Deliver(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	rc.noViolations(t)
	reqs := rc.requests()
	if len(reqs) != 8 || rep.Response != "120 events in 8 requests" {
		t.Fatalf("%d requests, %q", len(reqs), rep.Response)
	}
	seen := map[string]bool{}
	for _, r := range reqs {
		if len(r.Events) > 25 || r.UserID == "" || r.ClientID != ga4sink.DerivedClientID("user_id:"+r.UserID) {
			t.Fatalf("request of %d events, user %q, client %q", len(r.Events), r.UserID, r.ClientID)
		}
		for _, e := range r.Events {
			id := e.Params[ga4sink.EventIDParam].(string)
			if seen[id] {
				t.Fatalf("event %s twice", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != 120 {
		t.Fatalf("%d events", len(seen))
	}
	if !strings.Contains(rep.Request.URL, "api_secret=%5Bredacted%5D") || strings.Contains(rep.Request.URL, secret) {
		t.Fatalf("the report's URL %s", rep.Request.URL)
	}
}

// An attempt after a partial failure sends only the requests the
// collector did not take: no duplicates in GA4.
func TestARetrySendsOnlyWhatFailed(t *testing.T) {
	now := time.Now()
	rc := newReceiver(t, mid, secret)
	s := newSink(t, rc, now)
	b := &sink.Batch{ID: "b-partial", Attempt: 1}
	for i, u := range []string{"alice", "bob", "carol"} {
		b.Messages = append(b.Messages, message(fmt.Sprint(i), u, now.UnixMilli(), `{}`))
	}
	// Alice's request goes through, Bob's fails (once): Carol's waits.
	bobFailed := false
	rc.mu.Lock()
	rc.failWhen = func(r gaRequest) bool {
		if r.UserID == "bob" && !bobFailed {
			bobFailed = true
			return true
		}
		return false
	}
	rc.mu.Unlock()
	_, err := s.Deliver(context.Background(), b)
	var se *sink.Error
	if !errors.As(err, &se) || se.Class != sink.ClassStatus || se.Permanent || len(rc.requests()) != 1 {
		t.Fatalf("first attempt: %v, %d requests", err, len(rc.requests()))
	}
	rep, err := s.Deliver(context.Background(), &sink.Batch{ID: b.ID, Attempt: 2, Messages: b.Messages})
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]int{}
	for _, r := range rc.requests() {
		users[r.UserID]++
	}
	if users["alice"] != 1 || users["bob"] != 1 || users["carol"] != 1 || rep.Response != "3 events in 3 requests (1 sent before)" {
		t.Fatalf("requests by user %v, %q", users, rep.Response)
	}
}
