package profile

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/bench"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
)

// benchEvents are n events of 10 000 people across the dialects, in the
// order senders send them (times increasing, a few late).
func benchEvents(n int, withIDs bool) []*event.Event {
	r := rand.New(rand.NewPCG(1, 2))
	evs := make([]*event.Event, n)
	for i := range evs {
		person := r.IntN(10000)
		t := int64(1_700_000_000_000 + i*10)
		var e *event.Event
		switch i % 4 {
		case 0:
			e = ev(0, 1, "in.s2s.user", t, fmt.Sprintf(`{"type":"user","id":"m%d","time":%d,"firstName":"F%d","city":"C%d"}`, i, t, person, i%50),
				fmt.Sprintf("custom_user_id=c%d", person), fmt.Sprintf("phone_hash=%064x", person))
		case 1:
			e = ev(0, 1, "in.commerce.add-to-cart-v1", t, fmt.Sprintf(`{"properties":{"eventType":"add-to-cart-v1","value":1,"productId":"p%d","quantity":1}}`, i%100),
				fmt.Sprintf("user_id=u%d", person), fmt.Sprintf("phone_hash=%064x", person))
		case 2:
			e = ev(0, 1, "in.track.custom.viewed_product", t, `{"event":{"name":"Viewed Product"}}`,
				fmt.Sprintf("user_id=u%d", person), fmt.Sprintf("anonymous_id=a%d", person))
		default:
			e = ev(0, 1, "in.s2s.revenue.buy", t, fmt.Sprintf(`{"type":"revenue","revenue":%d,"currency":"RUB"}`, i%1000), fmt.Sprintf("custom_user_id=c%d", person))
		}
		e.Channel, e.Service, e.Name, e.ReceivedAt = "http", "bench", "bench", t
		if !withIDs {
			e.Identities = nil
		}
		evs[i] = e
	}
	return evs
}

func benchLog(b *testing.B, evs []*event.Event) (*sqlite.Log, time.Duration) {
	b.Helper()
	l := openLog(b)
	start := time.Now()
	for i := 0; i < len(evs); i += 100 {
		if _, err := l.Append(context.Background(), evs[i:min(i+100, len(evs))]); err != nil {
			b.Fatal(err)
		}
	}
	return l, time.Since(start)
}

// consume runs a consumer over the log until it has passed the head.
func consume(b *testing.B, l *sqlite.Log) time.Duration {
	b.Helper()
	s := openStore(b)
	c := &Consumer{Store: s, Log: l}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	go c.Run(ctx)
	if err := c.WaitFor(context.Background(), l.Head()); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkConsumer folds 40 000 events of 10 000 people (s2s users and
// revenue, commerce carts, track hits) and reports the consumer's
// events/s next to the rate the same events were appended to the log in
// batches of 100 (the ingest side's durable floor for them), same run.
func BenchmarkConsumer(b *testing.B) {
	evs := benchEvents(40000, true)
	for b.Loop() {
		b.StopTimer()
		for _, e := range evs {
			e.ID = 0
		}
		l, appendTook := benchLog(b, evs)
		b.StartTimer()
		took := consume(b, l)
		b.ReportMetric(float64(len(evs))/took.Seconds(), "folded/s")
		b.ReportMetric(float64(len(evs))/appendTook.Seconds(), "appended/s")
	}
}

// BenchmarkConsumerWithoutIdentities: 40 000 events without identities
// cost the consumer nothing: it reads the index of events with
// identities, which is empty.
func BenchmarkConsumerWithoutIdentities(b *testing.B) {
	evs := benchEvents(40000, false)
	for b.Loop() {
		b.StopTimer()
		for _, e := range evs {
			e.ID = 0
		}
		l, _ := benchLog(b, evs)
		b.StartTimer()
		took := consume(b, l)
		b.ReportMetric(float64(took.Microseconds()), "µs-total")
		recs, _ := l.Read(context.Background(), eventlog.Query{WithIdentities: true})
		if len(recs) != 0 {
			b.Fatal("events with identities")
		}
	}
}

// BenchmarkConsumerLag appends events with identities at a steady rate
// (rate/s, in slices of 100 every 10 ms) for a few seconds while the
// consumer folds them, and reports the largest lag it saw (head − cursor,
// by id time) and how long it took to catch up after the last append.
func BenchmarkConsumerLag(b *testing.B) {
	for _, rate := range []int{2000, 10000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			for b.Loop() {
				evs := benchEvents(rate*4, true)
				l, err := sqlite.Open(sqlite.Config{Path: filepath.Join(b.TempDir(), "events.db")}, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				s := openStore(b)
				c := &Consumer{Store: s, Log: l}
				ctx, cancel := context.WithCancel(context.Background())
				go c.Run(ctx)
				var maxLag time.Duration
				tick := time.NewTicker(10 * time.Millisecond)
				per := rate / 100
				for i := 0; i < len(evs); i += per {
					<-tick.C
					if _, err := l.Append(context.Background(), evs[i:min(i+per, len(evs))]); err != nil {
						b.Fatal(err)
					}
					if head, cur := l.Head(), c.Applied(); head > cur && cur != 0 {
						maxLag = max(maxLag, time.Duration(head.Millis()-cur.Millis())*time.Millisecond)
					}
				}
				tick.Stop()
				last := time.Now()
				c.WaitFor(context.Background(), l.Head())
				catchUp := time.Since(last)
				cancel()
				l.Close()
				b.ReportMetric(float64(maxLag.Milliseconds()), "max-lag-ms")
				b.ReportMetric(float64(catchUp.Milliseconds()), "catch-up-ms")
			}
		})
	}
}

// BenchmarkObserve reads what a profile learns from one event: a commerce
// purchase with a 20-item cart (the heaviest built-in load's event, about
// 1.9 KB), the track seed's Completed Transaction hit (sluice bench's
// track load) and an s2s user message.
func BenchmarkObserve(b *testing.B) {
	cart := ""
	for i := 0; i < 20; i++ {
		if i > 0 {
			cart += ","
		}
		cart += fmt.Sprintf(`{"productId":"sku-%d-bg","quantity":%d,"itemPrice":%d.90,"currency":"RUB","category":"shoes"}`, 4300+i, i%3+1, 100+i)
	}
	for _, c := range []struct{ name, key, data string }{
		{"commerce-purchase", "in.commerce.purchase-v1", `{"name":"Purchase","anonymousId":"bench-anon-1","properties":{"eventType":"purchase-v1","uniqueTransactionId":"t-1","value":1234.56,"currency":"RUB","hashedEmail":"` + h("b") + `","cart":[` + cart + `]}}`},
		{"track-transaction", "in.track.transaction.completed", string(bench.DefaultTrackHit)},
		{"s2s-user", "in.s2s.user", `{"type":"user","id":"m1","time":1700000000000,"firstName":"Anna","city":"Moscow","customUserId":"c1"}`},
	} {
		e := ev(1, 1, c.key, 1_700_000_000_000, c.data, "email_hash="+h("b"), "anonymous_id=bench-anon-1")
		if _, ok := Observe(e); !ok {
			b.Fatal("nothing observed")
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.data)))
			for b.Loop() {
				Observe(e)
			}
		})
	}
}
