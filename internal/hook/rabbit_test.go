package hook

import (
	"context"
	"encoding/json"
	"strconv"
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
	f := newFixture(t, true)
	h := Hook{Name: "burst", Active: true, Events: []string{"in.gen.calltrack.*"}, Type: TypeRabbitMQQueue,
		Settings:   &amqpsink.Settings{Host: "127.0.0.1", Port: node.Port, Username: "guest", Password: "guest", Queue: "burst", Timeout: Duration(2 * time.Second)},
		RetryTimes: intp(100), RetryPeriod: Duration(200 * time.Millisecond), MaxBatchSize: 200}
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
	// The hook declares the queue at its first connection; when the node
	// died before that was on disk, the queue comes back with the hook's
	// reconnection: consume once it is there.
	var ds <-chan amqp.Delivery
	for deadline := time.Now().Add(30 * time.Second); ; {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if ds, err = ch.Consume("burst", "", true, false, false, false, nil); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	go func() {
		for d := range ds {
			mu.Lock()
			seen[d.MessageId]++
			mu.Unlock()
		}
	}()
	waitForLong(t, 60*time.Second, "every event in the queue", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if seen[id.String()] == 0 {
				return false
			}
		}
		return true
	})
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
