package hook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/pgmigrate"
	"github.com/sluicehq/sluice/internal/pgtest"
	"github.com/sluicehq/sluice/internal/rabbitnode"
	"github.com/sluicehq/sluice/internal/sink/amqpsink"
	"github.com/sluicehq/sluice/internal/sink/httpsink"
	"github.com/sluicehq/sluice/internal/sink/kafkasink"
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
func BenchmarkHookDeliver500(b *testing.B) { benchDeliver500(b, newFixture(b, true)) }

// BenchmarkHookDeliver500Postgres is BenchmarkHookDeliver500 with the
// hooks' state in PostgreSQL (pgtest's server: fsync and
// synchronous_commit on).
func BenchmarkHookDeliver500Postgres(b *testing.B) {
	pool, err := pgxpool.New(context.Background(), pgtest.Start(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if err := pgmigrate.Apply(context.Background(), pool, Migrations); err != nil {
		b.Fatal(err)
	}
	benchDeliver500(b, newFixtureWith(b, true, func(f *fixture) { f.store = NewPostgres(pool) }))
}

func benchDeliver500(b *testing.B, f *fixture) {
	benchHTTP(b, f, benchEvents, []int{1, 4}, false, func(url string, inflight int) Hook {
		return Hook{Name: "bench", Active: true, Events: []string{"in.gen.calltrack.*"}, Type: "http",
			Settings: &httpsink.Settings{URL: url}, MaxBatchSize: 500, BatchTimeout: Duration(time.Second), MaxInFlight: inflight,
			CustomData: map[string]string{"id": "{{uuid}}", "date": "{{event_date}}", "campaign": "{{event.data.campaign}}"}}
	})
}

// benchHTTP stores n events, then for each number of batches in flight
// delivers them through the hook of hook to the loopback receiver and
// reports events/s: until the receiver has counted them all, and with
// durable until the hook's stored cursor passed the last one too.
func benchHTTP(b *testing.B, f *fixture, n int, inflights []int, durable bool, hook func(url string, inflight int) Hook) {
	srv, got := benchReceiver(b)
	fillLog(f, n)
	from := time.UnixMilli(0)
	for _, inflight := range inflights {
		b.Run("inflight="+strconv.Itoa(inflight), func(b *testing.B) {
			start := time.Now()
			for i := 0; i < b.N; i++ {
				got.Store(0)
				created, err := f.m.Create(context.Background(), hook(srv.URL, inflight), Start{From: &from})
				if err != nil {
					b.Fatal(err)
				}
				for got.Load() < int64(n) {
					time.Sleep(time.Millisecond)
				}
				if durable {
					if err := waitCursor(f, created.ID, n); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if err := f.m.Delete(context.Background(), created.ID); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// singleEvents is how many events an iteration of the benchmarks of one
// event per batch delivers.
const singleEvents = 20_000

// BenchmarkHookDeliverSingles delivers stored events one per batch
// (max_batch_size 1: a request, an in-flight record and a finish per
// event) to the loopback receiver, with one batch in flight and with 32.
// Every batch's state is durable in hooks.db before the next step: the
// in-flight record before the request, the finish before the batch counts
// as done. BenchmarkBaselineReceiverSingles is the receiver alone.
func BenchmarkHookDeliverSingles(b *testing.B) {
	// Done when the last finish is durable, not at the last request.
	benchHTTP(b, newFixture(b, true), singleEvents, []int{1, 32}, true, func(url string, inflight int) Hook {
		return Hook{Name: "bench", Active: true, Events: []string{"in.gen.calltrack.*"}, Type: "http",
			Settings: &httpsink.Settings{URL: url}, MaxBatchSize: 1, BatchTimeout: Duration(time.Second), MaxInFlight: inflight}
	})
}

// waitCursor waits until hook id's stored cursor has passed the n-th
// event of the log.
func waitCursor(f *fixture, id string, n int) error {
	recs, err := f.log.Read(context.Background(), eventlog.Query{Newest: true, Limit: 1})
	if err != nil || len(recs) == 0 {
		return fmt.Errorf("read the last event: %v", err)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		cursors, err := f.m.store.Cursors(context.Background())
		if err != nil {
			return err
		}
		if cursors[id] >= recs[0].ID {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("the cursor did not reach the last of %d events within a minute", n)
}

// BenchmarkBaselineReceiverSingles is the receiver alone for one event
// per request: the same message, pre-built, posted by 32 clients at once.
func BenchmarkBaselineReceiverSingles(b *testing.B) {
	srv, got := benchReceiver(b)
	body := append(append([]byte("["), benchMessage...), ']')
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		got.Store(0)
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= singleEvents {
					resp, err := client.Post(srv.URL, "application/json", bytes.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(float64(singleEvents*b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkBaselineReceiver is the receiver alone: the same number of
// events in batches of 500, pre-built, posted back to back by one client.
func BenchmarkBaselineReceiver(b *testing.B) {
	srv, got := benchReceiver(b)
	msg := benchMessage
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

// benchBroker delivers the stored events through a hook of h's type and
// reports events/s; delivered counts from the hook's own metric.
func benchBroker(b *testing.B, f *fixture, n int, h func() Hook, between func()) {
	from := time.UnixMilli(0)
	start := time.Now()
	for i := 0; i < b.N; i++ {
		created, err := f.m.Create(context.Background(), h(), Start{From: &from})
		if err != nil {
			b.Fatal(err)
		}
		c := f.m.met.delivered.WithLabelValues(created.ID)
		for testutil.ToFloat64(c) < float64(n) {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		if err := f.m.Delete(context.Background(), created.ID); err != nil {
			b.Fatal(err)
		}
		if between != nil {
			between()
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "events/s")
}

// benchMessage is a message as the hooks build it, for the baselines.
var benchMessage = []byte(`{"key":"in.gen.calltrack.call","channel":"http","service":"calltrack","name":"call","projectId":7,"td":{"ip":"203.0.113.7","ua":"curl/8.5"},"data":{"amount":12345,"phone":"79990000000","campaign":"black-friday"},"id":"7405398725063622656","time":1763900000000,"dialect":"webhook","receivedAt":1763900000000,"identities":[{"type":"user_id","value":"u-12345"}],"custom_data":{"campaign":"black-friday","date":"2025-11-23T12:13:20.000000Z","id":"5b7d8f0e-4d0e-4c55-9d8e-0f6f0c6b1a11"},"is_test":false}`)

// rabbitQueues are the queues the RabbitMQ benchmarks publish to: a
// classic durable queue (what a queue hook declares when it is missing)
// and a quorum queue declared beforehand.
var rabbitQueues = []struct{ name, typ string }{{"bench-classic", "classic"}, {"bench-quorum", "quorum"}}

func declareBenchQueues(b *testing.B, ch *amqp.Channel) {
	for _, q := range rabbitQueues {
		if _, err := ch.QueueDeclare(q.name, true, false, false, false, amqp.Table{"x-queue-type": q.typ}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHookRabbitMQ delivers 100k stored events to a queue on a real
// node, persistent, with publisher confirms, batches of 500 (one message
// per event), one batch in flight and four; BenchmarkBaselineRabbitMQ publishes the same number of
// prebuilt messages with amqp091 alone, the same way.
func BenchmarkHookRabbitMQ(b *testing.B) {
	node := rabbitnode.Start(b)
	f := newFixture(b, true)
	fillLog(f, benchEvents)
	conn, _ := amqp.Dial(node.URL())
	defer conn.Close()
	ch, _ := conn.Channel()
	declareBenchQueues(b, ch)
	for _, q := range rabbitQueues {
		for _, inflight := range []int{1, 4} {
			b.Run("queue="+q.typ+"/inflight="+strconv.Itoa(inflight), func(b *testing.B) {
				benchBroker(b, f, benchEvents, func() Hook {
					return Hook{Name: "bench", Active: true, Events: []string{"in.gen.calltrack.*"}, Type: TypeRabbitMQQueue, MaxBatchSize: 500, MaxInFlight: inflight,
						Settings:   &amqpsink.Settings{Host: "127.0.0.1", Port: node.Port, Username: "guest", Password: "guest", Queue: q.name},
						CustomData: map[string]string{"id": "{{uuid}}", "date": "{{event_date}}", "campaign": "{{event.data.campaign}}"}}
				}, func() { ch.QueuePurge(q.name, false) })
			})
		}
	}
}

func BenchmarkBaselineRabbitMQ(b *testing.B) {
	node := rabbitnode.Start(b)
	conn, err := amqp.Dial(node.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	ch.Confirm(false)
	declareBenchQueues(b, ch)
	ctx := context.Background()
	for _, q := range rabbitQueues {
		b.Run("queue="+q.typ, func(b *testing.B) {
			start := time.Now()
			for i := 0; i < b.N; i++ {
				for sent := 0; sent < benchEvents; sent += 500 {
					dcs := make([]*amqp.DeferredConfirmation, 0, 500)
					for j := 0; j < 500; j++ {
						dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", q.name, true, false,
							amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: "application/json", MessageId: strconv.Itoa(sent + j), Body: benchMessage})
						if err != nil {
							b.Fatal(err)
						}
						dcs = append(dcs, dc)
					}
					for _, dc := range dcs {
						if ok, err := dc.WaitContext(ctx); !ok || err != nil {
							b.Fatal("nack", err)
						}
					}
				}
				b.StopTimer()
				ch.QueuePurge(q.name, false)
				b.StartTimer()
			}
			b.ReportMetric(float64(benchEvents*b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkHookKafka delivers 100k stored events to kfake in batches of
// 500 (acks=all, idempotent), one batch in flight (order kept) and four;
// BenchmarkBaselineKafka produces the same number of prebuilt records
// with franz-go alone, 500 at a time.
var kafkaBatch = 500

func BenchmarkHookKafka(b *testing.B) {
	c := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "bench"))
	defer c.Close()
	f := newFixture(b, true)
	fillLog(f, benchEvents)
	for _, inflight := range []int{1, 4} {
		b.Run("inflight="+strconv.Itoa(inflight), func(b *testing.B) {
			benchBroker(b, f, benchEvents, func() Hook {
				return Hook{Name: "bench", Active: true, Events: []string{"in.gen.calltrack.*"}, Type: TypeKafka, MaxBatchSize: kafkaBatch, MaxInFlight: inflight,
					Settings:   &kafkasink.Settings{Brokers: c.ListenAddrs(), Topic: "bench"},
					CustomData: map[string]string{"id": "{{uuid}}", "date": "{{event_date}}", "campaign": "{{event.data.campaign}}"}}
			}, nil)
		})
	}
}
func BenchmarkBaselineKafka(b *testing.B) {
	c := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "bench"))
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("bench"), kgo.ProducerLinger(0))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for sent := 0; sent < benchEvents; sent += 500 {
			recs := make([]*kgo.Record, 500)
			for j := range recs {
				recs[j] = &kgo.Record{Key: []byte(strconv.Itoa(sent + j)), Value: benchMessage}
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(benchEvents*b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkPreTest is the pre-test without a sample on a hook that matches
// nothing stored, on logs of 1 000, 20 000 and 200 000 events: its search is
// bounded (the newest PretestExamine events), so past 5 000 events the
// size of the log makes no difference. The baselines in the same run are the
// pre-test with a sample (no search at all) and on a hook whose newest
// stored event matches.
func BenchmarkPreTest(b *testing.B) {
	f := newFixture(b, true)
	srv, _ := benchReceiver(b)
	mk := func(glob string) string {
		h, err := f.m.Create(context.Background(), Hook{Name: "bench", Events: []string{glob}, Type: "http", Settings: &httpsink.Settings{URL: srv.URL}}, Start{})
		if err != nil {
			b.Fatal(err)
		}
		return h.ID
	}
	none, newest := mk("in.gen.nothing.*"), mk("in.gen.calltrack.*")
	sample := json.RawMessage(`{"key":"in.gen.calltrack.call","channel":"http","service":"calltrack","name":"call","projectId":7,"td":{},"data":{"amount":1},"id":"1","time":1,"dialect":"webhook","receivedAt":1}`)
	run := func(name, id string, sample json.RawMessage, want string) {
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				res, err := f.m.Test(context.Background(), id, sample)
				if err != nil || !res.Delivered || res.Event != want {
					b.Fatalf("%+v %v", res, err)
				}
			}
		})
	}
	stored := 0
	for _, n := range []int{1000, 20_000, 200_000} {
		fillLog(f, n-stored)
		stored = n
		size := strconv.Itoa(n/1000) + "k"
		run("log="+size+"/sample", none, sample, "sample")
		run("log="+size+"/newest-matches", newest, nil, "stored")
		run("log="+size+"/none-matches", none, nil, "synthetic")
	}
}
