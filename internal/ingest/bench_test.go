package ingest

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/bench"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
	"github.com/sluicehq/sluice/internal/project"
)

// cpuTime is this process's CPU time so far, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchServer is a server of the four dialects on a real SQLite log and
// project store, with the projects the load tool addresses: project 1,
// token bench-key (track, commerce, webhook), app id bench-app and an
// action type bench (s2s).
func benchServer(b *testing.B) (*Server, *sqlite.Log) {
	dir := b.TempDir()
	gen, _ := event.NewGenerator(0, nil)
	l, err := sqlite.Open(sqlite.Config{Path: filepath.Join(dir, "events.db")}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ps, err := project.Open(filepath.Join(dir, "state.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close(); ps.Close() })
	ctx := context.Background()
	id := uint32(1)
	if _, err := ps.Create(ctx, &id, "bench", project.Settings{AppID: "bench-app"}); err != nil {
		b.Fatal(err)
	}
	if _, _, err := ps.CreateToken(ctx, 1, "k", "bench-key"); err != nil {
		b.Fatal(err)
	}
	if _, err := ps.CreateEventType(ctx, project.EventType{ProjectID: 1, Slug: "bench", Kind: project.KindAction}); err != nil {
		b.Fatal(err)
	}
	return New(Config{}, l, testDialects(ps, gen, nil), nil, nil), l
}

// BenchmarkServe runs the load tool's requests of each dialect through
// the whole ingest handler on a real SQLite log, from 64 goroutines as
// 64 connections would (no HTTP transport: the handler, decode,
// validation, dedup, the durable commit and the answer), and reports the
// process's CPU per event next to the time per request. "append" is the
// durable floor of the same run: the webhook request's event, decoded
// once, appended to the log by the same 64 goroutines.
func BenchmarkServe(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  bench.Config
	}{
		{"webhook", bench.Config{Dialect: "webhook", Project: 1}},
		{"append", bench.Config{Dialect: "webhook", Project: 1}},
		{"track", bench.Config{Dialect: "track", Token: "bench-key"}},
		{"track-batch100", bench.Config{Dialect: "track-batch", Token: "bench-key", Batch: 100}},
		{"s2s100", bench.Config{Dialect: "s2s", Token: "bench-key", AppID: "bench-app", Batch: 100}},
		{"commerce", bench.Config{Dialect: "commerce", Token: "bench-key"}},
		{"commerce-batch100", bench.Config{Dialect: "commerce-batch", Token: "bench-key", Batch: 100}},
	} {
		b.Run(c.name, func(b *testing.B) {
			srv, l := benchServer(b)
			newWorker, events, err := bench.Requests(c.cfg)
			if err != nil {
				b.Fatal(err)
			}
			var floor *event.Event
			if c.name == "append" {
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, newWorker()())
				recs := storedEvents(b, l)
				if rec.Code != 200 || len(recs) != 1 {
					b.Fatalf("status %d, %d stored", rec.Code, len(recs))
				}
				floor = recs[0]
			}
			parallel := 16 // goroutines per GOMAXPROCS: 32 on two cores
			if events > 1 {
				parallel = 8
			}
			b.SetParallelism(parallel)
			b.ReportAllocs()
			cpu := cpuTime(b)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				next := newWorker()
				for pb.Next() {
					if floor != nil {
						e := *floor
						e.ID = 0
						if _, err := l.Append(context.Background(), []*event.Event{&e}); err != nil {
							b.Error(err)
							return
						}
						continue
					}
					rec := httptest.NewRecorder()
					srv.ServeHTTP(rec, next())
					if rec.Code != 200 {
						b.Errorf("status %d: %s", rec.Code, rec.Body)
						return
					}
				}
			})
			b.StopTimer()
			perEvent := (cpuTime(b) - cpu) / time.Duration(b.N*events)
			b.ReportMetric(float64(perEvent.Nanoseconds())/1000, "cpu-µs/event")
			b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func storedEvents(b *testing.B, l *sqlite.Log) []*event.Event {
	recs, err := l.Read(context.Background(), eventlog.Query{Limit: 10})
	if err != nil {
		b.Fatal(err)
	}
	var out []*event.Event
	for _, r := range recs {
		e, err := event.Decode(r.Body)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}
