package hook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
)

// benchEvents is how many events each benchmark iteration delivers.
const benchEvents = 100_000

// benchReceiver is a loopback target that reads each batch whole and
// counts its messages (one "is_test" member per message). Its cost is
// what BenchmarkBaselineReceiver measures alone.
func benchReceiver(b *testing.B) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n.Add(int64(bytes.Count(body, []byte(`"is_test":`))))
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(srv.Close)
	return srv, &n
}

// fillLog stores n webhook-sized events in project 7.
func fillLog(f *fixture, n int) {
	const chunk = 5000
	now := time.Now().UnixMilli()
	for i := 0; i < n; i += chunk {
		evs := make([]*event.Event, 0, chunk)
		for j := i; j < i+chunk && j < n; j++ {
			evs = append(evs, &event.Event{Key: "in.gen.calltrack.call", Channel: event.ChannelHTTP, Service: "calltrack", Name: "call", ProjectID: 7,
				Data: json.RawMessage(`{"amount":` + strconv.Itoa(j) + `,"phone":"79990000000","campaign":"black-friday"}`), Time: now, Dialect: "webhook",
				ReceivedAt: now, TD: event.TD{IP: "203.0.113.7", UA: "curl/8.5"}, Identities: []event.Identity{{Type: "user_id", Value: "u-" + strconv.Itoa(j)}}})
		}
		if _, err := f.log.Append(context.Background(), evs); err != nil {
			f.t.Fatal(err)
		}
	}
}

// BenchmarkHookDeliver500 delivers 100k stored events through one hook in
// batches of 500 (signed, custom_data rendered) to a loopback receiver,
// with one batch in flight (log order) and with four.
func BenchmarkHookDeliver500(b *testing.B) {
	f := newFixture(b, true)
	srv, got := benchReceiver(b)
	fillLog(f, benchEvents)
	from := time.UnixMilli(0)
	for _, inflight := range []int{1, 4} {
		b.Run("inflight="+strconv.Itoa(inflight), func(b *testing.B) {
			start := time.Now()
			for i := 0; i < b.N; i++ {
				got.Store(0)
				h := Hook{Name: "bench", Active: true, Events: []string{"in.gen.calltrack.*"}, Type: "http",
					HTTP: &HTTPTarget{URL: srv.URL}, MaxBatchSize: 500, BatchTimeout: Duration(time.Second), MaxInFlight: inflight,
					CustomData: map[string]string{"id": "{{uuid}}", "date": "{{event_date}}", "campaign": "{{event.data.campaign}}"}}
				created, err := f.m.Create(context.Background(), h, Start{From: &from})
				if err != nil {
					b.Fatal(err)
				}
				for got.Load() < benchEvents {
					time.Sleep(time.Millisecond)
				}
				b.StopTimer()
				if err := f.m.Delete(context.Background(), created.ID); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(benchEvents*b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkBaselineReceiver is the receiver alone: the same number of
// events in batches of 500, pre-built, posted back to back by one client.
func BenchmarkBaselineReceiver(b *testing.B) {
	srv, got := benchReceiver(b)
	msg := []byte(`{"key":"in.gen.calltrack.call","channel":"http","service":"calltrack","name":"call","projectId":7,"td":{"ip":"203.0.113.7","ua":"curl/8.5"},"data":{"amount":12345,"phone":"79990000000","campaign":"black-friday"},"id":"7405398725063622656","time":1763900000000,"dialect":"webhook","receivedAt":1763900000000,"identities":[{"type":"user_id","value":"u-12345"}],"custom_data":{"campaign":"black-friday","date":"2025-11-23T12:13:20.000000Z","id":"5b7d8f0e-4d0e-4c55-9d8e-0f6f0c6b1a11"},"is_test":false}`)
	body := []byte{'['}
	for i := 0; i < 500; i++ {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, msg...)
	}
	body = append(body, ']')
	client := &http.Client{}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		got.Store(0)
		for got.Load() < benchEvents {
			resp, err := client.Post(srv.URL, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	b.ReportMetric(float64(benchEvents*b.N)/time.Since(start).Seconds(), "events/s")
}
