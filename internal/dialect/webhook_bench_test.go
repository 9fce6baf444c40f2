package dialect

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
)

// benchPayload is the load tool's default webhook body (~500 bytes).
const benchPayload = `{"call_id":"c7f1b2a4-9d3e-4f5a-8b6c-1d2e3f4a5b6c","caller":"+79990000000","called":"+74950000000","duration":187,"status":"answered","campaign":"autumn-sale","utm_source":"google","utm_medium":"cpc","utm_campaign":"brand","utm_term":"buy shoes","utm_content":"ad-42","landing":"https://shop.example.com/sale?utm_source=google","manager":"Ivan Petrov","tags":["new","mobile"],"recording":"https://calls.example.com/rec/c7f1b2a4.mp3","started_at":"2026-11-23T10:15:00Z","city":"Moscow","amount":1999.5}`

// BenchmarkWebhookDecode measures the decode path of one JSON postback:
// routing, body parsing, project lookup and building the event.
func BenchmarkWebhookDecode(b *testing.B) {
	projects := fixtureProjects(b)
	gen, _ := event.NewGenerator(0, nil)
	w := &Webhook{Projects: projects, NewUID: gen.Next}
	body := []byte(benchPayload)
	hr := httptest.NewRequest(http.MethodPost, "/calltrack/call/99", strings.NewReader(benchPayload))
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("User-Agent", "bench")
	now := time.Now()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decode(w, &Request{HTTP: hr, Body: body, ClientIP: "127.0.0.1", ReceivedAt: now}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWebhookDecodeQueryMerge adds query parameters, which rebuild
// the data object instead of reusing the compacted body.
func BenchmarkWebhookDecodeQueryMerge(b *testing.B) {
	projects := fixtureProjects(b)
	gen, _ := event.NewGenerator(0, nil)
	w := &Webhook{Projects: projects, NewUID: gen.Next}
	body := []byte(benchPayload)
	hr := httptest.NewRequest(http.MethodPost, "/calltrack/call/99?utm_source=mail&extra=1", strings.NewReader(benchPayload))
	hr.Header.Set("Content-Type", "application/json")
	now := time.Now()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decode(w, &Request{HTTP: hr, Body: body, ClientIP: "127.0.0.1", ReceivedAt: now}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBaselineJSONUnmarshal decodes the same body into a map with
// encoding/json: the yardstick for BenchmarkWebhookDecode in the same run.
func BenchmarkBaselineJSONUnmarshal(b *testing.B) {
	body := []byte(benchPayload)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			b.Fatal(err)
		}
	}
}
