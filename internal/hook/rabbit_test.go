package hook

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/rabbitnode"
	"github.com/sluicehq/sluice/internal/sink/amqpsink"
)

// The node is killed during a burst and started again: the hook
// reconnects, republishes what was not confirmed, and every event
// arrives (duplicates allowed, losses not).
func TestRabbitNodeKilledDuringBurst(t *testing.T) {
	const total = 5000
	node := rabbitnode.Start(t)
	// RabbitMQ 3.10 can lose a durable queue declared moments before the
	// node is killed, with the messages it confirmed into it (a test of
	// the broker alone lost one of six such queues under load). The queue
	// is declared first and the node stopped cleanly, so the declaration
	// is on disk, and what this test checks is the hook's part.
	declareDurably(t, node, "burst")
	f := newFixture(t, true)
	h := Hook{Name: "burst", Active: true, Events: []string{"in.gen.calltrack.*"}, Type: TypeRabbitMQQueue,
		Settings: &amqpsink.Settings{Host: "127.0.0.1", Port: node.Port, Username: "guest", Password: "guest", Queue: "burst", Timeout: Duration(2 * time.Second)},
		// 100 retries a second apart outlast a restart of the node on a
		// loaded machine (200 ms apart ran out there, and parked a batch).
		RetryTimes: intp(100), RetryPeriod: Duration(time.Second), MaxBatchSize: 200}
	created, err := f.m.Create(context.Background(), h, Start{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []event.ID
	appendSome := func(from, n int) {
		now := time.Now().UnixMilli()
		var evs []*event.Event
		for j := from; j < from+n; j++ {
			evs = append(evs, &event.Event{Key: "in.gen.calltrack.call", Channel: event.ChannelHTTP, Service: "calltrack", Name: "call", ProjectID: 7,
				Data: json.RawMessage(`{"n":` + strconv.Itoa(j) + `}`), Time: now, Dialect: "webhook", ReceivedAt: now})
		}
		res, err := f.log.Append(context.Background(), evs)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			ids = append(ids, r.ID)
		}
	}
	for i := 0; i < total/2; i += 250 {
		appendSome(i, 250)
		time.Sleep(5 * time.Millisecond)
	}
	killed := time.Now()
	node.Kill()
	for i := total / 2; i < total; i += 250 {
		appendSome(i, 250)
	}
	time.Sleep(500 * time.Millisecond) // attempts fail meanwhile
	node.Restart(t)

	var mu sync.Mutex
	seen := map[string]int{}
	conn, err := amqp.Dial(node.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume("burst", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for d := range ds {
			mu.Lock()
			seen[d.MessageId]++
			mu.Unlock()
		}
	}()
	missing := func() (before, after []int) {
		mu.Lock()
		defer mu.Unlock()
		for i, id := range ids {
			if seen[id.String()] == 0 {
				if i < total/2 {
					before = append(before, i)
				} else {
					after = append(after, i)
				}
			}
		}
		return before, after
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		before, after := missing()
		if len(before)+len(after) == 0 {
			break
		}
		if time.Now().Before(deadline) {
			continue
		}
		// Say where the missing ones are, so a failure tells a broker
		// that lost what it confirmed from a hook that gave up.
		dls, _ := f.m.DeadLetters(context.Background(), created.ID, DeadLetterQuery{})
		parked := 0
		for _, dl := range dls {
			parked += dl.Events
		}
		var oldest []string
		d, _ := f.m.Deliveries(context.Background(), created.ID, 1000)
		for i := len(d) - 1; i >= max(0, len(d)-8); i-- {
			x := d[i]
			oldest = append(oldest, fmt.Sprintf("batch %s attempt %d of %d events, %s to %s: %q %q", x.BatchID, x.Attempt, x.Events,
				x.StartedAt.Format("15:04:05.000"), x.EndedAt.Format("15:04:05.000"), x.Error, x.Response))
		}
		t.Fatalf("after 60 s, %d events sent before the kill at %s and %d after it are not in the queue (first %v, %v); %d dead letters holding %d events; oldest of %d attempts:\n%s",
			len(before), killed.Format("15:04:05.000"), len(after), first(before, 5), first(after, 5), len(dls), parked, len(d), strings.Join(oldest, "\n"))
	}
	mu.Lock()
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	mu.Unlock()
	d, _ := f.m.Deliveries(context.Background(), created.ID, 1000)
	failed := 0
	for _, x := range d {
		if x.Error != "" {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("no attempt failed: the node was not down during the burst")
	}
	if dls, _ := f.m.DeadLetters(context.Background(), created.ID, DeadLetterQuery{}); len(dls) != 0 {
		t.Fatalf("%d dead letters", len(dls))
	}
	t.Logf("%d events, all in the queue; %d duplicates; %d failed attempts while the node was down", total, dups, failed)
}

func waitForLong(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func first(xs []int, n int) []int {
	return xs[:min(n, len(xs))]
}

// declareDurably declares a durable queue and restarts the node cleanly,
// which puts the declaration on disk.
func declareDurably(t *testing.T, node *rabbitnode.Node, queue string) {
	t.Helper()
	conn, err := amqp.Dial(node.URL())
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err == nil {
		_, err = ch.QueueDeclare(queue, true, false, false, false, nil)
	}
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	node.Stop()
	node.Restart(t)
}
