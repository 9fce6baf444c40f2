package hook

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/pgmigrate"
	"github.com/sluicehq/sluice/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// storeBackend opens a fresh, empty Store.
type storeBackend struct {
	name string
	open func(t *testing.T) Store
}

func storeBackends() []storeBackend {
	return []storeBackend{
		{"sqlite", func(t *testing.T) Store {
			s, err := OpenSQLite(filepath.Join(t.TempDir(), "hooks.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
		{"postgres", func(t *testing.T) Store { return NewPostgres(pgPool(t, Migrations)) }},
	}
}

// pgPool is a pool on a fresh database migrated with comps.
func pgPool(t *testing.T, comps ...pgmigrate.Component) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), pgtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pgmigrate.Apply(context.Background(), pool, comps...); err != nil {
		t.Fatal(err)
	}
	return pool
}

// TestStore is the conformance suite every Store passes.
func TestStore(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, s Store)
	}{
		{"DefinitionsRoundTrip", storeDefinitionsRoundTrip},
		{"VersionMovesWithDefinitionsOnly", storeVersion},
		{"ClaimFencesTheLoopBefore", storeClaimFences},
		{"TakeOverContinuesFromCursorAndBatchesInFlight", storeTakeOver},
		{"RepositionDropsBatchesInFlight", storeReposition},
		{"FinishDeliveredAndParked", storeFinish},
		{"RetryKeepsTheAttemptNumberWithTheBatch", storeRetry},
		{"AttemptLogNewestFirstAndBounded", storeAttempts},
		{"DeadLettersSelectedReplayedAndErased", storeDeadLetters},
		{"DeleteTakesEverything", storeDelete},
		{"Forgotten", storeForgotten},
	}
	for _, b := range storeBackends() {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, b.open(t)) })
			}
		})
	}
}

var t0 = time.UnixMilli(1_700_000_000_000).UTC()

func storedHook(id string, at time.Time) StoredHook {
	return StoredHook{ID: id, Spec: []byte(`{"name":"` + id + `"}`), Secrets: []byte{1, 2, 3, byte(len(id))}, Active: true,
		Cursor: 100, Scan: 100, CreatedAt: at, UpdatedAt: at}
}

func mustInsert(t *testing.T, s Store, hs ...StoredHook) {
	t.Helper()
	for _, h := range hs {
		if err := s.Insert(context.Background(), h); err != nil {
			t.Fatal(err)
		}
	}
}

