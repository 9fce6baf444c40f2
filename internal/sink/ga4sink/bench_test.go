package ga4sink_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/sink/ga4sink"
	"github.com/sluicehq/sluice/internal/sink/sinktest"
)

const benchEvents = 20_000

// benchCollector reads each request and counts its events.
func benchCollector(b *testing.B) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n.Add(int64(bytes.Count(body, []byte(`"name":`))))
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	return srv, &n
}

// BenchmarkHookGA4 delivers 20k stored events of 5 users through a
// google_analytics hook (mapped, limits checked, one request per user of
// up to 25 events), in batches of 25 (the default), 100 and 500, to a
// loopback collector; BenchmarkBaselineGA4 posts the
// same number of events in prebuilt 25-event requests to the same
// collector.
func BenchmarkHookGA4(b *testing.B) {
	srv, _ := benchCollector(b)
	h := sinktest.NewHost(b, ga4sink.Destination(), nil)
	h.Fill(b, benchEvents, 5)
	for _, size := range []int{25, 100, 500} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			h.Bench(b, benchEvents, func() hook.Hook {
				return hook.Hook{Name: "bench", Active: true, Events: []string{"in.gen.calltrack.*"}, Type: ga4sink.Type, MaxBatchSize: size,
					Settings:   &ga4sink.Settings{MeasurementID: "G-BENCH1", APISecret: "s", Endpoint: ga4sink.EndpointCustom, CollectURL: srv.URL + "/mp/collect"},
					CustomData: map[string]string{"campaign": "{{event.data.campaign}}"}}
			})
		})
	}
}

func BenchmarkBaselineGA4(b *testing.B) {
	srv, got := benchCollector(b)
	body := []byte(`{"client_id":"1417032657.2168107189","user_id":"u-1","timestamp_micros":1795428000000000,"events":[`)
	for i := range 25 {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, fmt.Sprintf(`{"name":"call","params":{"campaign":"black-friday","sluice_event_id":"75305708421120%05d"}}`, i)...)
	}
	body = append(body, "]}"...)
	client := &http.Client{}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		got.Store(0)
		for got.Load() < benchEvents {
			resp, err := client.Post(srv.URL+"/mp/collect?measurement_id=G-BENCH1&api_secret=s", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	b.ReportMetric(float64(benchEvents*b.N)/time.Since(start).Seconds(), "events/s")
}
