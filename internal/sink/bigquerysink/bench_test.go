package bigquerysink_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/option"

	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/sink/bigquerysink"
	"github.com/sluicehq/sluice/internal/sink/sinktest"
)

const benchEvents = 20_000

// BenchmarkHookBigQuery delivers 20k stored events through a bigquery hook
// (batches of 500, the default; a service account's token) to the
// loopback API, which checks every row; BenchmarkBaselineBigQuery streams
// the same number of prebuilt rows, 500 per insertAll, with the official
// client alone to the same kind of server.
func BenchmarkHookBigQuery(b *testing.B) {
	srv := newBQServer(b)
	h := sinktest.NewHost(b, bigquerysink.Destination(), nil)
	h.Fill(b, benchEvents, 1000)
	b.ResetTimer()
	h.Bench(b, benchEvents, func() hook.Hook {
		s := settings(srv, "bench")
		s.Timeout = 0
		return hook.Hook{Name: "bench", Active: true, Events: []string{"in.gen.calltrack.*"}, Type: bigquerysink.Type, Settings: s,
			CustomData: map[string]string{"campaign": "{{event.data.campaign}}"}}
	})
	b.StopTimer()
	srv.noViolations(b)
}

// bearer adds the loopback API's token (the baseline has no key).
type bearer struct{}

func (bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+accessToken)
	return http.DefaultTransport.RoundTrip(r)
}

type benchRow struct{ id string }

func (r benchRow) Save() (map[string]bigquery.Value, string, error) {
	return map[string]bigquery.Value{"id": r.id, "project_id": 7, "key": "in.gen.calltrack.call", "time": "2026-12-02T06:00:00.000000Z",
		"received_at": "2026-12-02T06:00:00.000000Z", "channel": "http", "service": "calltrack", "name": "call", "dialect": "webhook", "uid": "",
		"identities": `[{"type":"user_id","value":"u-1"}]`, "data": `{"amount":1,"phone":"79990000000","campaign":"black-friday"}`,
		"custom_data": `{"campaign":"black-friday"}`, "batch_id": "msg_x", "is_test": false}, r.id, nil
}

func BenchmarkBaselineBigQuery(b *testing.B) {
	srv := newBQServer(b)
	srv.tables["analytics.bench"] = map[string]any{}
	c, err := bigquery.NewClient(context.Background(), srv.project, option.WithEndpoint(srv.URL+"/bigquery/v2/"),
		option.WithHTTPClient(&http.Client{Transport: bearer{}}))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ins := c.Dataset("analytics").Table("bench").Inserter()
	rows := make([]benchRow, 500)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for sent := 0; sent < benchEvents; sent += 500 {
			for j := range rows {
				rows[j] = benchRow{id: strconv.Itoa(i) + "-" + strconv.Itoa(sent+j)}
			}
			if err := ins.Put(context.Background(), rows); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(benchEvents*b.N)/time.Since(start).Seconds(), "events/s")
}
