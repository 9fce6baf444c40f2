package hook

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/identity"
	"github.com/sluicehq/sluice/internal/profile"
	"github.com/sluicehq/sluice/internal/rabbitnode"
)

// target is one delivery type under the conformance suite: a hook that
// points at it, what it has received, and a switch that makes deliveries
// fail.
type target struct {
	hook     func() Hook
	received func() []received
	fail     func(on bool)
}

// collector keeps what a broker consumer saw.
type collector struct {
	mu   sync.Mutex
	msgs []received
}

func (c *collector) add(body []byte, hdr map[string]string) {
	var m map[string]any
	json.Unmarshal(body, &m)
	h := http.Header{}
	for k, v := range hdr {
		h.Set(k, v)
	}
	c.mu.Lock()
	c.msgs = append(c.msgs, received{at: time.Now(), header: h, body: body, msgs: []map[string]any{m}})
	c.mu.Unlock()
}

func (c *collector) all() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.msgs...)
}

func rabbitConsume(t *testing.T, url, queue string, c *collector) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := conn.Channel()
	ds, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for d := range ds {
			c.add(d.Body, map[string]string{"message-id": d.MessageId, "routing-key": d.RoutingKey})
		}
	}()
	return conn
}

func brokerHook(typ string) Hook {
	return Hook{Name: typ, Active: true, Events: []string{"in.gen.calltrack.*"}, Type: typ, MaxBatchSize: 10,
		RetryTimes: intp(1), RetryPeriod: Duration(50 * time.Millisecond), StopAfterDeadLetters: 100}
}

func conformanceTargets(t *testing.T) map[string]target {
	out := map[string]target{}

	rc := newReceiver(t, nil)
	out[TypeHTTP] = target{
		hook: func() Hook {
			h := httpHook(rc.URL)
			h.MaxBatchSize, h.RetryTimes, h.StopAfterDeadLetters = 10, intp(1), 100
			return h
		},
		received: func() []received {
			var out []received
			for _, r := range rc.requests() {
				for _, m := range r.msgs {
					out = append(out, received{at: r.at, header: r.header, body: r.body, msgs: []map[string]any{m}})
				}
			}
			return out
		},
		fail: func(on bool) {
			if on {
				rc.setAnswer(func(int, *http.Request) (int, string, map[string]string) { return 503, "down", nil })
			} else {
				rc.setAnswer(nil)
			}
		},
	}

	node := rabbitnode.Start(t)
	admin, err := amqp.Dial(node.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	ach, _ := admin.Channel()
	rabbit := func() *RabbitMQTarget {
		return &RabbitMQTarget{Host: "127.0.0.1", Port: node.Port, Username: "guest", Password: "guest", Timeout: Duration(3 * time.Second)}
	}
	// Queue: failing is the queue going away (messages come back
	// unroutable); it is declared again to recover.
	qc := &collector{}
	if _, err := ach.QueueDeclare("conf.q", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	qconn := rabbitConsume(t, node.URL(), "conf.q", qc)
	out[TypeRabbitMQQueue] = target{
		hook: func() Hook {
			h := brokerHook(TypeRabbitMQQueue)
			h.RabbitMQ = rabbit()
			h.RabbitMQ.Queue = "conf.q"
			return h
		},
		received: qc.all,
		fail: func(on bool) {
			if on {
				qconn.Close()
				if _, err := ach.QueueDelete("conf.q", false, false, false); err != nil {
					t.Fatal(err)
				}
				return
			}
			ach.QueueDeclare("conf.q", true, false, false, false, nil)
			qconn = rabbitConsume(t, node.URL(), "conf.q", qc)
		},
	}
	// Exchange: failing is the binding going away.
	xc := &collector{}
	if err := ach.ExchangeDeclare("conf.x", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ach.QueueDeclare("conf.xq", true, false, false, false, nil)
	ach.QueueBind("conf.xq", "7.in.gen.#", "conf.x", false, nil)
	rabbitConsume(t, node.URL(), "conf.xq", xc)
	out[TypeRabbitMQExchange] = target{
		hook: func() Hook {
			h := brokerHook(TypeRabbitMQExchange)
			h.RabbitMQ = rabbit()
			h.RabbitMQ.Exchange, h.RabbitMQ.ExchangeType = "conf.x", "topic"
			return h
		},
		received: xc.all,
		fail: func(on bool) {
			if on {
				ach.QueueUnbind("conf.xq", "7.in.gen.#", "conf.x", nil)
			} else {
				ach.QueueBind("conf.xq", "7.in.gen.#", "conf.x", false, nil)
			}
		},
	}

	// Kafka: failing is the broker refusing produce requests.
	c := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "conf"))
	t.Cleanup(c.Close)
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
	kc := &collector{}
	cons, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("conf"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; cons.Close() })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cons.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				h := map[string]string{"record-key": string(r.Key)}
				for _, x := range r.Headers {
					h[x.Key] = string(x.Value)
				}
				kc.add(r.Value, h)
			})
		}
	}()
	out[TypeKafka] = target{
		hook: func() Hook {
			h := brokerHook(TypeKafka)
			h.Kafka = &KafkaTarget{Brokers: c.ListenAddrs(), Topic: "conf", Timeout: Duration(time.Second)}
			return h
		},
		received: kc.all,
		fail:     refuse.Store,
	}
	return out
}

