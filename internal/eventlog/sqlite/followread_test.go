package sqlite

import (
	"context"
	"testing"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/logtest"
)

// BenchmarkFollowRead is what a follower pays at low rates: one event
// appended (not timed), then read after the cursor, as a hook reads it
// (hook) and as the profile consumer reads events with identities, of
// which there are none (people).
func BenchmarkFollowRead(b *testing.B) {
	for _, q := range []struct {
		name string
		q    eventlog.Query
		n    int
	}{{"hook", eventlog.Query{Projects: []uint32{1}, KeyGlob: "in.*", Limit: 500}, 1}, {"people", eventlog.Query{WithIdentities: true, Limit: 5000}, 0}} {
		b.Run(q.name, func(b *testing.B) {
			l := openAt(b, b.TempDir())
			defer l.Close()
			ctx := context.Background()
			for i := 0; i < 20000; i += 100 {
				evs := make([]*event.Event, 100)
				for j := range evs {
					evs[j] = logtest.Event(1, "in.gen.bench.event", i+j)
				}
				if _, err := l.Append(ctx, evs); err != nil {
					b.Fatal(err)
				}
			}
			after := l.Head()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if _, err := l.Append(ctx, []*event.Event{logtest.Event(1, "in.gen.bench.event", i)}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				qq := q.q
				qq.After = after
				recs, err := l.Read(ctx, qq)
				if err != nil || len(recs) != q.n {
					b.Fatal(len(recs), err)
				}
				after = l.Head()
			}
		})
	}
}
