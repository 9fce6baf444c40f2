package amqpsink_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/rabbitnode"
	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/amqpsink"
	"github.com/sluicehq/sluice/internal/sink/sinktest"
)

// collector keeps what a consumer saw.
type collector struct {
	mu   sync.Mutex
	msgs []sinktest.Received
}

func (c *collector) consume(t testing.TB, url, queue string) *amqp.Connection {
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
			var m map[string]any
			json.Unmarshal(d.Body, &m)
			cd, _ := m["custom_data"].(map[string]any)
			c.mu.Lock()
			c.msgs = append(c.msgs, sinktest.Received{EventID: fmt.Sprint(m["id"]), IsTest: m["is_test"] == true, CustomData: cd, Raw: d})
			c.mu.Unlock()
		}
	}()
	return conn
}

func (c *collector) all(testing.TB) []sinktest.Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sinktest.Received(nil), c.msgs...)
}

// Both RabbitMQ types pass the conformance suite on a real node: a queue
// that fails by going away (messages come back unroutable), an exchange
// whose binding goes away.
func TestConformance(t *testing.T) {
	node := rabbitnode.Start(t)
	admin, err := amqp.Dial(node.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ach, _ := admin.Channel()
	settings := func() *amqpsink.Settings {
		return &amqpsink.Settings{Host: "127.0.0.1", Port: node.Port, Username: "guest", Password: "guest", Timeout: sink.Duration(3 * time.Second)}
	}

	t.Run(amqpsink.TypeQueue, func(t *testing.T) {
		qc := &collector{}
		if _, err := ach.QueueDeclare("conf.q", true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		qconn := qc.consume(t, node.URL(), "conf.q")
		defer func() { qconn.Close() }()
		sinktest.Run(t, sinktest.Target{
			Destination: amqpsink.QueueDestination(),
			Settings:    func() sink.Settings { s := settings(); s.Queue = "conf.q"; return s },
			Received:    qc.all,
			Fail: func(t testing.TB, on bool) {
				if on {
					qconn.Close()
					if _, err := ach.QueueDelete("conf.q", false, false, false); err != nil {
						t.Fatal(err)
					}
					return
				}
				if _, err := ach.QueueDeclare("conf.q", true, false, false, false, nil); err != nil {
					t.Fatal(err)
				}
				qconn = qc.consume(t, node.URL(), "conf.q")
			},
			Check: func(t testing.TB, r sinktest.Received, sent *event.Event) {
				d := r.Raw.(amqp.Delivery)
				if d.MessageId != sent.ID.String() || d.Headers["sluice-key"] != sent.Key || d.DeliveryMode != amqp.Persistent {
					t.Fatalf("message-id %q headers %v mode %d", d.MessageId, d.Headers, d.DeliveryMode)
				}
			},
		})
	})

	t.Run(amqpsink.TypeExchange, func(t *testing.T) {
		xc := &collector{}
		if err := ach.ExchangeDeclare("conf.x", "topic", true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		ach.QueueDeclare("conf.xq", true, false, false, false, nil)
		ach.QueueBind("conf.xq", "7.in.gen.#", "conf.x", false, nil)
		defer xc.consume(t, node.URL(), "conf.xq").Close()
		sinktest.Run(t, sinktest.Target{
			Destination: amqpsink.ExchangeDestination(),
			Settings: func() sink.Settings {
				s := settings()
				s.Exchange, s.ExchangeType = "conf.x", "topic"
				return s
			},
			Received: xc.all,
			Fail: func(t testing.TB, on bool) {
				if on {
					ach.QueueUnbind("conf.xq", "7.in.gen.#", "conf.x", nil)
				} else {
					ach.QueueBind("conf.xq", "7.in.gen.#", "conf.x", false, nil)
				}
			},
			Check: func(t testing.TB, r sinktest.Received, sent *event.Event) {
				if d := r.Raw.(amqp.Delivery); d.RoutingKey != "7.in.gen.calltrack.call" || d.MessageId != sent.ID.String() {
					t.Fatalf("routing key %q message-id %q", d.RoutingKey, d.MessageId)
				}
			},
		})
	})
}
