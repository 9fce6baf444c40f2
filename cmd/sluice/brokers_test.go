package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A Kafka hook declared in the config file, through the real server:
// every acknowledged webhook event becomes one record, with the raw
// request as content (include_content).
func TestProvisionedKafkaHookThroughTheServer(t *testing.T) {
	c := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "e2e"))
	defer c.Close()
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfg, []byte(`hooks:
  allow_networks: [127.0.0.0/8]
  provision:
    - id: calls-to-kafka
      name: calls to kafka
      active: true
      events: [in.gen.calltrack.*]
      type: kafka
      include_content: true
      kafka: {brokers: [`+strings.Join(c.ListenAddrs(), ",")+`], topic: e2e}
      custom_data: {campaign: Black Friday}
`), 0o600)
	s := startServer(t, t.TempDir(), "--config", cfg)
	acked := map[string]string{} // event id → raw query
	for i := 0; i < 50; i++ {
		q := "n=" + strconv.Itoa(i) + "&phone=7999"
		r := do(t, "GET", s.ingest+"/calltrack/call/0?"+q, "", "")
		var a struct{ ID string }
		if r.status != 200 || json.Unmarshal(r.body, &a) != nil {
			t.Fatalf("ingest %d %s", r.status, r.body)
		}
		acked[a.ID] = q
	}
	do(t, "GET", s.ingest+"/other/call/0", "", "") // not matched
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("e2e"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]map[string]any{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(got) < 50 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var m map[string]any
			if err := json.Unmarshal(r.Value, &m); err != nil {
				t.Errorf("record %s: %v", r.Value, err)
				return
			}
			got[m["id"].(string)] = m
		})
	}
	if len(got) != 50 {
		t.Fatalf("%d records of 50", len(got))
	}
	for id, q := range acked {
		m := got[id]
		if m == nil || m["content"] != q || m["custom_data"].(map[string]any)["campaign"] != "Black Friday" || m["key"] != "in.gen.calltrack.call" {
			t.Fatalf("record of %s: %v", id, m)
		}
	}
	// The hook is listed with its declared id.
	r := do(t, "GET", s.admin+"/api/v1/hooks/calls-to-kafka", "", "", "Authorization", "Bearer "+testAdminToken)
	if r.status != 200 || !strings.Contains(string(r.body), `"type":"kafka"`) {
		t.Fatalf("hook: %d %s", r.status, r.body)
	}
}