func mustClaim(t *testing.T, s Store, id string) Claim {
	t.Helper()
	c, err := s.Claim(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func storeDefinitionsRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	b := storedHook("hk_b", t0)
	a := storedHook("hk_a", t0)
	c := storedHook("hk_c", t0.Add(-time.Second))
	c.Active, c.StoppedReason, c.DeadStreak, c.Cursor, c.Scan = false, "stopped by an operator", 3, 7, 9
	mustInsert(t, s, b, a, c)
	if err := s.Insert(ctx, a); err == nil {
		t.Fatal("a second hook with one id was stored")
	}
	got, err := s.Hooks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Oldest first, then by id.
	if want := []StoredHook{c, a, b}; !reflect.DeepEqual(got, want) {
		t.Fatalf("hooks\n%+v\nwant\n%+v", got, want)
	}
	// Update writes the definition, secrets and switch, not the cursor;
	// switched on, the dead streak ends.
	c.Spec, c.Secrets, c.Active, c.StoppedReason, c.UpdatedAt = []byte(`{"name":"c2"}`), []byte{9}, true, "", t0.Add(time.Minute)
	c.Cursor = 5000 // ignored without a cursor
	if err := s.Update(ctx, c, nil); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Hooks(ctx)
	c.Cursor, c.DeadStreak = 7, 0
	if !reflect.DeepEqual(got[0], c) {
		t.Fatalf("updated\n%+v\nwant\n%+v", got[0], c)
	}
	if err := s.Update(ctx, storedHook("hk_none", t0), nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of an unknown hook: %v", err)
	}
	cursors, err := s.Cursors(ctx)
	if err != nil || !reflect.DeepEqual(cursors, map[string]event.ID{"hk_a": 100, "hk_b": 100, "hk_c": 7}) {
		t.Fatalf("cursors %v %v", cursors, err)
	}
}

func version(t *testing.T, s Store) int64 {
	t.Helper()
	v, err := s.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func storeVersion(t *testing.T, s Store) {
	ctx := context.Background()
	v0 := version(t, s)
	step := func(what string, moves bool, fn func() error) {
		t.Helper()
		before := version(t, s)
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if after := version(t, s); (after != before) != moves {
			t.Fatalf("%s: version %d → %d (should move: %v)", what, before, after, moves)
		}
	}
	h := storedHook("hk_v", t0)
	step("insert", true, func() error { return s.Insert(ctx, h) })
	step("update", true, func() error { return s.Update(ctx, h, nil) })
	var gen int64
	step("claim", false, func() (err error) { c, err := s.Claim(ctx, h.ID); gen = c.Generation; return err })
	step("save in flight", false, func() error {
		return s.SaveInflight(ctx, h.ID, gen, InflightBatch{Seq: 1, BatchID: "msg_1", IDs: []event.ID{101}, UpTo: 101})
	})
	step("save cursor", false, func() error { return s.SaveCursor(ctx, h.ID, gen, 101) })
	step("retry", false, func() error {
		return s.Retry(ctx, h.ID, gen, 1, Attempt{HookID: h.ID, BatchID: "msg_1", N: 1, Kind: "delivery"})
	})
	step("finish", false, func() error { return s.Finish(ctx, h.ID, gen, Finish{Seq: 1, Cursor: 101}) })
	step("attempt", false, func() error {
		return s.AddAttempt(ctx, Attempt{HookID: h.ID, BatchID: "msg_1", N: 1, Kind: "delivery"})
	})
	step("forget", true, func() error { return s.Forget(ctx, []event.ID{5}, t0) })
	step("delete", true, func() error { return s.Delete(ctx, h.ID) })
	if version(t, s) <= v0 {
		t.Fatal("the version went back")
	}
}

func storeClaimFences(t *testing.T, s Store) {
	ctx := context.Background()
	h := storedHook("hk_f", t0)
	mustInsert(t, s, h)
	old := mustClaim(t, s, h.ID)
	if old.Cursor != 100 || old.Scan != 100 {
		t.Fatalf("claim %+v", old)
	}
	if err := s.SaveInflight(ctx, h.ID, old.Generation, InflightBatch{Seq: 1, BatchID: "msg_1", IDs: []event.ID{101, 102}, UpTo: 102}); err != nil {
		t.Fatal(err)
	}
	cur := mustClaim(t, s, h.ID) // another loop (another node) claims it
	if cur.Generation <= old.Generation || cur.Scan != 102 {
		t.Fatalf("second claim %+v after %+v", cur, old)
	}
	// Every write of the old loop is refused and changes nothing.
	for what, err := range map[string]error{
		"save in flight": s.SaveInflight(ctx, h.ID, old.Generation, InflightBatch{Seq: 2, BatchID: "msg_2", IDs: []event.ID{103}, UpTo: 103}),
		"save cursor":    s.SaveCursor(ctx, h.ID, old.Generation, 102),
		"retry":          s.Retry(ctx, h.ID, old.Generation, 1, Attempt{HookID: h.ID, BatchID: "msg_1", N: 1, Kind: "delivery"}),
		"finish": s.Finish(ctx, h.ID, old.Generation, Finish{Seq: 1, Cursor: 102,
			Attempt:    &Attempt{HookID: h.ID, BatchID: "msg_1", N: 1, Kind: "delivery"},
			DeadLetter: &DeadLetter{BatchID: "msg_1", CreatedAt: t0, Events: 2, FirstID: 101, LastID: 102, messages: [][]byte{[]byte(`{}`)}}}),
	} {
		if !errors.Is(err, ErrFenced) {
			t.Errorf("%s by the old loop: %v, want ErrFenced", what, err)
		}
	}
	st, err := s.Export(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Hook.Cursor != 100 || st.Hook.Scan != 102 || st.Hook.DeadStreak != 0 || len(st.Inflight) != 1 || st.Inflight[0].Attempts != 0 || len(st.Attempts) != 0 || len(st.DeadLetters) != 0 {
		t.Fatalf("the old loop changed the state: %+v", st)
	}
	// The new loop writes.
	if err := s.SaveCursor(ctx, h.ID, cur.Generation, 101); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, h.ID, cur.Generation, Finish{Seq: 1, Cursor: 102}); err != nil {
		t.Fatal(err)
	}
	// A loop of a deleted hook is fenced too.
	if err := s.Delete(ctx, h.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCursor(ctx, h.ID, cur.Generation, 200); !errors.Is(err, ErrFenced) {
		t.Fatalf("save cursor of a deleted hook: %v", err)
	}
	if _, err := s.Claim(ctx, h.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim of a deleted hook: %v", err)
	}
}

// What a delivery loop wrote is what the loop that takes the hook over
// starts from: the cursor, the scan position and the batches in flight,
// with their ids and events, in order.
func storeTakeOver(t *testing.T, s Store) {
	ctx := context.Background()
	h := storedHook("hk_t", t0)
	mustInsert(t, s, h)
	a := mustClaim(t, s, h.ID)
	batches := []InflightBatch{
		{Seq: 1, BatchID: "msg_one", IDs: []event.ID{101, 103}, UpTo: 104},
		{Seq: 2, BatchID: "msg_two", IDs: []event.ID{105}, UpTo: 110},
		{Seq: 3, BatchID: "msg_three", IDs: []event.ID{111, 112, 113}, UpTo: 113},
	}
	for _, b := range batches {
		if err := s.SaveInflight(ctx, h.ID, a.Generation, b); err != nil {
			t.Fatal(err)
		}
	}
	// Batch 2 done first: the cursor waits for batch 1.
	if err := s.Finish(ctx, h.ID, a.Generation, Finish{Seq: 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, h.ID, a.Generation, Finish{Seq: 1, Cursor: 110}); err != nil {
		t.Fatal(err)
	}
	b := mustClaim(t, s, h.ID)
	if b.Cursor != 110 || b.Scan != 113 {
		t.Fatalf("taken over at %+v, want cursor 110, scan 113", b)
	}
	got, err := s.Inflight(ctx, h.ID)
	if err != nil || !reflect.DeepEqual(got, batches[2:]) {
		t.Fatalf("in flight %+v %v, want %+v", got, err, batches[2:])
	}
	// The cursor never goes back.
	if err := s.SaveCursor(ctx, h.ID, b.Generation, 50); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, h.ID, b.Generation, Finish{Seq: 3, Cursor: 60}); err != nil {
		t.Fatal(err)
	}
	if c := mustClaim(t, s, h.ID); c.Cursor != 110 {
		t.Fatalf("cursor moved back to %d", c.Cursor)
	}
}

func storeReposition(t *testing.T, s Store) {
	ctx := context.Background()
	h := storedHook("hk_r", t0)
	mustInsert(t, s, h)
	a := mustClaim(t, s, h.ID)
	if err := s.SaveInflight(ctx, h.ID, a.Generation, InflightBatch{Seq: 1, BatchID: "msg_1", IDs: []event.ID{150}, UpTo: 150}); err != nil {
		t.Fatal(err)
	}
	c := event.ID(40)
	if err := s.Update(ctx, h, &c); err != nil {
		t.Fatal(err)
	}
	// The loop at the old place can no longer write.
	if err := s.Finish(ctx, h.ID, a.Generation, Finish{Seq: 1, Cursor: 150}); !errors.Is(err, ErrFenced) {
		t.Fatalf("finish at the old place: %v", err)
	}
	b := mustClaim(t, s, h.ID)
	if b.Cursor != 40 || b.Scan != 40 {
		t.Fatalf("repositioned %+v", b)
	}
	if got, _ := s.Inflight(ctx, h.ID); len(got) != 0 {
		t.Fatalf("batches of the old place kept: %+v", got)
	}
}

func storeFinish(t *testing.T, s Store) {
	ctx := context.Background()
	h := storedHook("hk_d", t0)
	mustInsert(t, s, h)
	g := mustClaim(t, s, h.ID).Generation
	save := func(seq int64, ids ...event.ID) {
		t.Helper()
		if err := s.SaveInflight(ctx, h.ID, g, InflightBatch{Seq: seq, BatchID: fmt.Sprint("msg_", seq), IDs: ids, UpTo: ids[len(ids)-1]}); err != nil {
			t.Fatal(err)
		}
	}
	streak := func() int {
		t.Helper()
		n, err := s.DeadStreak(ctx, h.ID)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	msgs := [][]byte{[]byte(`{"id":"101","projectId":7}`), []byte(`{"id":"102","projectId":7}`)}
	for i := int64(1); i <= 2; i++ {
		save(i, event.ID(100+2*i-1), event.ID(100+2*i))
		dl := &DeadLetter{BatchID: fmt.Sprint("msg_", i), CreatedAt: t0.Add(time.Duration(i) * time.Minute), Events: 2, FirstID: event.ID(100 + 2*i - 1),
			LastID: event.ID(100 + 2*i), FirstTime: 1234, Attempts: 5, LastStatus: 503, LastError: "503 Service Unavailable", messages: msgs}
		att := &Attempt{HookID: h.ID, BatchID: dl.BatchID, N: 5, Events: 2, Start: t0, End: t0.Add(time.Second), Status: 503, ErrorClass: "http_5xx",
			Error: "503 Service Unavailable", Response: "busy", Kind: "delivery"}
		if err := s.Finish(ctx, h.ID, g, Finish{Seq: i, Cursor: event.ID(100 + 2*i), Attempt: att, DeadLetter: dl}); err != nil {
			t.Fatal(err)
		}
	}
	if n := streak(); n != 2 {
		t.Fatalf("dead streak %d after two dead letters", n)
	}
	dls, err := s.DeadLetters(ctx, h.ID, DeadLetterQuery{})
	if err != nil || len(dls) != 2 {
		t.Fatalf("%+v %v", dls, err)
	}
	want := DeadLetter{ID: dls[0].ID, HookID: h.ID, BatchID: "msg_1", CreatedAt: t0.Add(time.Minute), Events: 2, FirstID: 101, LastID: 102, FirstTime: 1234,
		Attempts: 5, LastStatus: 503, LastError: "503 Service Unavailable", messages: msgs}
	if !reflect.DeepEqual(dls[0], want) {
		t.Fatalf("dead letter\n%+v\nwant\n%+v", dls[0], want)
	}
	save(3, 105)
	if err := s.Finish(ctx, h.ID, g, Finish{Seq: 3, Cursor: 105, Attempt: &Attempt{HookID: h.ID, BatchID: "msg_3", N: 1, Events: 1, Status: 200, Kind: "delivery"}}); err != nil {
		t.Fatal(err)
	}
	if n := streak(); n != 0 {
		t.Fatalf("dead streak %d after a delivered batch", n)
	}
	atts, err := s.Attempts(ctx, h.ID, 10)
	if err != nil || len(atts) != 3 || atts[0].BatchID != "msg_3" || atts[2].BatchID != "msg_1" || atts[2].ErrorClass != "http_5xx" || atts[2].Response != "busy" {
		t.Fatalf("attempts %+v %v", atts, err)
	}
	if c := mustClaim(t, s, h.ID); c.Cursor != 105 {
		t.Fatalf("cursor %d", c.Cursor)
	}
	if got, _ := s.Inflight(ctx, h.ID); len(got) != 0 {
		t.Fatalf("finished batches still in flight: %+v", got)
	}
}

// The attempts a batch in flight had are stored with it: the loop that
// takes the hook over (a restart, another node) goes on from there. Only
// the loop of the current generation moves them, never back, and the
// attempt is logged in the same write.
func storeRetry(t *testing.T, s Store) {
	ctx := context.Background()
	h := storedHook("hk_re", t0)
	mustInsert(t, s, h)
	a := mustClaim(t, s, h.ID)
	one := InflightBatch{Seq: 1, BatchID: "msg_1", IDs: []event.ID{101, 102}, UpTo: 102}
	two := InflightBatch{Seq: 2, BatchID: "msg_2", IDs: []event.ID{103}, UpTo: 103}
	if err := s.SaveInflight(ctx, h.ID, a.Generation, one, two); err != nil {
		t.Fatal(err)
	}
	retry := func(gen int64, seq int64, n int) error {
		return s.Retry(ctx, h.ID, gen, seq, Attempt{HookID: h.ID, BatchID: fmt.Sprint("msg_", seq), N: n, Events: 2, Start: t0, End: t0.Add(time.Second),
			Status: 500, ErrorClass: "status", Error: "500 Internal Server Error", Response: "down", Next: t0.Add(time.Minute), Kind: "delivery"})
	}
	for n := 1; n <= 2; n++ {
		if err := retry(a.Generation, 1, n); err != nil {
			t.Fatal(err)
		}
	}
	inflight := func(want ...InflightBatch) {
		t.Helper()
		got, err := s.Inflight(ctx, h.ID)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("in flight %+v %v, want %+v", got, err, want)
		}
	}
	one.Attempts = 2
	inflight(one, two)
	atts, err := s.Attempts(ctx, h.ID, 10)
	if err != nil || len(atts) != 2 || atts[0].Attempt != 2 || atts[1].Attempt != 1 || atts[0].BatchID != "msg_1" || atts[0].Response != "down" ||
		atts[0].NextAttemptAt == nil || !atts[0].NextAttemptAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("attempts %+v %v", atts, err)
	}
	// Another loop takes the hook over: it sees the attempts; the old one
	// can no longer count (or log) any.
	b := mustClaim(t, s, h.ID)
	inflight(one, two)
	if err := retry(a.Generation, 1, 3); !errors.Is(err, ErrFenced) {
		t.Fatalf("retry by the old loop: %v, want ErrFenced", err)
	}
	inflight(one, two)
	if atts, _ := s.Attempts(ctx, h.ID, 10); len(atts) != 2 {
		t.Fatalf("the old loop logged an attempt: %+v", atts)
	}
	// The new loop goes on with attempt 3; the count never goes back.
	if err := retry(b.Generation, 1, 3); err != nil {
		t.Fatal(err)
	}
	if err := retry(b.Generation, 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := retry(b.Generation, 2, 1); err != nil {
		t.Fatal(err)
	}
	one.Attempts, two.Attempts = 3, 1
	inflight(one, two)
	// A finished batch takes its count with it.
	if err := s.Finish(ctx, h.ID, b.Generation, Finish{Seq: 1, Cursor: 102}); err != nil {
		t.Fatal(err)
	}
	inflight(two)
	// A repositioning drops the batches with their counts.
	c := event.ID(200)
	if err := s.Update(ctx, h, &c); err != nil {
		t.Fatal(err)
	}
	if err := retry(b.Generation, 2, 2); !errors.Is(err, ErrFenced) {
		t.Fatalf("retry after a repositioning: %v, want ErrFenced", err)
	}
	g := mustClaim(t, s, h.ID).Generation
	if err := s.SaveInflight(ctx, h.ID, g, InflightBatch{Seq: 2, BatchID: "msg_new", IDs: []event.ID{201}, UpTo: 201}); err != nil {
		t.Fatal(err)
	}
	inflight(InflightBatch{Seq: 2, BatchID: "msg_new", IDs: []event.ID{201}, UpTo: 201})
}

func storeAttempts(t *testing.T, s Store) {
	ctx := context.Background()
	mustInsert(t, s, storedHook("hk_a", t0), storedHook("hk_other", t0))
	next := t0.Add(time.Minute)
	for i := 1; i <= AttemptLogKeep+250; i++ {
		a := Attempt{HookID: "hk_a", BatchID: fmt.Sprint("msg_", i), N: i, Events: 1, Start: t0.Add(time.Duration(i) * time.Microsecond),
			End: t0.Add(time.Duration(i) * time.Millisecond), Status: 500, ErrorClass: "http_5xx", Error: "500", Kind: "delivery"}
		if i%2 == 0 {
			a.Next = next
		}
		if err := s.AddAttempt(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddAttempt(ctx, Attempt{HookID: "hk_other", BatchID: "msg_x", N: 1, Kind: "replay"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Attempts(ctx, "hk_a", 3)
	if err != nil || len(got) != 3 {
		t.Fatalf("%+v %v", got, err)
	}
	last := AttemptLogKeep + 250
	if got[0].Attempt != last || got[1].Attempt != last-1 || got[0].BatchID != fmt.Sprint("msg_", last) {
		t.Fatalf("not newest first: %+v", got)
	}
	if got[0].NextAttemptAt == nil || !got[0].NextAttemptAt.Equal(next) || got[1].NextAttemptAt != nil {
		t.Fatalf("next attempt times %+v", got[:2])
	}
	if !got[0].StartedAt.Equal(t0.Add(time.Duration(last)*time.Microsecond)) || !got[0].EndedAt.Equal(t0.Add(time.Duration(last)*time.Millisecond)) {
		t.Fatalf("times %+v", got[0])
	}
	st, _ := s.Export(ctx, "hk_a")
	if n := len(st.Attempts); n < AttemptLogKeep || n >= AttemptLogKeep+100 {
		t.Fatalf("%d attempts kept, want the newest %d (and at most 99 more)", n, AttemptLogKeep)
	}
	if other, _ := s.Attempts(ctx, "hk_other", 10); len(other) != 1 || other[0].Kind != "replay" {
		t.Fatalf("another hook's attempts: %+v", other)
	}
}

func storeDeadLetters(t *testing.T, s Store) {
	ctx := context.Background()
	mustInsert(t, s, storedHook("hk_1", t0), storedHook("hk_2", t0))
	park := func(hook string, seq int64, at time.Time, msgs ...string) {
		t.Helper()
		g := mustClaim(t, s, hook).Generation
		if err := s.SaveInflight(ctx, hook, g, InflightBatch{Seq: seq, BatchID: fmt.Sprint("msg_", seq), IDs: []event.ID{1}, UpTo: 1}); err != nil {
			t.Fatal(err)
		}
		var ms [][]byte
		for _, m := range msgs {
			ms = append(ms, []byte(m))
		}
		if err := s.Finish(ctx, hook, g, Finish{Seq: seq, DeadLetter: &DeadLetter{BatchID: fmt.Sprint("msg_", seq), CreatedAt: at, Events: len(ms),
			FirstID: 1, LastID: 1, Attempts: 1, LastStatus: 500, LastError: "500", messages: ms}}); err != nil {
			t.Fatal(err)
		}
	}
	park("hk_1", 1, t0, `{"id":"1","projectId":7}`, `{"id":"2","projectId":7}`)
	park("hk_1", 2, t0.Add(time.Hour), `{"id":"3","projectId":7}`)
	park("hk_1", 3, t0.Add(2*time.Hour), `{"id":"4","projectId":7}`)
	park("hk_2", 4, t0, `{"id":"1","projectId":7}`)
	all, _ := s.DeadLetters(ctx, "hk_1", DeadLetterQuery{})
	if len(all) != 3 || all[0].BatchID != "msg_1" || all[2].BatchID != "msg_3" || len(all[0].messages) != 2 || string(all[0].messages[1]) != `{"id":"2","projectId":7}` {
		t.Fatalf("dead letters %+v", all)
	}
	one, _ := s.DeadLetters(ctx, "hk_1", DeadLetterQuery{ID: all[1].ID})
	if len(one) != 1 || one[0].BatchID != "msg_2" {
		t.Fatalf("by id: %+v", one)
	}
	if other, _ := s.DeadLetters(ctx, "hk_2", DeadLetterQuery{ID: all[1].ID}); len(other) != 0 {
		t.Fatalf("another hook's dead letter by id: %+v", other)
	}
	rng, _ := s.DeadLetters(ctx, "hk_1", DeadLetterQuery{Since: t0.Add(time.Hour), Until: t0.Add(2 * time.Hour)})
	if len(rng) != 1 || rng[0].BatchID != "msg_2" {
		t.Fatalf("by time: %+v", rng)
	}
	if err := s.DeadLetterFailed(ctx, all[1].ID, 502, "502 Bad Gateway"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.DeadLetters(ctx, "hk_1", DeadLetterQuery{ID: all[1].ID}); got[0].Attempts != 2 || got[0].LastStatus != 502 || got[0].LastError != "502 Bad Gateway" {
		t.Fatalf("after a failed replay: %+v", got[0])
	}
	if err := s.RemoveDeadLetter(ctx, all[1].ID); err != nil {
		t.Fatal(err)
	}
	// An erasure sees every dead letter and rewrites or removes it.
	seen := map[int64]string{}
	if err := s.EachDeadLetter(ctx, func(id int64, msgs []byte) error {
		seen[id] = string(msgs)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[all[0].ID] != `[{"id":"1","projectId":7},{"id":"2","projectId":7}]` {
		t.Fatalf("each dead letter: %v", seen)
	}
	if err := s.RewriteDeadLetter(ctx, all[0].ID, []byte(`[{"id":"2","projectId":7}]`), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.RewriteDeadLetter(ctx, all[2].ID, []byte(`[]`), 0); err != nil {
		t.Fatal(err)
	}
	left, _ := s.DeadLetters(ctx, "hk_1", DeadLetterQuery{})
	if len(left) != 1 || left[0].Events != 1 || len(left[0].messages) != 1 || string(left[0].messages[0]) != `{"id":"2","projectId":7}` {
		t.Fatalf("after the erasure: %+v", left)
	}
}

func storeDelete(t *testing.T, s Store) {
	ctx := context.Background()
	mustInsert(t, s, storedHook("hk_x", t0), storedHook("hk_y", t0))
	for _, id := range []string{"hk_x", "hk_y"} {
		g := mustClaim(t, s, id).Generation
		if err := s.SaveInflight(ctx, id, g, InflightBatch{Seq: 1, BatchID: "msg_1", IDs: []event.ID{1}, UpTo: 1}); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveInflight(ctx, id, g, InflightBatch{Seq: 2, BatchID: "msg_2", IDs: []event.ID{2}, UpTo: 2}); err != nil {
			t.Fatal(err)
		}
		if err := s.Finish(ctx, id, g, Finish{Seq: 1, Attempt: &Attempt{HookID: id, BatchID: "msg_1", N: 1, Kind: "delivery"},
			DeadLetter: &DeadLetter{BatchID: "msg_1", CreatedAt: t0, Events: 1, messages: [][]byte{[]byte(`{}`)}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "hk_x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "hk_x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.Export(ctx, "hk_x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("export of a deleted hook: %v", err)
	}
	if in, _ := s.Inflight(ctx, "hk_x"); len(in) != 0 {
		t.Fatalf("in flight kept: %+v", in)
	}
	if a, _ := s.Attempts(ctx, "hk_x", 10); len(a) != 0 {
		t.Fatalf("attempts kept: %+v", a)
	}
	if d, _ := s.DeadLetters(ctx, "hk_x", DeadLetterQuery{}); len(d) != 0 {
		t.Fatalf("dead letters kept: %+v", d)
	}
	st, err := s.Export(ctx, "hk_y")
	if err != nil || len(st.Inflight) != 1 || len(st.Attempts) != 1 || len(st.DeadLetters) != 1 {
		t.Fatalf("another hook's state: %+v %v", st, err)
	}
}

func storeForgotten(t *testing.T, s Store) {
	ctx := context.Background()
	if err := s.Forget(ctx, []event.ID{7, 3}, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Forget(ctx, []event.ID{9}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Forgotten(ctx, t0)
	if err != nil || !reflect.DeepEqual(got, []event.ID{3, 7, 9}) {
		t.Fatalf("forgotten %v %v", got, err)
	}
	if got, _ := s.Forgotten(ctx, t0.Add(time.Minute)); !reflect.DeepEqual(got, []event.ID{9}) {
		t.Fatalf("forgotten since: %v", got)
	}
	// What is older than any retry is dropped.
	if err := s.Forget(ctx, []event.ID{11}, t0.Add(forgetFor+2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Forgotten(ctx, time.Time{}); !reflect.DeepEqual(got, []event.ID{11}) {
		t.Fatalf("forgotten after a day: %v", got)
	}
}

// Export from one backend and Import into the other keeps every part of
// a hook's state, dead letter ids included (sluice migrate --from).
func TestStoreExportImportAcrossBackends(t *testing.T) {
	ctx := context.Background()
	bs := storeBackends()
	for _, pair := range [][2]storeBackend{{bs[0], bs[1]}, {bs[1], bs[0]}} {
		t.Run(pair[0].name+"→"+pair[1].name, func(t *testing.T) {
			from, to := pair[0].open(t), pair[1].open(t)
			h := storedHook("hk_m", t0)
			h.DeadStreak = 0
			mustInsert(t, from, h, storedHook("hk_n", t0.Add(time.Second)))
			g := mustClaim(t, from, h.ID).Generation
			for seq := int64(1); seq <= 4; seq++ {
				if err := from.SaveInflight(ctx, h.ID, g, InflightBatch{Seq: seq, BatchID: fmt.Sprint("msg_", seq), IDs: []event.ID{event.ID(100 + seq), event.ID(200 + seq)}, UpTo: event.ID(300 + seq)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := from.Retry(ctx, h.ID, g, 3, Attempt{HookID: h.ID, BatchID: "msg_3", N: 2, Events: 2, Start: t0, End: t0.Add(time.Millisecond),
				Status: 500, ErrorClass: "status", Error: "500", Kind: "delivery"}); err != nil {
				t.Fatal(err)
			}
			for seq := int64(1); seq <= 2; seq++ {
				if err := from.Finish(ctx, h.ID, g, Finish{Seq: seq, Cursor: event.ID(300 + seq), Attempt: &Attempt{HookID: h.ID, BatchID: fmt.Sprint("msg_", seq), N: 3, Events: 2,
					Start: t0, End: t0.Add(time.Millisecond), Status: 500, ErrorClass: "http_5xx", Error: "500", Response: "no", Next: t0.Add(time.Hour), Kind: "delivery"},
					DeadLetter: &DeadLetter{BatchID: fmt.Sprint("msg_", seq), CreatedAt: t0, Events: 2, FirstID: 101, LastID: 201, FirstTime: 5, Attempts: 3,
						LastStatus: 500, LastError: "500", messages: [][]byte{[]byte(`{"a":1}`), []byte(`{"b":2}`)}}}); err != nil {
					t.Fatal(err)
				}
			}
			hooks, _ := from.Hooks(ctx)
			var want []*HookState
			for _, sh := range hooks {
				st, err := from.Export(ctx, sh.ID)
				if err != nil {
					t.Fatal(err)
				}
				if err := to.Import(ctx, st); err != nil {
					t.Fatal(err)
				}
				want = append(want, st)
			}
			for _, w := range want {
				got, err := to.Export(ctx, w.Hook.ID)
				if err != nil {
					t.Fatal(err)
				}
				// Attempt ids are the new store's own.
				for i := range got.Attempts {
					got.Attempts[i].ID = w.Attempts[i].ID
				}
				if !reflect.DeepEqual(got, w) {
					t.Fatalf("imported\n%+v\nwant\n%+v", got, w)
				}
			}
			// The loop that takes over in the new store goes on from there,
			// and a new dead letter gets an id above the kept ones.
			c := mustClaim(t, to, h.ID)
			if c.Cursor != 302 || c.Scan != 304 {
				t.Fatalf("claim after import %+v", c)
			}
			if in, _ := to.Inflight(ctx, h.ID); len(in) != 2 || in[0].Attempts != 2 || in[1].Attempts != 0 {
				t.Fatalf("in flight after import %+v", in)
			}
			if err := to.Finish(ctx, h.ID, c.Generation, Finish{Seq: 3, DeadLetter: &DeadLetter{BatchID: "msg_3", CreatedAt: t0, Events: 1, messages: [][]byte{[]byte(`{}`)}}}); err != nil {
				t.Fatal(err)
			}
			dls, _ := to.DeadLetters(ctx, h.ID, DeadLetterQuery{})
			ids := []int64{dls[0].ID, dls[1].ID, dls[2].ID}
			if !sort.SliceIsSorted(ids, func(i, j int) bool { return ids[i] < ids[j] }) || ids[2] <= ids[1] {
				t.Fatalf("dead letter ids %v", ids)
			}
		})
	}
}

// A database of the first schema (before several nodes) is brought up to
// date at start, keeping what it holds.
func TestPostgresUpgradeFromFirstSchema(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pgmigrate.ApplyUpTo(ctx, pool, Migrations, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO hooks (id, spec, secrets, active, cursor, scan, stopped_reason, consecutive_dead, created_at, updated_at)
		VALUES ('hk_old', '{"name":"old"}', '\x0102', true, 500, 600, '', 2, 1700000000000, 1700000000001)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO hook_inflight (hook_id, seq, batch_id, ids, last_id) VALUES ('hk_old', 4, 'msg_old', '{501,502}', 600)`); err != nil {
		t.Fatal(err)
	}
	if err := pgmigrate.Apply(ctx, pool, Migrations); err != nil {
		t.Fatal(err)
	}
	s := NewPostgres(pool)
	hs, err := s.Hooks(ctx)
	want := StoredHook{ID: "hk_old", Spec: []byte(`{"name":"old"}`), Secrets: []byte{1, 2}, Active: true, Cursor: 500, Scan: 600, DeadStreak: 2,
		CreatedAt: time.UnixMilli(1700000000000).UTC(), UpdatedAt: time.UnixMilli(1700000000001).UTC()}
	if err != nil || len(hs) != 1 || !reflect.DeepEqual(hs[0], want) {
		t.Fatalf("%+v %v", hs, err)
	}
	c := checkUpgradedBatch(t, s, 600)
	if err := s.Finish(ctx, "hk_old", c.Generation, Finish{Seq: 4, Cursor: 600}); err != nil {
		t.Fatal(err)
	}
	if v := version(t, s); v != 0 {
		t.Fatalf("version %d", v)
	}
}

// A hooks.db of an earlier version (before the scan position, the
// generation and the attempts of a batch in flight) is brought up to
// date when it opens, keeping what it holds.
func TestSQLiteUpgradeFromFirstSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hooks.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE hooks (id TEXT PRIMARY KEY, spec TEXT NOT NULL, secrets BLOB NOT NULL, active INTEGER NOT NULL, cursor INTEGER NOT NULL,
			stopped_reason TEXT NOT NULL DEFAULT '', consecutive_dead INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)`,
		`CREATE TABLE inflight (hook_id TEXT NOT NULL, seq INTEGER NOT NULL, batch_id TEXT NOT NULL, ids TEXT NOT NULL, last_id INTEGER NOT NULL,
			PRIMARY KEY (hook_id, seq))`,
		`INSERT INTO hooks (id, spec, secrets, active, cursor, stopped_reason, consecutive_dead, created_at, updated_at)
			VALUES ('hk_old', '{"name":"old"}', x'0102', 1, 500, '', 2, 1700000000000, 1700000000001)`,
		`INSERT INTO inflight (hook_id, seq, batch_id, ids, last_id) VALUES ('hk_old', 4, 'msg_old', '[501,502]', 600)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkUpgradedBatch(t, s, 0)
}

// checkUpgradedBatch checks what both upgrade tests stored before the
// upgrade, hook hk_old at cursor 500 (scan position scan) with batch 4 in
// flight, and that the batch, which had no attempts recorded, counts them
// from here. It returns the claim.
func checkUpgradedBatch(t *testing.T, s Store, scan event.ID) Claim {
	t.Helper()
	ctx := context.Background()
	c := mustClaim(t, s, "hk_old")
	if c.Generation != 1 || c.Cursor != 500 || c.Scan != scan {
		t.Fatalf("claim %+v", c)
	}
	in, err := s.Inflight(ctx, "hk_old")
	if err != nil || len(in) != 1 || !reflect.DeepEqual(in[0], InflightBatch{Seq: 4, BatchID: "msg_old", IDs: []event.ID{501, 502}, UpTo: 600}) {
		t.Fatalf("%+v %v", in, err)
	}
	if err := s.Retry(ctx, "hk_old", c.Generation, 4, Attempt{HookID: "hk_old", BatchID: "msg_old", N: 1, Kind: "delivery"}); err != nil {
		t.Fatal(err)
	}
	if in, _ := s.Inflight(ctx, "hk_old"); len(in) != 1 || in[0].Attempts != 1 {
		t.Fatalf("after a retry: %+v", in)
	}
	return c
}
