package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/logtest"
	"github.com/sluicehq/sluice/internal/tmpfs"
)

func openAt(t testing.TB, dir string) *Log {
	t.Helper()
	l, err := Open(Config{Path: filepath.Join(dir, "events.db")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Every handle of a store has a worker id of its own, as the nodes of a
// cluster would: ids out of commit order then show as events a follower
// misses rather than as collisions.
func TestConformance(t *testing.T) {
	logtest.Run(t, func(t *testing.T) logtest.Store {
		dir := t.TempDir()
		var worker atomic.Int32
		return func(t *testing.T) eventlog.Log {
			l, err := Open(Config{Path: filepath.Join(dir, "events.db"), Worker: int(worker.Add(1))}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
	})
}

// A clock an hour behind the stored ids (a restart after the clock
// stepped back) still continues above them.
func TestIDsAboveStoredWhateverTheClock(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := openAt(t, dir)
	res, err := l.Append(ctx, []*event.Event{logtest.Event(1, "k", 1)})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	behind := func() time.Time { return time.Now().Add(-time.Hour) }
	l, err = Open(Config{Path: filepath.Join(dir, "events.db"), Now: behind, Worker: 5}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	res2, err := l.Append(ctx, []*event.Event{logtest.Event(1, "k", 2), logtest.Event(1, "k", 3)})
	if err != nil {
		t.Fatal(err)
	}
	if res2[0].ID <= res[0].ID || res2[1].ID <= res2[0].ID || res2[0].ID.Worker() != 5 {
		t.Fatalf("ids %s %s after %s (worker %d)", res2[0].ID, res2[1].ID, res[0].ID, res2[0].ID.Worker())
	}
	if _, err := Open(Config{Path: filepath.Join(dir, "events.db"), Worker: 1024}, nil, nil); err == nil {
		t.Fatal("worker 1024 accepted")
	}
}

func TestDurabilitySettings(t *testing.T) {
	l := openAt(t, t.TempDir())
	defer l.Close()
	mode, err := l.queryOne("PRAGMA journal_mode")
	if err != nil || mode != "wal" {
		t.Fatalf("journal_mode %v, %v", mode, err)
	}
	// NORMAL on the committing connection: the leaders sync the WAL
	// themselves (TestNothingAnsweredBeforeWALSync); FULL on the others.
	syncMode, err := l.queryOne("PRAGMA synchronous")
	if err != nil || syncMode != int64(1) {
		t.Fatalf("synchronous %v, %v; want 1 (NORMAL)", syncMode, err)
	}
	var other int
	if err := l.cdb.QueryRow("PRAGMA synchronous").Scan(&other); err != nil || other != 2 {
		t.Fatalf("checkpointer synchronous %v, %v; want 2 (FULL)", other, err)
	}
}

func TestGroupCommitSharesTransactions(t *testing.T) {
	reg := prometheus.NewRegistry()
	l, err := Open(Config{Path: filepath.Join(t.TempDir(), "events.db")}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const n = 400
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Append(context.Background(), []*event.Event{logtest.Event(1, "k", i)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := testutil.ToFloat64(l.metrics.stored); got != n {
		t.Fatalf("stored counter %v, want %d", got, n)
	}
	// 400 concurrent single-event appends must not take 400 commits.
	commits := testutil.CollectAndCount(reg, "sluice_log_commit_batch_events")
	if commits != 1 {
		t.Fatalf("histogram series %d", commits)
	}
	var count uint64
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "sluice_log_commit_batch_events" {
			count = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	if count == 0 || count >= n {
		t.Fatalf("%d commits for %d concurrent appends: no group commit", count, n)
	}
	t.Logf("%d appends in %d commits", n, count)
}

// TestTruncatedWALTail opens a copy of a log whose last write was cut short
// in the middle of a WAL frame: every earlier commit must be there, the
// torn one must be gone, and the log must take new appends.
func TestTruncatedWALTail(t *testing.T) {
	for _, cut := range []int64{1, 100, 4000} {
		t.Run(fmt.Sprintf("cut%d", cut), func(t *testing.T) {
			src := t.TempDir()
			l := openAt(t, src)
			stopCheckpoints(t, l)
			ctx := context.Background()
			var ids []event.ID
			for i := 0; i < 20; i++ { // 20 commits of one event each
				res, err := l.Append(ctx, []*event.Event{logtest.Event(1, "k", i)})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, res[0].ID)
			}
			// Copy the files as a crash would leave them, before Close
			// checkpoints the WAL away.
			dst := t.TempDir()
			copyFile(t, filepath.Join(src, "events.db"), filepath.Join(dst, "events.db"))
			copyFile(t, filepath.Join(src, "events.db-wal"), filepath.Join(dst, "events.db-wal"))
			l.Close()
			wal := filepath.Join(dst, "events.db-wal")
			st, err := os.Stat(wal)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(wal, st.Size()-cut); err != nil {
				t.Fatal(err)
			}

			l2 := openAt(t, dst)
			defer l2.Close()
			recs, err := l2.Read(ctx, eventlog.Query{Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 19 {
				t.Fatalf("%d events after a torn last commit, want 19", len(recs))
			}
			for i, r := range recs {
				if r.ID != ids[i] {
					t.Fatalf("event %d: id %d, want %d", i, r.ID, ids[i])
				}
				if _, err := event.Decode(r.Body); err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
			}
			res, err := l2.Append(ctx, []*event.Event{logtest.Event(1, "k", 99)})
			if err != nil {
				t.Fatal(err)
			}
			if res[0].ID <= ids[18] {
				t.Fatalf("new id %d not above %d", res[0].ID, ids[18])
			}
		})
	}
}

// TestGarbageAfterWALTail: bytes after the last valid frame (a write that
// never completed) are ignored.
func TestGarbageAfterWALTail(t *testing.T) {
	src := t.TempDir()
	l := openAt(t, src)
	stopCheckpoints(t, l)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := l.Append(ctx, []*event.Event{logtest.Event(1, "k", i)}); err != nil {
			t.Fatal(err)
		}
	}
	dst := t.TempDir()
	copyFile(t, filepath.Join(src, "events.db"), filepath.Join(dst, "events.db"))
	copyFile(t, filepath.Join(src, "events.db-wal"), filepath.Join(dst, "events.db-wal"))
	l.Close()
	f, err := os.OpenFile(filepath.Join(dst, "events.db-wal"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 5000)
	for i := range junk {
		junk[i] = byte(i * 7)
	}
	f.Write(junk)
	f.Close()
	l2 := openAt(t, dst)
	defer l2.Close()
	recs, err := l2.Read(ctx, eventlog.Query{})
	if err != nil || len(recs) != 5 {
		t.Fatalf("%d events, %v; want 5", len(recs), err)
	}
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	dir := t.TempDir()
	l := openAt(t, dir)
	l.Close()
	db, err := sql.Open("sqlite3", filepath.Join(dir, "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version=99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(Config{Path: filepath.Join(dir, "events.db")}, nil, nil); err == nil {
		t.Fatal("opened a log with a newer schema")
	}
}

func TestCloseCommitsQueued(t *testing.T) {
	dir := t.TempDir()
	l := openAt(t, dir)
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := 0
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Append(context.Background(), []*event.Event{logtest.Event(1, "k", i)}); err == nil {
				mu.Lock()
				acked++
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	l2 := openAt(t, dir)
	defer l2.Close()
	recs, _ := l2.Read(context.Background(), eventlog.Query{Limit: 1000})
	if len(recs) != acked {
		t.Fatalf("%d acknowledged, %d stored", acked, len(recs))
	}
}

// stopCheckpoints keeps every commit in the WAL, as after a crash between
// checkpoints.
func stopCheckpoints(t *testing.T, l *Log) {
	t.Helper()
	l.stopCkp()
	<-l.ckpDone
	l.stopCkp = func() {}
	l.ckpDone = make(chan struct{})
	close(l.ckpDone)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// reportCommits reports the group commits of a benchmark: events per
// commit, the mean time of a commit with its WAL sync, and of a sync.
func reportCommits(b *testing.B, l *Log) {
	mean := func(h prometheus.Histogram) (float64, uint64) {
		var m dto.Metric
		if err := h.Write(&m); err != nil {
			b.Fatal(err)
		}
		n := m.GetHistogram().GetSampleCount()
		if n == 0 {
			return 0, 0
		}
		return m.GetHistogram().GetSampleSum() / float64(n), n
	}
	var m dto.Metric
	_ = l.metrics.batch.Write(&m)
	if n := m.GetHistogram().GetSampleCount(); n > 0 {
		b.ReportMetric(m.GetHistogram().GetSampleSum()/float64(n), "events/commit")
	}
	c, commits := mean(l.metrics.latency)
	s, syncs := mean(l.metrics.sync)
	b.ReportMetric(c*1000, "commit-ms")
	b.ReportMetric(s*1000, "sync-ms")
	if commits > 0 {
		b.ReportMetric(float64(syncs)/float64(commits), "syncs/commit")
	}
}

// BenchmarkAppendParallel measures the durable commit path: many
// goroutines appending one event each, as concurrent requests do.
func BenchmarkAppendParallel(b *testing.B) {
	l := openAt(b, b.TempDir())
	defer l.Close()
	ev := logtest.Event(1, "in.gen.bench.event", 1)
	ev.Data = []byte(`{"order":"A-1001","amount":1999,"currency":"USD","email":"user@example.com","items":[{"sku":"X1","qty":2},{"sku":"Y2","qty":1}],"utm_source":"newsletter","utm_medium":"email","utm_campaign":"autumn"}`)
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
	reportCommits(b, l)
}

// BenchmarkAppendBatch100 measures appends of 100 events, as an s2s batch.
func BenchmarkAppendBatch100(b *testing.B) {
	l := openAt(b, b.TempDir())
	defer l.Close()
	b.SetParallelism(4)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		evs := make([]*event.Event, 100)
		for pb.Next() {
			for i := range evs {
				evs[i] = logtest.Event(1, "in.s2s.action.x", i)
				evs[i].Time = time.Now().UnixMilli()
			}
			if _, err := l.Append(context.Background(), evs); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
	reportCommits(b, l)
}

// BenchmarkBaselineFsyncAppend appends the same event bytes to a plain
// file and fsyncs, with a writer goroutine that groups whatever is waiting,
// under the same concurrency as BenchmarkAppendParallel: the floor of a
// durable group commit on this disk, measured in the same run.
func BenchmarkBaselineFsyncAppend(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	line := logtest.Event(1, "in.gen.bench.event", 1).AppendJSON(nil)
	line = append(line, '\n')
	reqs := make(chan chan struct{}, 1024)
	go func() {
		var buf []byte
		var group []chan struct{}
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
			buf = buf[:0]
			for range group {
				buf = append(buf, line...)
			}
			if _, err := f.Write(buf); err != nil {
				b.Error(err)
			}
			if err := f.Sync(); err != nil {
				b.Error(err)
			}
			for _, r := range group {
				r <- struct{}{}
			}
		}
	}()
	defer close(reqs)
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		done := make(chan struct{}, 1)
		for pb.Next() {
			reqs <- done
			<-done
		}
	})
}

// BenchmarkAppendBatch100Dedup appends batches of 100 s2s-sized events,
// each with a dedup key, from 4×GOMAXPROCS goroutines, with the keys
// senders send: keys that grow (an s2s sender's run and sequence),
// version-1 UUIDs (track hitIds: time-low first, so they grow too until it
// wraps every 7 minutes), version-7 UUIDs (an Idempotency-Key that
// starts with its time) and version-4 UUIDs (a random Idempotency-Key),
// whose index entries land on a random page each.
func BenchmarkAppendBatch100Dedup(b *testing.B) {
	for _, keys := range []string{"sequential", "uuid-v1", "uuid-v7", "uuid-v4"} {
		b.Run("keys="+keys, func(b *testing.B) {
			l := openAt(b, b.TempDir())
			defer l.Close()
			var seq atomic.Int64
			b.SetParallelism(4)
			b.ReportAllocs()
			key := func() string { return "s2s:run-" + strconv.FormatInt(seq.Add(1), 10) }
			switch keys {
			case "uuid-v1":
				key = func() string { return "track:" + uuid.Must(uuid.NewUUID()).String() }
			case "uuid-v7":
				key = func() string { return "idem:" + uuid.Must(uuid.NewV7()).String() + ":0" }
			case "uuid-v4":
				key = func() string { return "idem:" + uuid.NewString() + ":0" }
			}
			logtest.AppendBatches(b, l, key)
			reportCommits(b, l)
		})
	}
}

// A cursor read of one project walks the primary key from the cursor; a
// read bounded in time uses the (project_id, time) index. Through the
// index a cursor read would fetch and sort every event of the project for
// each page, which made hook delivery slow down as the log grew.
func TestReadQueryPlans(t *testing.T) {
	l := openAt(t, t.TempDir())
	defer l.Close()
	for _, tc := range []struct {
		q    eventlog.Query
		want string
	}{
		{eventlog.Query{Projects: []uint32{7}, After: 5, Limit: 1000}, "USING INTEGER PRIMARY KEY"},
		{eventlog.Query{Projects: []uint32{7, 8}, Limit: 10}, "USING INTEGER PRIMARY KEY"},
		{eventlog.Query{After: 5, Limit: 1000}, "USING INTEGER PRIMARY KEY"},
		{eventlog.Query{Projects: []uint32{7}, Since: 1, Until: 2, Limit: 10}, "USING INDEX events_project_time"},
		// The profile consumer walks the index of events with identities.
		{eventlog.Query{WithIdentities: true, After: 5, Limit: 1000}, "USING INDEX events_people"},
	} {
		stmt, args := l.readQuery(tc.q)
		rows, err := l.rdb.Query("EXPLAIN QUERY PLAN "+stmt, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		got := strings.Join(plan, "; ")
		if !strings.Contains(got, tc.want) || (tc.q.Since == 0 && strings.Contains(got, "TEMP B-TREE")) {
			t.Errorf("%+v: plan %q, want %q and no sort", tc.q, got, tc.want)
		}
	}
}

// A log written by schema version 1 (no contents) opens, keeps its
// events, and takes contents from then on.
func TestUpgradeFromSchema1(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.db")
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE events (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, key TEXT NOT NULL,
		time INTEGER NOT NULL, dedup TEXT, body TEXT NOT NULL);
		CREATE INDEX events_project_time ON events(project_id, time);
		CREATE UNIQUE INDEX events_dedup ON events(project_id, dedup) WHERE dedup IS NOT NULL;
		INSERT INTO events VALUES (4194304, 1, 'in.gen.a.b', 1, NULL, '{"key":"in.gen.a.b"}');
		PRAGMA user_version=1;`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	l := openAt(t, dir)
	defer l.Close()
	ev := logtest.Event(1, "in.gen.a.c", 2)
	ev.Content = &event.Content{Body: []byte("a=1&b=2"), ReceivedAt: time.Now().UnixMilli()}
	if _, err := l.Append(context.Background(), []*event.Event{ev}); err != nil {
		t.Fatal(err)
	}
	recs, err := l.Read(context.Background(), eventlog.Query{})
	if err != nil || len(recs) != 2 || recs[0].ID != 4194304 || recs[0].ContentID != 0 || recs[1].ContentID == 0 {
		t.Fatalf("records %+v %v", recs, err)
	}
	if got, _ := l.Contents(context.Background(), []int64{recs[1].ContentID}); string(got[recs[1].ContentID].Body) != "a=1&b=2" {
		t.Fatalf("content %q", got[recs[1].ContentID].Body)
	}
}

// A log of schema version 2 opens as version 3: each stored event's
// identities are counted once, so the profile consumer finds them.
func TestUpgradeFromSchema2(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.db")
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE events (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, key TEXT NOT NULL,
		time INTEGER NOT NULL, dedup TEXT, body TEXT NOT NULL, content_id INTEGER);
		CREATE TABLE contents (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL, body BLOB NOT NULL);
		INSERT INTO events VALUES (4194304, 1, 'in.gen.a.b', 1, NULL, '{"key":"in.gen.a.b"}', NULL);
		INSERT INTO events VALUES (4194305, 1, 'in.s2s.user', 1, NULL, '{"key":"in.s2s.user","identities":[{"type":"custom_user_id","value":"c"},{"type":"metrix_user_id","value":"m"}]}', NULL);
		PRAGMA user_version=2;`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	l := openAt(t, dir)
	defer l.Close()
	recs, err := l.Read(context.Background(), eventlog.Query{WithIdentities: true})
	if err != nil || len(recs) != 1 || recs[0].ID != 4194305 {
		t.Fatalf("records %+v %v", recs, err)
	}
	var people int
	if err := l.rdb.QueryRow(`SELECT people FROM events WHERE id = 4194305`).Scan(&people); err != nil || people != 2 {
		t.Fatalf("people %d %v", people, err)
	}
}

// Ids keep their time when commits come faster than one a millisecond
// (on a tmpfs, where fsync is free): minting above the stored ids must not
// move the id clock a millisecond a commit.
func TestIDsKeepTheirTimeAtHighCommitRates(t *testing.T) {
	ctx := context.Background()
	l := openAt(t, tmpfs.Mount(t, 64<<20, "ids at commit rates above one a millisecond"))
	defer l.Close()
	start := time.Now()
	const n = 5000
	var last event.ID
	for i := range n {
		res, err := l.Append(ctx, []*event.Event{logtest.Event(1, "k", i)})
		if err != nil {
			t.Fatal(err)
		}
		last = res[0].ID
	}
	elapsed := time.Since(start)
	if ahead := last.Time().Sub(time.Now()); ahead > 50*time.Millisecond {
		t.Fatalf("after %d commits in %s the last id is %s ahead of the clock", n, elapsed, ahead)
	}
}