// Every delivery type passes the same suite: all matching events arrive
// with custom_data rendered; a failing target parks dead letters that a
// replay delivers once it is back; the pre-test goes through.
func TestSinkConformance(t *testing.T) {
	f := newFixture(t, true)
	targets := conformanceTargets(t)
	pid := uint32(7)
	for _, typ := range []string{TypeHTTP, TypeRabbitMQQueue, TypeRabbitMQExchange, TypeKafka} {
		tg := targets[typ]
		t.Run(typ, func(t *testing.T) {
			h := tg.hook()
			h.ProjectID = &pid
			h.CustomData = map[string]string{"campaign": "Black Friday", "svc": "{{event.service}}"}
			created, err := f.m.Create(context.Background(), h, Start{})
			if err != nil {
				t.Fatal(err)
			}
			defer f.m.Delete(context.Background(), created.ID)
			if g, _ := f.m.Get(created.ID); g.RabbitMQ != nil && g.RabbitMQ.Password != "" || g.Kafka != nil && g.Kafka.Password != "" {
				t.Fatalf("a broker password is returned: %+v %+v", g.RabbitMQ, g.Kafka)
			}
			ids := f.appendEvents("in.gen.calltrack.call", 7, 25)
			f.appendEvents("in.gen.calltrack.call", 8, 3) // another project
			want := map[string]bool{}
			for _, id := range ids {
				want[id.String()] = true
			}
			waitFor(t, "25 messages", func() bool { return len(tg.received()) >= 25 })
			got := tg.received()
			if len(got) != 25 {
				t.Fatalf("%d messages, want 25", len(got))
			}
			for _, r := range got {
				m := r.msgs[0]
				cd, _ := m["custom_data"].(map[string]any)
				if !want[m["id"].(string)] || cd["campaign"] != "Black Friday" || cd["svc"] != "calltrack" || m["is_test"] != false {
					t.Fatalf("message %v", m)
				}
				switch typ {
				case TypeRabbitMQQueue:
					if r.header.Get("message-id") != m["id"] {
						t.Fatalf("message-id %q", r.header.Get("message-id"))
					}
				case TypeRabbitMQExchange:
					if r.header.Get("routing-key") != "7.in.gen.calltrack.call" {
						t.Fatalf("routing key %q", r.header.Get("routing-key"))
					}
				case TypeKafka:
					if r.header.Get("record-key") != m["id"] || r.header.Get("sluice-event-id") != m["id"] || r.header.Get("sluice-key") != "in.gen.calltrack.call" {
						t.Fatalf("record key %q headers %v", r.header.Get("record-key"), r.header)
					}
				}
			}

			// The target fails: batches are parked, then replayed.
			tg.fail(true)
			late := f.appendEvents("in.gen.calltrack.call", 7, 4)
			waitFor(t, "dead letters", func() bool {
				dls, _ := f.m.DeadLetters(context.Background(), created.ID, DeadLetterQuery{})
				n := 0
				for _, d := range dls {
					n += d.Events
				}
				return n == 4
			})
			d, _ := f.m.Deliveries(context.Background(), created.ID, 1)
			if len(d) != 1 || d[0].ErrorClass == "" || d[0].Error == "" {
				t.Fatalf("attempt log %+v", d)
			}
			tg.fail(false)
			res, err := f.m.Replay(context.Background(), created.ID, DeadLetterQuery{})
			if err != nil || len(res) == 0 {
				t.Fatalf("replay %+v %v", res, err)
			}
			for _, r := range res {
				if !r.Delivered {
					t.Fatalf("replay %+v", res)
				}
			}
			waitFor(t, "the replayed events", func() bool {
				seen := map[string]bool{}
				for _, r := range tg.received() {
					seen[r.msgs[0]["id"].(string)] = true
				}
				for _, id := range late {
					if !seen[id.String()] {
						return false
					}
				}
				return true
			})

			// Pre-test.
			tr, err := f.m.Test(context.Background(), created.ID, nil)
			if err != nil || !tr.Delivered || tr.Request == nil || tr.Event != "stored" {
				t.Fatalf("pre-test %+v %v", tr, err)
			}
			waitFor(t, "the test message", func() bool {
				for _, r := range tg.received() {
					if r.msgs[0]["is_test"] == true {
						return true
					}
				}
				return false
			})
		})
	}
}

