package kafkasink

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/sink"
)

var loopback = &sink.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}

func batch(id string, n int) *sink.Batch {
	b := &sink.Batch{ID: id, Attempt: 1}
	for i := 0; i < n; i++ {
		eid := fmt.Sprintf("%s-%d", id, i)
		b.Messages = append(b.Messages, []byte(fmt.Sprintf(`{"id":%q,"n":%d}`, eid, i)))
		b.Meta = append(b.Meta, sink.Meta{EventID: eid, Key: "in.s2s.revenue.purchase", ProjectID: 7, Route: fmt.Sprintf("user-%d", i%3)})
	}
	return b
}

// records reads n records of topic from the start.
func records(t *testing.T, c *kfake.Cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d records", len(out), n)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func TestProduceKeysHeadersErrorsAndGuard(t *testing.T) {
	c := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "events"))
	defer c.Close()
	for _, comp := range []string{"none", "lz4", "zstd", "snappy"} {
		t.Run(comp, func(t *testing.T) {
			s, err := New(Config{Brokers: c.ListenAddrs(), Topic: "events", Compression: comp, Guard: loopback, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			rep, err := s.Deliver(context.Background(), batch("b-"+comp, 30))
			if err != nil || !strings.HasPrefix(rep.Response, "30 acknowledged") || rep.Request.Method != "PRODUCE" {
				t.Fatalf("%v %+v", err, rep)
			}
		})
	}
	got := records(t, c, "events", 120)
	byUser := map[string]int32{}
	for _, r := range got {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		var n int
		fmt.Sscanf(strings.TrimPrefix(string(r.Value)[strings.Index(string(r.Value), `"n":`):], `"n":`), "%d", &n)
		if h["sluice-key"] != "in.s2s.revenue.purchase" || h["sluice-project-id"] != "7" || !strings.Contains(string(r.Value), h["sluice-event-id"]) ||
			string(r.Key) != fmt.Sprintf("user-%d", n%3) {
			t.Fatalf("record %s %s %v", r.Key, r.Value, h)
		}
		// One user's records stay in one partition.
		if p, ok := byUser[string(r.Key)]; ok && p != r.Partition {
			t.Fatalf("user %s in partitions %d and %d", r.Key, p, r.Partition)
		}
		byUser[string(r.Key)] = r.Partition
	}

	// The broker refuses produce requests: the batch fails within the
	// delivery timeout, then succeeds once the broker accepts again.
	var refuse atomic.Bool
	refuse.Store(true)
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
				rp.Partition = p.Partition
				rp.ErrorCode = kerr.InvalidRecord.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	s, _ := New(Config{Brokers: c.ListenAddrs(), Topic: "events", Guard: loopback, Timeout: 2 * time.Second})
	defer s.Close()
	start := time.Now()
	rep, err := s.Deliver(context.Background(), batch("refused", 3))
	var se *sink.Error
	if !errors.As(err, &se) || (se.Class != sink.ClassBroker && se.Class != sink.ClassTimeout) || !strings.Contains(rep.Response, "3 of 3 records") || time.Since(start) > 5*time.Second {
		t.Fatalf("refused: %v %+v after %s", err, rep, time.Since(start))
	}
	t.Logf("refused: %v", err)
	refuse.Store(false)
	if _, err := s.Deliver(context.Background(), batch("after", 5)); err != nil {
		t.Fatalf("after the broker accepts again: %v", err)
	}

	// The SSRF guard applies to brokers.
	blocked, _ := New(Config{Brokers: c.ListenAddrs(), Topic: "events", Guard: &sink.Guard{}, Timeout: 2 * time.Second})
	defer blocked.Close()
	if _, err := blocked.Deliver(context.Background(), batch("blocked", 1)); err == nil || !strings.Contains(err.Error(), "blocked") && !errors.Is(err, sink.ErrBlocked) {
		t.Fatalf("guard: %v", err)
	}
	if _, err := New(Config{Brokers: []string{"x:1"}, Topic: "t", Compression: "gzip9"}); err == nil {
		t.Fatal("unknown compression accepted")
	}
}

// SASL/PLAIN and SCRAM against a cluster that requires them; a wrong
// password fails the batch.
func TestSASL(t *testing.T) {
	c := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plainuser", "plain-secret"), kfake.Superuser("SCRAM-SHA-256", "scram256", "s256-secret"),
		kfake.Superuser("SCRAM-SHA-512", "scram512", "s512-secret"))
	defer c.Close()
	for _, tc := range []struct {
		mech, user, pass string
		ok               bool
	}{
		{"plain", "plainuser", "plain-secret", true},
		{"scram-sha-256", "scram256", "s256-secret", true},
		{"scram-sha-512", "scram512", "s512-secret", true},
		{"scram-sha-256", "scram256", "wrong", false},
		{"", "", "", false},
	} {
		s, err := New(Config{Brokers: c.ListenAddrs(), Topic: "events", SASL: tc.mech, Username: tc.user, Password: tc.pass, Guard: loopback, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Deliver(context.Background(), batch("sasl-"+tc.mech, 2))
		s.Close()
		if (err == nil) != tc.ok {
			t.Errorf("%s as %s: %v, want ok=%v", tc.mech, tc.user, err, tc.ok)
		}
	}
}
