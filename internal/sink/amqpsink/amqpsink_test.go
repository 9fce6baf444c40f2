package amqpsink

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sluicehq/sluice/internal/rabbitnode"
	"github.com/sluicehq/sluice/internal/sink"
)

var loopback = &sink.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}

func batch(id string, n int, route func(i int) string) *sink.Batch {
	b := &sink.Batch{ID: id, Attempt: 1}
	for i := 0; i < n; i++ {
		eid := fmt.Sprintf("%s-%d", id, i)
		b.Messages = append(b.Messages, []byte(fmt.Sprintf(`{"id":%q,"key":"in.gen.calltrack.call","n":%d}`, eid, i)))
		b.Meta = append(b.Meta, sink.Meta{EventID: eid, Key: "in.gen.calltrack.call", ProjectID: 7, Route: route(i)})
	}
	return b
}

// consume reads n messages from queue.
func consume(t *testing.T, url, queue string, n int) []amqp.Delivery {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	ds, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []amqp.Delivery
	timeout := time.After(20 * time.Second)
	for len(out) < n {
		select {
		case d := <-ds:
			out = append(out, d)
		case <-timeout:
			t.Fatalf("%d of %d messages in %s", len(out), n, queue)
		}
	}
	return out
}

func TestQueueExchangeReturnsGuardAndReconnect(t *testing.T) {
	node := rabbitnode.Start(t)
	ctx := context.Background()

	// Queue: declared durable, every message confirmed and intact.
	q, err := New(Config{Host: "127.0.0.1", Port: node.Port, Username: "guest", Password: "guest", Queue: "sluice.calls", Guard: loopback, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	b := batch("b1", 200, func(int) string { return "ignored" })
	rep, err := q.Deliver(ctx, b)
	if err != nil || rep.Response != "200 confirmed" || rep.Request.Method != "PUBLISH" || !strings.Contains(rep.Request.URL, "queue sluice.calls") {
		t.Fatalf("deliver: %v %+v", err, rep)
	}
	got := consume(t, node.URL(), "sluice.calls", 200)
	for i, d := range got {
		if string(d.Body) != string(b.Messages[i]) || d.MessageId != b.Meta[i].EventID || d.ContentType != "application/json" ||
			d.DeliveryMode != amqp.Persistent || d.Headers["sluice-key"] != "in.gen.calltrack.call" || d.Headers["sluice-project-id"] != int64(7) || d.Headers["sluice-batch-id"] != "b1" {
			t.Fatalf("message %d: %+v", i, d)
		}
	}

	// Batches in flight at once publish on channels of their own.
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func(i int) {
			_, err := q.Deliver(ctx, batch(fmt.Sprintf("c%d", i), 100, func(int) string { return "" }))
			errs <- err
		}(i)
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent batch: %v", err)
		}
	}
	seen := map[string]bool{}
	for _, d := range consume(t, node.URL(), "sluice.calls", 400) {
		seen[d.MessageId] = true
	}
	if len(seen) != 400 {
		t.Fatalf("%d distinct messages of 400", len(seen))
	}

	// Exchange: a bound routing key is delivered, an unbound one fails the
	// batch instead of vanishing.
	x, err := New(Config{Host: "127.0.0.1", Port: node.Port, Username: "guest", Password: "guest", Exchange: "sluice.events", ExchangeType: "topic", Durable: true, Guard: loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if _, err := x.Deliver(ctx, batch("warm", 1, func(int) string { return "nobody" })); err == nil {
		t.Fatal("an unroutable message was confirmed as delivered")
	}
	conn, _ := amqp.Dial(node.URL())
	ch, _ := conn.Channel()
	ch.QueueDeclare("crm", true, false, false, false, nil)
	if err := ch.QueueBind("crm", "7.in.gen.#", "sluice.events", false, nil); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if _, err := x.Deliver(ctx, batch("b2", 50, func(int) string { return "7.in.gen.calltrack.call" })); err != nil {
		t.Fatalf("bound: %v", err)
	}
	if got := consume(t, node.URL(), "crm", 50); got[49].RoutingKey != "7.in.gen.calltrack.call" || got[0].Exchange != "sluice.events" {
		t.Fatalf("routed %+v", got[49])
	}
	mixed := batch("b3", 10, func(i int) string {
		if i == 5 {
			return "8.in.gen.calltrack.call"
		}
		return "7.in.gen.calltrack.call"
	})
	_, err = x.Deliver(ctx, mixed)
	var se *sink.Error
	if !errors.As(err, &se) || se.Class != sink.ClassBroker || !strings.Contains(err.Error(), `1 of 10 messages were returned unroutable (312 NO_ROUTE, exchange "sluice.events", routing key "8.in.gen.calltrack.call")`) {
		t.Fatalf("unroutable: %v", err)
	}

	// The SSRF guard applies to brokers.
	blocked, _ := New(Config{Host: "127.0.0.1", Port: node.Port, Username: "guest", Password: "guest", Queue: "x", Guard: &sink.Guard{}})
	if _, err := blocked.Deliver(ctx, batch("b4", 1, func(int) string { return "" })); !errors.As(err, &se) || se.Class != sink.ClassBlocked {
		t.Fatalf("guard: %v", err)
	}
	// Wrong password: a broker error, not a hang.
	wrong, _ := New(Config{Host: "127.0.0.1", Port: node.Port, Username: "guest", Password: "nope", Queue: "x", Guard: loopback})
	if _, err := wrong.Deliver(ctx, batch("b5", 1, func(int) string { return "" })); err == nil {
		t.Fatal("a wrong password delivered")
	}

	// The node dies: the batch fails; once it is back the sink reconnects.
	node.Kill()
	if _, err := q.Deliver(ctx, batch("b6", 5, func(int) string { return "" })); err == nil {
		t.Fatal("delivered to a dead node")
	}
	node.Restart(t)
	if _, err := q.Deliver(ctx, batch("b7", 5, func(int) string { return "" })); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if got := consume(t, node.URL(), "sluice.calls", 5); got[4].MessageId != "b7-4" {
		t.Fatalf("after restart %+v", got[4])
	}
}
