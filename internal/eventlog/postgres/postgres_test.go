package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/logtest"
	"github.com/sluicehq/sluice/internal/pgmigrate"
	"github.com/sluicehq/sluice/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// open opens a handle on the log in the database of dsn.
func open(t testing.TB, dsn string, mod ...func(*Config)) *Log {
	t.Helper()
	l, err := tryOpen(dsn, mod...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func tryOpen(dsn string, mod ...func(*Config)) (*Log, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg := Config{Pool: pc}
	for _, m := range mod {
		m(&cfg)
	}
	return Open(context.Background(), cfg, nil, nil)
}

// Every handle of a store is a node with a worker id of its own, so that
// the suite's followers catch ids out of commit order (with one worker id,
// they would rather collide).
func TestConformance(t *testing.T) {
	logtest.Run(t, func(t *testing.T) logtest.Store {
		dsn := pgtest.Start(t)
		var worker atomic.Int32
		return func(t *testing.T) eventlog.Log {
			return open(t, dsn, func(c *Config) { c.Worker = int(worker.Add(1)) })
		}
	})
}

func conn(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func exec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// A server whose commits can be lost after they returned is refused,
// whichever level turned synchronous_commit off, unless the operator
// allows it.
func TestRefusesSynchronousCommitOff(t *testing.T) {
	dsn := pgtest.Start(t)
	db := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	admin := conn(t, dsn)
	exec(t, admin, "ALTER DATABASE "+db+" SET synchronous_commit = off")
	_, err := tryOpen(dsn)
	if !errors.Is(err, ErrNotDurable) || !strings.Contains(err.Error(), "synchronous_commit off") || !strings.Contains(err.Error(), "postgres.allow_synchronous_commit_off") {
		t.Fatalf("open with synchronous_commit off for the database: %v", err)
	}
	var logs bytes.Buffer
	pc, _ := pgxpool.ParseConfig(dsn)
	l, err := Open(context.Background(), Config{Pool: pc, AllowSynchronousCommitOff: true}, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("open with synchronous_commit off allowed: %v", err)
	}
	if _, err := l.Append(context.Background(), []*event.Event{logtest.Event(1, "k", 1)}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if !strings.Contains(logs.String(), "synchronous_commit off") {
		t.Fatalf("no warning logged: %s", logs.String())
	}
	exec(t, admin, "ALTER DATABASE "+db+" RESET synchronous_commit")

	// In the connection string.
	if _, err := tryOpen(dsn + "&options=-c%20synchronous_commit%3Doff"); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("open with synchronous_commit off in the DSN: %v", err)
	}
	// local and the remote levels flush the local WAL: durable.
	if l, err := tryOpen(dsn + "&options=-c%20synchronous_commit%3Dlocal"); err != nil {
		t.Fatalf("open with synchronous_commit local: %v", err)
	} else {
		l.Close()
	}
}

// fsync off (server-wide) is refused the same way.
func TestRefusesFsyncOff(t *testing.T) {
	srv := pgtest.NewServer(t)
	dsn := srv.CreateDB(t)
	srv.Exec(t, "ALTER SYSTEM SET fsync = off")
	srv.Exec(t, "SELECT pg_reload_conf()")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := tryOpen(dsn)
		if errors.Is(err, ErrNotDurable) && strings.Contains(err.Error(), "fsync off") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("open with fsync off: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // the reload reaches new sessions shortly
	}
}

// Nodes that start together on a fresh database create the tables once;
// a database migrated by a newer binary is refused.
func TestMigrationsAtOpen(t *testing.T) {
	dsn := pgtest.Start(t)
	var wg sync.WaitGroup
	logs := make([]*Log, 4)
	errs := make([]error, 4)
	for i := range logs {
		wg.Add(1)
		go func() { defer wg.Done(); logs[i], errs[i] = tryOpen(dsn) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		logs[i].Close()
	}
	c := conn(t, dsn)
	ms, _ := Migrations().Migrations()
	if v, err := pgmigrate.Version(context.Background(), c, "eventlog"); err != nil || v != len(ms) || v < 2 {
		t.Fatalf("version %d, %v; want %d", v, err, len(ms))
	}
	exec(t, c, "UPDATE schema_migrations SET version = 99 WHERE component = 'eventlog'")
	if _, err := tryOpen(dsn); !errors.Is(err, pgmigrate.ErrNewer) {
		t.Fatalf("open of a newer schema: %v", err)
	}
}

// A log stored by the first schema (no prev in event_log) opens, keeps
// its events and head, and continues above them.
func TestUpgradeFromSchema1(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	c := conn(t, dsn)
	if err := pgmigrate.ApplyUpTo(ctx, c, Migrations(), 1); err != nil {
		t.Fatal(err)
	}
	// What a binary of schema 1 left: an event and the head.
	old := event.FirstIDAt(time.Now()) + 7
	e := logtest.Event(1, "in.gen.old.one", 1)
	e.ID = old
	exec(t, c, "INSERT INTO events (id, project_id, key, time, body) VALUES ($1, 1, $2, $3, $4)", int64(old), e.Key, e.Time, e.AppendJSON(nil))
	exec(t, c, "UPDATE event_log SET head = $1", int64(old))
	l := open(t, dsn)
	defer l.Close()
	if l.Head() != old {
		t.Fatalf("head %s after the upgrade, want %s", l.Head(), old)
	}
	res, err := l.Append(ctx, []*event.Event{logtest.Event(1, "k", 2)})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := l.Read(ctx, eventlog.Query{})
	if err != nil || len(recs) != 2 || recs[0].ID != old || recs[1].ID != res[0].ID || res[0].ID <= old {
		t.Fatalf("after the upgrade: %+v, %v", recs, err)
	}
	if got, err := event.Decode(recs[0].Body); err != nil || got.Key != "in.gen.old.one" || got.ID != old {
		t.Fatalf("the old event: %+v, %v", got, err)
	}
}

// Ids stay above every id ever committed: after a node's clock stepped
// back an hour, and after the newest events were erased (the head is a
// row of its own, not max(id)).
func TestIDsAboveEveryCommittedID(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	a := open(t, dsn, func(c *Config) { c.Worker = 1 })
	defer a.Close()
	res, err := a.Append(ctx, []*event.Event{logtest.Event(1, "k", 1), logtest.Event(1, "k", 2)})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := a.Erase(ctx, 1, []event.ID{res[0].ID, res[1].ID}); err != nil || n != 2 {
		t.Fatalf("erased %d, %v", n, err)
	}
	behind := open(t, dsn, func(c *Config) {
		c.Worker = 2
		c.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	})
	defer behind.Close()
	res2, err := behind.Append(ctx, []*event.Event{logtest.Event(1, "k", 3)})
	if err != nil {
		t.Fatal(err)
	}
	// Above the erased ids, and at their time, not an hour back.
	if res2[0].ID <= res[1].ID || res2[0].ID.Millis()-res[1].ID.Millis() > 1000 {
		t.Fatalf("id %s (%s) of a node an hour behind, after %s (%s) was erased", res2[0].ID, res2[0].ID.Time(), res[1].ID, res[1].ID.Time())
	}
	if behind.Head() != res2[0].ID {
		t.Fatalf("head %s, want %s", behind.Head(), res2[0].ID)
	}
	// A node whose clock is right gives ids of its own time and worker.
	res3, err := a.Append(ctx, []*event.Event{logtest.Event(1, "k", 4)})
	if err != nil {
		t.Fatal(err)
	}
	if res3[0].ID <= res2[0].ID || res3[0].ID.Worker() != 1 || time.Since(res3[0].ID.Time()) > time.Second {
		t.Fatalf("id %s: worker %d, time %s", res3[0].ID, res3[0].ID.Worker(), res3[0].ID.Time())
	}
}

// Globs mean the same as event.MatchGlob: LIKE's own wildcards are
// matched literally.
func TestKeyGlobIsNotLike(t *testing.T) {
	ctx := context.Background()
	l := open(t, pgtest.Start(t))
	defer l.Close()
	keys := []string{"in.gen.a_b.c", "in.gen.axb.c", "in.gen.a%b.c", "in.gen.a\\b.c", "in.gen.ab.c"}
	var evs []*event.Event
	for i, k := range keys {
		evs = append(evs, logtest.Event(1, k, i))
	}
	if _, err := l.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	for _, glob := range []string{"in.gen.a_b.*", "in.gen.a%b.c", "in.gen.a\\b.?", "in.gen.a?b.c", "in.gen.*", "*.c", "in.gen.ab.c"} {
		recs, err := l.Read(ctx, eventlog.Query{KeyGlob: glob})
		if err != nil {
			t.Fatal(err)
		}
		var got, want []string
		for _, r := range recs {
			got = append(got, r.Key)
		}
		for _, k := range keys {
			if event.MatchGlob(glob, k) {
				want = append(want, k)
			}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("glob %q: %q, want %q", glob, got, want)
		}
	}
}

// A server that goes away makes appends fail at once with ErrUnavailable,
// nothing stored; when it is back, appends resume without reopening, and
// every handle hears of every other's commits again.
func TestUnavailableRecoversWithoutReopen(t *testing.T) {
	ctx := context.Background()
	srv := pgtest.NewServer(t)
	dsn := srv.CreateDB(t)
	fast := func(c *Config) { c.RecoverEvery = 20 * time.Millisecond }
	a, b := open(t, dsn, fast), open(t, dsn, fast)
	defer a.Close()
	defer b.Close()
	var acked []event.ID
	res, err := a.Append(ctx, []*event.Event{logtest.Event(1, "k", 1)})
	if err != nil {
		t.Fatal(err)
	}
	acked = append(acked, res[0].ID)
	if err := a.Health(); err != nil {
		t.Fatalf("health: %v", err)
	}

	srv.Stop()
	if _, err := a.Append(ctx, []*event.Event{logtest.Event(1, "k", 2)}); !errors.Is(err, eventlog.ErrUnavailable) {
		t.Fatalf("append to a stopped server: %v, want ErrUnavailable", err)
	}
	if err := a.Health(); !errors.Is(err, eventlog.ErrUnavailable) || !strings.Contains(err.Error(), "PostgreSQL unavailable") {
		t.Fatalf("health while the server is stopped: %v", err)
	}
	start := time.Now()
	if _, err := a.Append(ctx, []*event.Event{logtest.Event(1, "k", 3)}); !errors.Is(err, eventlog.ErrUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("second append while down: %v after %s, want ErrUnavailable at once", err, time.Since(start))
	}

	srv.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := a.Append(ctx, []*event.Event{logtest.Event(1, "k", 4)})
		if err == nil {
			acked = append(acked, res[0].ID)
			break
		}
		if !errors.Is(err, eventlog.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("append after the server came back: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.Health(); err != nil {
		t.Fatalf("health after an append succeeded: %v", err)
	}
	// b, which committed nothing meanwhile, hears of a's commits: its
	// listener reconnected and caught up.
	logtest.WaitHead(t, b, acked[1], 10*time.Second, "the other handle, after its listener reconnected")
	res, err = b.Append(ctx, []*event.Event{logtest.Event(1, "k", 5)})
	if err != nil {
		t.Fatalf("append through the other handle: %v", err)
	}
	acked = append(acked, res[0].ID)
	recs, err := a.Read(ctx, eventlog.Query{})
	if err != nil {
		t.Fatal(err)
	}
	var got []event.ID
	for _, r := range recs {
		got = append(got, r.ID)
	}
	if len(got) != len(acked) || got[0] != acked[0] || got[1] != acked[1] || got[2] != acked[2] {
		t.Fatalf("stored %v, acknowledged %v", got, acked)
	}
}

// The committer and the listener say who they are in pg_stat_activity.
func TestConnectionsNamed(t *testing.T) {
	dsn := pgtest.Start(t)
	l := open(t, dsn)
	defer l.Close()
	rows, err := conn(t, dsn).Query(context.Background(), "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'sluice%' ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || strings.Join(names, ",") != "sluice event log commits,sluice event log notifications" {
		t.Fatalf("sessions %q, %v", names, err)
	}
}

var benchData = []byte(`{"order":"A-1001","amount":1999,"currency":"USD","email":"user@example.com","items":[{"sku":"X1","qty":2},{"sku":"Y2","qty":1}],"utm_source":"newsletter","utm_medium":"email","utm_campaign":"autumn"}`)

// BenchmarkAppendParallel measures the durable commit path: many
// goroutines appending one event each, as concurrent requests do (the
// SQLite log's benchmark of the same name).
func BenchmarkAppendParallel(b *testing.B) {
	l := open(b, pgtest.Start(b))
	defer l.Close()
	ev := logtest.Event(1, "in.gen.bench.event", 1)
	ev.Data = benchData
	b.ResetTimer() // not the server's start nor the migrations
	b.SetParallelism(32)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e := *ev
			if _, err := l.Append(context.Background(), []*event.Event{&e}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAppendBatch100Dedup appends batches of 100 events that each
// carry a dedup key, as s2s messages do.
func BenchmarkAppendBatch100Dedup(b *testing.B) {
	l := open(b, pgtest.Start(b))
	defer l.Close()
	var seq atomic.Int64
	b.ResetTimer() // not the server's start nor the migrations
	b.SetParallelism(4)
	b.ReportAllocs()
	logtest.AppendBatches(b, l, func() string { return "s2s:run-" + strconv.FormatInt(seq.Add(1), 10) })
}

// BenchmarkBaselineGroupCommit is the floor of BenchmarkAppendParallel,
// in the same run: the same event bytes, grouped the same way (whatever
// waits while a commit runs), one INSERT of the group into a table with a
// primary key only, committing by itself in one round trip.
func BenchmarkBaselineGroupCommit(b *testing.B) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, pgtest.Start(b))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE TABLE floor (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body bytea NOT NULL)"); err != nil {
		b.Fatal(err)
	}
	ev := logtest.Event(1, "in.gen.bench.event", 1)
	ev.Data = benchData
	line := ev.AppendJSON(nil)
	reqs := make(chan chan struct{}, 1024)
	go func() {
		var group []chan struct{}
		var bodies [][]byte
		for r := range reqs {
			group = append(group[:0], r)
		more:
			for {
				select {
				case r := <-reqs:
					group = append(group, r)
				default:
					break more
				}
			}
			bodies = bodies[:0]
			for range group {
				bodies = append(bodies, line)
			}
			if _, err := c.Exec(ctx, "INSERT INTO floor (body) SELECT unnest($1::bytea[])", bodies); err != nil {
				b.Error(err)
			}
			for _, r := range group {
				r <- struct{}{}
			}
		}
	}()
	defer close(reqs)
	b.ResetTimer() // not the server's start nor the migrations
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		done := make(chan struct{}, 1)
		for pb.Next() {
			reqs <- done
			<-done
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// The committer plans its statements once, for any group: the dedup
// lookup and the kept raw requests must probe their indexes whatever the
// size of the group (a join planned for an unknown array size scanned the
// whole log: 1.3 s a commit under an s2s load).
func TestCommitPlansUseTheIndexes(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	l := open(t, dsn)
	l.Close()
	c := conn(t, dsn)
	// A log of events without dedup keys but one, as after a webhook load:
	// the statistics make an index scan of every dedup key look cheap.
	exec(t, c, `INSERT INTO events (id, project_id, key, time, dedup, body, content_id)
		SELECT g, 1, 'k', g, CASE WHEN g = 1 THEN '\x6431'::bytea END, '\x7b7d', CASE WHEN g = 1 THEN g END FROM generate_series(1, 20000) g`)
	exec(t, c, "ANALYZE events")
	exec(t, c, "SET plan_cache_mode = force_generic_plan")
	for name, tc := range map[string]struct {
		sql, types, args, want string
	}{
		"lookup":   {sqlLookup, "bigint[], bytea[]", `array[1]::bigint[], array['\x6431']::bytea[]`, "Index Cond: ((project_id = k.project_id) AND (dedup = k.dedup))"},
		"contents": {sqlInsertContents, "bigint[], bigint[], bigint[], bytea[]", `array[1]::bigint[], array[1]::bigint[], array[1]::bigint[], array['\x00']::bytea[]`, "Index Cond: (content_id = "},
	} {
		exec(t, c, "PREPARE "+name+" ("+tc.types+") AS "+tc.sql)
		rows, err := c.Query(ctx, "EXPLAIN EXECUTE "+name+" ("+tc.args+")")
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		plan := strings.Join(lines, "\n")
		if !strings.Contains(plan, tc.want) || strings.Contains(plan, "Seq Scan on events") {
			t.Errorf("%s: the generic plan does not probe the index:\n%s", name, plan)
		}
	}
}

// A log moved in with Load (sluice migrate --from) keeps its ids, dedup
// keys, identities and raw requests; the head rises to its last id, the
// other nodes hear of it, and appends continue above it. An id at or
// below the head is refused: a follower could miss it.
func TestLoad(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	l, other := open(t, dsn), open(t, dsn)
	defer l.Close()
	defer other.Close()
	base := event.FirstIDAt(time.Now().Add(-time.Hour))
	var page []eventlog.StoredEvent
	for i := range 10 {
		e := logtest.Event(1, "in.gen.moved.x", i)
		e.ID = base + event.ID(i)
		se := eventlog.StoredEvent{Record: eventlog.Record{ID: e.ID, ProjectID: 1, Key: e.Key, Time: e.Time, Body: e.AppendJSON(nil)}}
		if i%3 == 0 {
			se.DedupKey = fmt.Sprint("moved-", i)
		}
		if i%2 == 0 {
			se.People = 1
		}
		if i == 4 || i == 5 {
			se.ContentID = int64(base + 4)
		}
		page = append(page, se)
	}
	if err := l.Load(ctx, page[:6], nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Load(ctx, page[6:], []eventlog.StoredContent{{ID: int64(base + 4), Content: event.Content{Body: []byte("raw"), ReceivedAt: 5}}}); err != nil {
		t.Fatal(err)
	}
	last := page[9].ID
	if l.Head() != last {
		t.Fatalf("head %s, want %s", l.Head(), last)
	}
	logtest.WaitHead(t, other, last, 5*time.Second, "the other node, after a load")
	recs, err := other.Read(ctx, eventlog.Query{})
	if err != nil || len(recs) != 10 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	for i, r := range recs {
		if r.ID != page[i].ID || string(r.Body) != string(page[i].Body) || r.ContentID != page[i].ContentID {
			t.Fatalf("record %d: %+v, want %+v", i, r, page[i].Record)
		}
	}
	if people, _ := other.Read(ctx, eventlog.Query{WithIdentities: true}); len(people) != 5 {
		t.Fatalf("%d events with identities, want 5", len(people))
	}
	if cs, err := other.Contents(ctx, []int64{int64(base + 4)}); err != nil || string(cs[int64(base+4)].Body) != "raw" {
		t.Fatalf("contents %v, %v", cs, err)
	}
	again := logtest.Event(1, "k", 99)
	again.DedupKey = "moved-3"
	res, err := other.Append(ctx, []*event.Event{again, logtest.Event(1, "k", 100)})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Duplicate || res[0].ID != page[3].ID || res[1].ID <= last {
		t.Fatalf("after the load: %+v", res)
	}
	if err := l.Load(ctx, page[9:], nil); err == nil || !strings.Contains(err.Error(), "not above the log's head") {
		t.Fatalf("a load below the head: %v", err)
	}
	if err := l.Load(ctx, []eventlog.StoredEvent{page[2], page[1]}, nil); err == nil || !strings.Contains(err.Error(), "not in id order") {
		t.Fatalf("a load out of order: %v", err)
	}
}
