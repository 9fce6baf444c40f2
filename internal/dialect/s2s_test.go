package dialect

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/project"
)

func s2sFixture(t testing.TB) (*S2S, *project.Project) {
	projects := fixtureProjects(t)
	ctx := context.Background()
	id := uint32(40)
	p, err := projects.Create(ctx, &id, "app", project.Settings{AppID: "app-fuzz", DefaultRegion: "IR", HashPII: true})
	if err != nil {
		t.Fatal(err)
	}
	projects.CreateEventType(ctx, project.EventType{ProjectID: 40, Slug: "slug1", Kind: project.KindAction})
	projects.CreateEventType(ctx, project.EventType{ProjectID: 40, Slug: "buy", Kind: project.KindRevenue})
	now := time.UnixMilli(1680004800000)
	return &S2S{Projects: projects, Now: func() time.Time { return now }}, &p
}

func s2sRequest(body []byte) *Request {
	hr := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(body)))
	hr.Header.Set("Content-Type", "application/json")
	return &Request{HTTP: hr, Body: body, ClientIP: "127.0.0.1", ReceivedAt: time.UnixMilli(1680004800000)}
}

// FuzzS2SDecode: a batch is stored whole or refused whole with the seed's
// codes, never half, and never with a panic; with hash_pii no raw phone
// number or e-mail address reaches an event.
func FuzzS2SDecode(f *testing.F) {
	f.Add([]byte(`{"customUserId":"u","messages":[{"type":"user","id":"1","time":1680000000000,"phoneNumber":"09121122333","email":"a@b.co","customAttributes":{"k":"v"}}]}`))
	f.Add([]byte(`{"metrixUserId":"m","messages":[{"type":"action","id":"2","time":1680000000000,"name":"slug1","attributes":{"a":"b"}},{"type":"revenue","id":"3","time":1680000000000,"name":"buy","revenue":1.5,"currency":"IRR"}]}`))
	f.Add([]byte(`{"customUserId":"u","messages":[{"type":"user","id":"1","time":1680000000000,"phone":"+98917*******"}]}`))
	f.Add([]byte(`{"messages":[]}`))
	d, p := s2sFixture(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := s2sEvents(d, p, s2sRequest(body))
		if err != nil {
			var de *Error
			if !errors.As(err, &de) || (de.Status != 400 && de.Status != 404) || de.Code == "" || de.Message == "" {
				t.Fatalf("error %#v", err)
			}
			if de.Status == 404 && de.Code != CodeEventTypeDoesNotExist || de.Status == 400 && de.Code != CodeBadRequest {
				t.Fatalf("status %d with code %s", de.Status, de.Code)
			}
			if evs != nil {
				t.Fatal("events and an error")
			}
			return
		}
		var env struct{ Messages []json.RawMessage }
		if json.Unmarshal(body, &env) != nil || len(evs) != len(env.Messages) || len(evs) == 0 {
			t.Fatalf("%d events for %d messages", len(evs), len(env.Messages))
		}
		for _, e := range evs {
			if err := e.Validate(); err != nil {
				t.Fatalf("invalid event %+v: %v", e, err)
			}
			if !strings.HasPrefix(e.Key, "in.s2s.") || !strings.HasPrefix(e.DedupKey, "s2s:") || len(e.Identities) == 0 {
				t.Fatalf("event %+v", e)
			}
			var m map[string]json.RawMessage
			json.Unmarshal(e.Data, &m)
			for _, raw := range []string{"phoneNumber", "phone", "email"} {
				if _, ok := m[raw]; ok {
					t.Fatalf("hash_pii: raw %s stored: %s", raw, e.Data)
				}
			}
		}
	})
}

// benchBatch is a request of n action messages, as the load tool sends.
func benchBatch(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"customUserId":"bench-user-1","messages":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"type":"action","id":"run-` + strconv.Itoa(i) + `","time":1680000000000,"name":"slug1","attributes":{"order_id":"12","product_id":"20","channel":"web"}}`)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkS2SDecode100 decodes and validates a batch of 100 actions into
// events (reported per event).
func BenchmarkS2SDecode100(b *testing.B) {
	d, p := s2sFixture(b)
	body := benchBatch(100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s2sEvents(d, p, s2sRequest(body)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/event")
}

// s2sEvents decodes an s2s request of project p into its events.
func s2sEvents(d *S2S, p *project.Project, r *Request) ([]*event.Event, error) {
	r.Project = p
	dec, err := d.Decode(r)
	if err != nil {
		return nil, err
	}
	evs, _ := dec.Events()
	return evs, nil
}