// A Kafka hook's default record key is the user's resolved profile id,
// so one user's events share a partition whatever identity they came
// with; an event of no known user is keyed by its id.
func TestKafkaKeyIsTheResolvedProfile(t *testing.T) {
	f := newFixture(t, true)
	ps, err := profile.Open(filepath.Join(f.dir, "profiles.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	f.m.Close()
	f.profiles = ps
	f.open(true)
	now := time.Now().UnixMilli()
	user := &event.Event{ID: 1, Key: "in.s2s.user", Channel: event.ChannelHTTP, Service: "s2s", Name: "user", ProjectID: 7, Time: now, Dialect: "s2s",
		ReceivedAt: now, Data: json.RawMessage(`{"type":"user","id":"m1","time":1}`),
		Identities: []event.Identity{{Type: identity.TypeCustomUserID, Value: "alice"}, {Type: identity.TypeMetrixUserID, Value: "dev-1"}}}
	if err := ps.Apply(context.Background(), "test", 1, []*event.Event{user}); err != nil {
		t.Fatal(err)
	}
	alice, err := ps.Find(context.Background(), 7, identity.TypeCustomUserID, "alice")
	if err != nil {
		t.Fatal(err)
	}

	c := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "keys"))
	defer c.Close()
	pid := uint32(7)
	h := brokerHook(TypeKafka)
	h.ProjectID = &pid
	h.Kafka = &KafkaTarget{Brokers: c.ListenAddrs(), Topic: "keys"}
	if _, err := f.m.Create(context.Background(), h, Start{}); err != nil {
		t.Fatal(err)
	}
	var evs []*event.Event
	for i, id := range []event.Identity{{Type: identity.TypeCustomUserID, Value: "alice"}, {Type: identity.TypeMetrixUserID, Value: "dev-1"}, {Type: identity.TypeCustomUserID, Value: "bob"}} {
		evs = append(evs, &event.Event{Key: "in.gen.calltrack.call", Channel: event.ChannelHTTP, Service: "calltrack", Name: "call", ProjectID: 7,
			Data: json.RawMessage(`{"n":` + itoa(i) + `}`), Time: now, Dialect: "webhook", ReceivedAt: now, Identities: []event.Identity{id}})
	}
	res, err := f.log.Append(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("keys"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	keys := map[string]string{} // event id → record key
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(keys) < 3 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == "sluice-event-id" {
					keys[string(h.Value)] = string(r.Key)
				}
			}
		})
	}
	want := []string{alice.ID, alice.ID, res[2].ID.String()}
	for i, r := range res {
		if keys[r.ID.String()] != want[i] {
			t.Fatalf("event %d keyed %q, want %q (all: %v)", i, keys[r.ID.String()], want[i], keys)
		}
	}
}
