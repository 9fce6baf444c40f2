package kafkasink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/kafkasink"
	"github.com/sluicehq/sluice/internal/sink/sinktest"
)

// The kafka type passes the conformance suite on franz-go's kfake
// cluster (the real protocol), failing by refusing produce requests.
func TestConformance(t *testing.T) {
	c := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "conf"), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "conf", "conformance-secret"))
	defer c.Close()
	var refuse atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !refuse.Load() {
			return nil, nil, false
		}
		pr := req.(*kmsg.ProduceRequest)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		for _, tp := range pr.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = tp.Topic
			for _, p := range tp.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, kerr.NotEnoughReplicas.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	var mu sync.Mutex
	var got []sinktest.Received
	cons, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("conf"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SASL(scram.Auth{User: "conf", Pass: "conformance-secret"}.AsSha256Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	defer func() { cancel(); <-done; cons.Close() }()
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cons.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				var m map[string]any
				json.Unmarshal(r.Value, &m)
				cd, _ := m["custom_data"].(map[string]any)
				mu.Lock()
				got = append(got, sinktest.Received{EventID: fmt.Sprint(m["id"]), IsTest: m["is_test"] == true, CustomData: cd, Raw: r})
				mu.Unlock()
			})
		}
	}()
	sinktest.Run(t, sinktest.Target{
		Destination: kafkasink.Destination(),
		Settings: func() sink.Settings {
			return &kafkasink.Settings{Brokers: c.ListenAddrs(), Topic: "conf", Timeout: sink.Duration(time.Second), SASL: "scram-sha-256", Username: "conf", Password: "conformance-secret"}
		},
		Received: func(testing.TB) []sinktest.Received {
			mu.Lock()
			defer mu.Unlock()
			return append([]sinktest.Received(nil), got...)
		},
		Fail: func(_ testing.TB, on bool) { refuse.Store(on) },
		Check: func(t testing.TB, r sinktest.Received, sent *event.Event) {
			rec := r.Raw.(*kgo.Record)
			hdr := map[string]string{}
			for _, h := range rec.Headers {
				hdr[h.Key] = string(h.Value)
			}
			// No profile store: the record key is the event id.
			if string(rec.Key) != sent.ID.String() || hdr["sluice-event-id"] != sent.ID.String() || hdr["sluice-key"] != sent.Key {
				t.Fatalf("record key %q headers %v", rec.Key, hdr)
			}
		},
	})
}
