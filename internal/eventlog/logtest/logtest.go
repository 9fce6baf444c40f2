// Package logtest is the conformance suite every eventlog backend passes.
package logtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/tmpfs"
)

// Opener opens the backend's log stored under dir (a fresh t.TempDir() per
// subtest, reused when the suite reopens the log). gen mints the ids.
type Opener func(t *testing.T, dir string, gen *event.Generator) eventlog.Log

// Event returns a valid event for project p with key k and a payload that
// identifies it by n.
func Event(p uint32, k string, n int) *event.Event {
	return &event.Event{
		Key: k, Channel: event.ChannelHTTP, Service: "svc", Name: "name", ProjectID: p,
		TD:      event.TD{IP: "127.0.0.1", UA: "logtest"},
		Data:    json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)),
		Time:    int64(1_700_000_000_000 + n),
		Dialect: "webhook", ReceivedAt: 1_700_000_000_000,
	}
}

func newGen(t *testing.T) *event.Generator {
	g, err := event.NewGenerator(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	ctx := context.Background()

	t.Run("AppendThenRead", func(t *testing.T) {
		l := open(t, t.TempDir(), newGen(t))
		defer l.Close()
		evs := []*event.Event{Event(1, "in.gen.a.b", 1), Event(2, "in.gen.a.c", 2)}
		res, err := l.Append(ctx, evs)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 2 || res[0].Duplicate || res[1].Duplicate || res[0].ID == 0 || res[1].ID <= res[0].ID {
			t.Fatalf("results %+v", res)
		}
		if evs[0].ID != res[0].ID || evs[1].ID != res[1].ID {
			t.Fatal("Append did not set the events' ids")
		}
		if l.Head() != res[1].ID {
			t.Fatalf("head %d, want %d", l.Head(), res[1].ID)
		}
		recs, err := l.Read(ctx, eventlog.Query{})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 {
			t.Fatalf("read %d records", len(recs))
		}
		for i, r := range recs {
			if r.ID != evs[i].ID || r.ProjectID != evs[i].ProjectID || r.Key != evs[i].Key || r.Time != evs[i].Time {
				t.Fatalf("record %d: %+v", i, r)
			}
			got, err := event.Decode(r.Body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, evs[i]) {
				t.Fatalf("record %d body\n got %+v\nwant %+v", i, got, evs[i])
			}
		}
	})

	t.Run("RejectsInvalidEvent", func(t *testing.T) {
		l := open(t, t.TempDir(), newGen(t))
		defer l.Close()
		bad := Event(1, "", 1)
		if _, err := l.Append(ctx, []*event.Event{Event(1, "k", 0), bad}); err == nil {
			t.Fatal("event without key accepted")
		}
		if recs, _ := l.Read(ctx, eventlog.Query{}); len(recs) != 0 {
			t.Fatalf("half-stored: %d records", len(recs))
		}
	})

	t.Run("Dedup", func(t *testing.T) {
		l := open(t, t.TempDir(), newGen(t))
		defer l.Close()
		a := Event(1, "k", 1)
		a.DedupKey = "hit-1"
		res, err := l.Append(ctx, []*event.Event{a})
		if err != nil {
			t.Fatal(err)
		}
		orig := res[0].ID
		again := Event(1, "k", 2)
		again.DedupKey = "hit-1"
		other := Event(2, "k", 3) // same key, other project: not a duplicate
		other.DedupKey = "hit-1"
		twin1, twin2 := Event(1, "k", 4), Event(1, "k", 5) // twins in one append
		twin1.DedupKey, twin2.DedupKey = "hit-2", "hit-2"
		res, err = l.Append(ctx, []*event.Event{again, other, twin1, twin2})
		if err != nil {
			t.Fatal(err)
		}
		if !res[0].Duplicate || res[0].ID != orig {
			t.Fatalf("repeat: %+v, want duplicate of %d", res[0], orig)
		}
		if res[1].Duplicate || res[2].Duplicate {
			t.Fatalf("not duplicates: %+v %+v", res[1], res[2])
		}
		if !res[3].Duplicate || res[3].ID != res[2].ID {
			t.Fatalf("twin: %+v, want duplicate of %d", res[3], res[2].ID)
		}
		recs, _ := l.Read(ctx, eventlog.Query{})
		if len(recs) != 3 {
			t.Fatalf("stored %d events, want 3", len(recs))
		}
	})

	t.Run("ConcurrentDuplicatesStoreOne", func(t *testing.T) {
		l := open(t, t.TempDir(), newGen(t))
		defer l.Close()
		const n = 32
		var wg sync.WaitGroup
		results := make([]eventlog.Result, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e := Event(7, "k", i)
				e.DedupKey = "same"
				res, err := l.Append(ctx, []*event.Event{e})
				if err != nil {
					t.Error(err)
					return
				}
				results[i] = res[0]
			}()
		}
		wg.Wait()
		stored := 0
		for _, r := range results {
			if !r.Duplicate {
				stored++
			}
		}
		for _, r := range results {
			if r.ID != results[0].ID {
				t.Fatalf("results name different ids: %+v", results)
			}
		}
		recs, _ := l.Read(ctx, eventlog.Query{})
		if stored != 1 || len(recs) != 1 {
			t.Fatalf("stored %d (results) %d (log), want 1", stored, len(recs))
		}
	})

	t.Run("Query", func(t *testing.T) {
		l := open(t, t.TempDir(), newGen(t))
		defer l.Close()
		var evs []*event.Event
		for i := 0; i < 30; i++ {
			key := "in.gen.calltrack.call"
			if i%3 == 1 {
				key = "in.s2s.revenue.purchase"
			}
			evs = append(evs, Event(uint32(i%2), key, i))
		}
		if _, err := l.Append(ctx, evs); err != nil {
			t.Fatal(err)
		}
		count := func(q eventlog.Query, want func(e *event.Event) bool) {
			t.Helper()
			recs, err := l.Read(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			var exp []event.ID
			for _, e := range evs {
				if want(e) {
					exp = append(exp, e.ID)
				}
			}
			if q.Limit > 0 && len(exp) > q.Limit {
				if q.Newest {
					exp = exp[len(exp)-q.Limit:]
				} else {
					exp = exp[:q.Limit]
				}
			}
			var got []event.ID
			for _, r := range recs {
				got = append(got, r.ID)
			}
			if !reflect.DeepEqual(got, exp) {
				t.Fatalf("query %+v\n got %v\nwant %v", q, got, exp)
			}
		}
		count(eventlog.Query{Projects: []uint32{1}}, func(e *event.Event) bool { return e.ProjectID == 1 })
		count(eventlog.Query{Projects: []uint32{0, 1}}, func(e *event.Event) bool { return true })
		count(eventlog.Query{KeyGlob: "in.s2s.*"}, func(e *event.Event) bool { return e.Key == "in.s2s.revenue.purchase" })
		count(eventlog.Query{KeyGlob: "in.gen.*.call"}, func(e *event.Event) bool { return e.Key == "in.gen.calltrack.call" })
		count(eventlog.Query{KeyGlob: "in.gen.[c]*"}, func(e *event.Event) bool { return false })
		t0 := evs[10].Time
		count(eventlog.Query{Since: t0, Until: t0 + 5}, func(e *event.Event) bool { return e.Time >= t0 && e.Time < t0+5 })
		count(eventlog.Query{After: evs[20].ID}, func(e *event.Event) bool { return e.ID > evs[20].ID })
		count(eventlog.Query{After: evs[3].ID, Limit: 4}, func(e *event.Event) bool { return e.ID > evs[3].ID })
		count(eventlog.Query{Projects: []uint32{0}, KeyGlob: "in.gen.*", After: evs[5].ID, Limit: 3}, func(e *event.Event) bool {
			return e.ProjectID == 0 && e.Key == "in.gen.calltrack.call" && e.ID > evs[5].ID
		})
		// Newest: the tail of the same selection, still in id order.
		count(eventlog.Query{Newest: true, Limit: 4}, func(e *event.Event) bool { return true })
		count(eventlog.Query{Newest: true, Limit: 3, Projects: []uint32{1}, KeyGlob: "in.gen.*"}, func(e *event.Event) bool {
			return e.ProjectID == 1 && e.Key == "in.gen.calltrack.call"
		})
		count(eventlog.Query{Newest: true, Limit: 5, After: evs[26].ID}, func(e *event.Event) bool { return e.ID > evs[26].ID })
		count(eventlog.Query{Newest: true, Limit: 1000, KeyGlob: "in.s2s.*"}, func(e *event.Event) bool { return e.Key == "in.s2s.revenue.purchase" })
		if n, err := l.Count(ctx, eventlog.Query{Newest: true, Limit: 2}); err != nil || n != int64(len(evs)) {
			t.Fatalf("count with newest: %d, %v; want %d", n, err, len(evs))
		}
		for _, bad := range []eventlog.Query{{Limit: -1}, {Limit: eventlog.MaxLimit + 1}, {Since: 10, Until: 5}} {
			if _, err := l.Read(ctx, bad); err == nil {
				t.Errorf("query %+v accepted", bad)
			}
		}
	})

	t.Run("FollowerMissesNothing", func(t *testing.T) {
		// Appenders race while a follower reads "after its cursor": it must
		// see every event exactly once, which holds only if ids grow in
		// commit order.
		l := open(t, t.TempDir(), newGen(t))
		defer l.Close()
		const writers, per = 8, 200
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per; i++ {
					if _, err := l.Append(ctx, []*event.Event{Event(1, "k", w*per+i)}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		stop := make(chan struct{})
		go func() { wg.Wait(); close(stop) }()
		seen := make(map[event.ID]bool)
		var cursor event.ID
		finished := false
		for {
			changed := l.Changed()
			recs, err := l.Read(ctx, eventlog.Query{After: cursor, Limit: 50})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if seen[r.ID] {
					t.Fatalf("id %d read twice", r.ID)
				}
				seen[r.ID] = true
				cursor = r.ID
			}
			if len(recs) > 0 {
				continue
			}
			if finished {
				break
			}
			select {
			case <-changed:
			case <-stop:
				finished = true
			case <-time.After(5 * time.Second):
				t.Fatal("no change notification")
			}
		}
		all, _ := l.Read(ctx, eventlog.Query{Limit: eventlog.MaxLimit})
		if len(seen) != writers*per || len(all) != writers*per {
			t.Fatalf("follower saw %d, log holds %d, want %d", len(seen), len(all), writers*per)
		}
	})

	t.Run("ChangedIsClosedByCommit", func(t *testing.T) {
		l := open(t, t.TempDir(), newGen(t))
		defer l.Close()
		ch := l.Changed()
		select {
		case <-ch:
			t.Fatal("closed before any commit")
		default:
		}
		if _, err := l.Append(ctx, []*event.Event{Event(1, "k", 1)}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
		case <-time.After(time.Second):
			t.Fatal("not closed by a commit")
		}
	})

	t.Run("DeleteBefore", func(t *testing.T) {
		l := open(t, t.TempDir(), newGen(t))
		defer l.Close()
		if _, err := l.Append(ctx, []*event.Event{Event(1, "k", 1), Event(1, "k", 2)}); err != nil {
			t.Fatal(err)
		}
		cut := time.Now().Add(2 * time.Millisecond)
		time.Sleep(5 * time.Millisecond)
		res, err := l.Append(ctx, []*event.Event{Event(1, "k", 3)})
		if err != nil {
			t.Fatal(err)
		}
		n, err := l.DeleteBefore(ctx, cut)
		if err != nil || n != 2 {
			t.Fatalf("deleted %d, %v; want 2", n, err)
		}
		recs, _ := l.Read(ctx, eventlog.Query{})
		if len(recs) != 1 || recs[0].ID != res[0].ID {
			t.Fatalf("left %+v", recs)
		}
	})

	t.Run("Count", func(t *testing.T) {
		l := open(t, t.TempDir(), newGen(t))
		defer l.Close()
		res, err := l.Append(ctx, []*event.Event{Event(1, "in.gen.a.b", 1), Event(2, "in.gen.a.b", 2), Event(1, "in.gen.a.c", 3), Event(1, "in.gen.a.b", 4)})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			q    eventlog.Query
			want int64
		}{
			{eventlog.Query{}, 4},
			{eventlog.Query{After: res[0].ID}, 3},
			{eventlog.Query{After: res[0].ID, Projects: []uint32{1}}, 2},
			{eventlog.Query{Projects: []uint32{1}, KeyGlob: "in.gen.a.b"}, 2},
			{eventlog.Query{After: res[3].ID}, 0},
			{eventlog.Query{Limit: 1}, 4}, // the limit does not cap a count
		} {
			if n, err := l.Count(ctx, tc.q); err != nil || n != tc.want {
				t.Errorf("%+v: %d %v, want %d", tc.q, n, err, tc.want)
			}
		}
	})

	t.Run("Contents", func(t *testing.T) {
		l := open(t, t.TempDir(), newGen(t))
		defer l.Close()
		// A request of three events, one of them a duplicate of an event
		// already stored; another request whose only event is a
		// duplicate; and an event without content.
		first := Event(1, "k", 1)
		first.DedupKey = "dup"
		if _, err := l.Append(ctx, []*event.Event{first}); err != nil {
			t.Fatal(err)
		}
		raw := &event.Content{Body: []byte("{\"batch\":[1,2,3]}\xff"), ReceivedAt: 1000}
		a, b, c := Event(1, "k", 2), Event(1, "k", 3), Event(1, "k", 4)
		a.DedupKey = "dup"
		a.Content, b.Content, c.Content = raw, raw, raw
		lone := Event(1, "k", 5)
		lone.DedupKey = "dup"
		lone.Content = &event.Content{Body: []byte("only a duplicate"), ReceivedAt: 1000}
		bare := Event(1, "k", 6)
		res, err := l.Append(ctx, []*event.Event{a, b, c, lone, bare})
		if err != nil {
			t.Fatal(err)
		}
		if !res[0].Duplicate || !res[3].Duplicate {
			t.Fatalf("results %+v", res)
		}
		recs, _ := l.Read(ctx, eventlog.Query{})
		if len(recs) != 4 {
			t.Fatalf("%d records", len(recs))
		}
		if recs[0].ContentID != 0 || recs[3].ContentID != 0 {
			t.Fatalf("content ids of events without content: %d %d", recs[0].ContentID, recs[3].ContentID)
		}
		// Both stored events of the request share one content.
		if recs[1].ContentID == 0 || recs[1].ContentID != recs[2].ContentID {
			t.Fatalf("content ids %d %d", recs[1].ContentID, recs[2].ContentID)
		}
		got, err := l.Contents(ctx, []int64{recs[1].ContentID, 12345})
		if err != nil || len(got) != 1 || string(got[recs[1].ContentID].Body) != string(raw.Body) || got[recs[1].ContentID].ReceivedAt != 1000 {
			t.Fatalf("contents %v %v", got, err)
		}
		// The duplicate-only request kept nothing: deleting everything
		// removes exactly one content.
		n, err := l.DeleteContentsBefore(ctx, time.UnixMilli(1001))
		if err != nil || n != 1 {
			t.Fatalf("deleted %d contents, %v; want 1", n, err)
		}
		if got, _ := l.Contents(ctx, []int64{recs[1].ContentID}); len(got) != 0 {
			t.Fatalf("content left: %v", got)
		}
		if recs, _ := l.Read(ctx, eventlog.Query{}); len(recs) != 4 {
			t.Fatal("deleting contents deleted events")
		}
	})

	t.Run("IdentitiesAndIDs", func(t *testing.T) {
		l := open(t, t.TempDir(), newGen(t))
		defer l.Close()
		var evs []*event.Event
		for i := 0; i < 10; i++ {
			e := Event(1, "k", i)
			if i%3 == 0 {
				e.Identities = []event.Identity{{Type: "user_id", Value: fmt.Sprint(i)}}
			}
			evs = append(evs, e)
		}
		res, err := l.Append(ctx, evs)
		if err != nil {
			t.Fatal(err)
		}
		people, err := l.Read(ctx, eventlog.Query{WithIdentities: true})
		if err != nil || len(people) != 4 || people[0].ID != res[0].ID || people[3].ID != res[9].ID {
			t.Fatalf("events with identities: %d, %v", len(people), err)
		}
		if after, _ := l.Read(ctx, eventlog.Query{WithIdentities: true, After: res[3].ID}); len(after) != 2 || after[0].ID != res[6].ID {
			t.Fatalf("after %s: %d", res[3].ID, len(after))
		}
		got, err := l.Read(ctx, eventlog.Query{IDs: []event.ID{res[7].ID, res[2].ID, 12345}})
		if err != nil || len(got) != 2 || got[0].ID != res[2].ID || got[1].ID != res[7].ID {
			t.Fatalf("by ids: %d, %v", len(got), err)
		}
	})

	t.Run("Erase", func(t *testing.T) {
		l := open(t, t.TempDir(), newGen(t))
		defer l.Close()
		raw := &event.Content{Body: []byte("shared"), ReceivedAt: 1000}
		a, b, c, other := Event(1, "k", 1), Event(1, "k", 2), Event(1, "k", 3), Event(2, "k", 4)
		a.Content, b.Content = raw, raw
		c.Content = &event.Content{Body: []byte("own"), ReceivedAt: 1000}
		res, err := l.Append(ctx, []*event.Event{a, b, c, other})
		if err != nil {
			t.Fatal(err)
		}
		recs, _ := l.Read(ctx, eventlog.Query{})
		// a shares its content with b, which stays: the content stays.
		// c's own content goes with it. Another project's event is not
		// erased by this project's erasure.
		n, err := l.Erase(ctx, 1, []event.ID{res[0].ID, res[2].ID, res[3].ID})
		if err != nil || n != 2 {
			t.Fatalf("erased %d, %v; want 2", n, err)
		}
		left := readIDs(t, l)
		if len(left) != 2 || left[0] != res[1].ID || left[1] != res[3].ID {
			t.Fatalf("left %v", left)
		}
		got, _ := l.Contents(ctx, []int64{recs[0].ContentID, recs[2].ContentID})
		if _, ok := got[recs[0].ContentID]; !ok || len(got) != 1 {
			t.Fatalf("contents left %v", got)
		}
	})

	t.Run("ReopenKeepsEventsAndOrder", func(t *testing.T) {
		dir := t.TempDir()
		l := open(t, dir, newGen(t))
		res, err := l.Append(ctx, []*event.Event{Event(3, "k", 1), Event(3, "k", 2)})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(ctx, []*event.Event{Event(3, "k", 9)}); !errors.Is(err, eventlog.ErrClosed) {
			t.Fatalf("append after close: %v", err)
		}
		// A generator whose clock is an hour behind must still continue
		// above the stored ids.
		behind, _ := event.NewGenerator(0, func() time.Time { return time.Now().Add(-time.Hour) })
		l = open(t, dir, behind)
		defer l.Close()
		if l.Head() != res[1].ID {
			t.Fatalf("head after reopen %d, want %d", l.Head(), res[1].ID)
		}
		res2, err := l.Append(ctx, []*event.Event{Event(3, "k", 3)})
		if err != nil {
			t.Fatal(err)
		}
		if res2[0].ID <= res[1].ID {
			t.Fatalf("id %d after reopen not above %d", res2[0].ID, res[1].ID)
		}
		recs, _ := l.Read(ctx, eventlog.Query{})
		if len(recs) != 3 {
			t.Fatalf("%d records after reopen", len(recs))
		}
	})
	t.Run("FullDiskRecoversWithoutReopen", func(t *testing.T) {
		dir := tmpfs.Mount(t, 16<<20, "the log contract on a full disk (ErrUnavailable, reads on a full disk, recovery without reopening)")
		l := open(t, dir, newGen(t))
		defer l.Close()
		if err := l.Health(); err != nil {
			t.Fatalf("health of a fresh log: %v", err)
		}
		// Leave the log 6 MiB of the file system.
		free := tmpfs.Fill(t, dir)
		free()
		ballast := filepath.Join(dir, "ballast")
		if err := os.WriteFile(ballast, make([]byte, tmpfs.Free(t, dir)-6<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		var acked []event.ID
		var failed error
		for n := 0; failed == nil; n++ {
			if n > 100_000 {
				t.Fatal("the disk never filled up")
			}
			e := Event(1, "in.gen.full.disk", n)
			e.Data = json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, n, strings.Repeat("x", 1500)))
			res, err := l.Append(ctx, []*event.Event{e})
			if err != nil {
				failed = err
				break
			}
			acked = append(acked, res[0].ID)
		}
		if !errors.Is(failed, eventlog.ErrUnavailable) {
			t.Fatalf("append on a full disk: %v, want ErrUnavailable", failed)
		}
		// Reads go on while the disk is full; the failed append stored
		// nothing.
		free = tmpfs.Fill(t, dir)
		if ids := readIDs(t, l); !reflect.DeepEqual(ids, acked) {
			t.Fatalf("on the full disk the log holds %d events, %d acknowledged", len(ids), len(acked))
		}
		// Space returns: appends are taken again, without reopening.
		free()
		if err := os.Remove(ballast); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			res, err := l.Append(ctx, []*event.Event{Event(1, "in.gen.full.after", 0)})
			if err == nil {
				acked = append(acked, res[0].ID)
				break
			}
			if !errors.Is(err, eventlog.ErrUnavailable) || time.Now().After(deadline) {
				t.Fatalf("append after space returned: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := l.Health(); err != nil {
			t.Fatalf("health after an append succeeded: %v", err)
		}
		if ids := readIDs(t, l); !reflect.DeepEqual(ids, acked) {
			t.Fatalf("after recovery the log holds %d events, %d acknowledged", len(ids), len(acked))
		}
	})
}

// readIDs returns the ids of every stored event, in order.
func readIDs(t *testing.T, l eventlog.Log) []event.ID {
	t.Helper()
	var ids []event.ID
	var after event.ID
	for {
		recs, err := l.Read(context.Background(), eventlog.Query{After: after, Limit: eventlog.MaxLimit})
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if len(recs) == 0 {
			return ids
		}
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
		after = recs[len(recs)-1].ID
	}
}
