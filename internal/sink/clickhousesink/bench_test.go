package clickhousesink_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/clickhousenode"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/sink/clickhousesink"
	"github.com/sluicehq/sluice/internal/sink/sinktest"
)

const benchEvents = 20_000

// BenchmarkHookClickHouse delivers 20k stored events through a clickhouse
// hook (batches of 1000, the default) into a real clickhouse-server
// 18.16.1; BenchmarkBaselineClickHouse inserts the same number of rows in
// prebuilt 1000-row JSONEachRow bodies into the same kind of table.
func BenchmarkHookClickHouse(b *testing.B) {
	n := clickhousenode.Start(b)
	h := sinktest.NewHost(b, clickhousesink.Destination(), nil)
	h.Fill(b, benchEvents, 1000)
	b.ResetTimer()
	h.Bench(b, benchEvents, func() hook.Hook {
		return hook.Hook{Name: "bench", Active: true, Events: []string{"in.gen.calltrack.*"}, Type: clickhousesink.Type,
			Settings:   &clickhousesink.Settings{URL: n.URL(), Table: "bench", Username: clickhousenode.User, Password: clickhousenode.Password},
			CustomData: map[string]string{"campaign": "{{event.data.campaign}}"}}
	})
}

func BenchmarkBaselineClickHouse(b *testing.B) {
	n := clickhousenode.Start(b)
	if _, err := n.Query(fmt.Sprintf(clickhousesink.Schema, "`default`.`bench`", "")); err != nil {
		b.Fatal(err)
	}
	row := `{"project_id":7,"key":"in.gen.calltrack.call","time":"2026-12-02 06:00:00","time_ms":1795428000000,"id":%d,"channel":"http","service":"calltrack","name":"call","dialect":"webhook","received_at":1795428000000,"uid":"","identities":"[{\"type\":\"user_id\",\"value\":\"u-1\"}]","data":"{\"amount\":1,\"phone\":\"79990000000\",\"campaign\":\"black-friday\"}","custom_data":"{\"campaign\":\"black-friday\"}","batch_id":"msg_x","is_test":0}` + "\n"
	var body strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&body, row, 7000000000000000000+i)
	}
	u := n.URL() + "/?" + url.Values{"query": {"INSERT INTO `default`.`bench` FORMAT JSONEachRow"}}.Encode()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for sent := 0; sent < benchEvents; sent += 1000 {
			req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader([]byte(body.String())))
			req.SetBasicAuth(clickhousenode.User, clickhousenode.Password)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatal(resp.Status)
			}
		}
	}
	b.ReportMetric(float64(benchEvents*b.N)/time.Since(start).Seconds(), "events/s")
}
