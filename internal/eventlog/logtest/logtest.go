// Package logtest is the conformance suite every eventlog backend passes.
//
// A backend hands Run an Opener: it makes a fresh, empty store for a test
// and returns how to open a handle on it. Every handle opened on one store
// is another view of the same log (another node of a cluster, for a
// shared backend): the suite appends through several handles at once and
// follows the log through another.
package logtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

// Opener makes a fresh, empty store of the backend for t (removed when t
// ends) and returns its Store.
type Opener func(t *testing.T) Store

// Store opens a new handle on one store: the suite opens several at once,
// and again after closing one, and closes every handle it opens.
type Store func(t *testing.T) eventlog.Log

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

// AppendBatches appends batches of 100 s2s-sized events happening now,
// each with the dedup key key gives it, from the benchmark's parallel
// goroutines (SetParallelism before), until b is done. key is called from
// all of them at once.
func AppendBatches(b *testing.B, l eventlog.Log, key func() string) {
	b.RunParallel(func(pb *testing.PB) {
		evs := make([]*event.Event, 100)
		for pb.Next() {
			for i := range evs {
				e := Event(1, "in.s2s.action.slug1", i)
				e.Time = time.Now().UnixMilli() // events happen now, as under load
				e.Data = []byte(`{"type":"action","id":"run-123456","time":1680000000000,"name":"slug1","attributes":{"order_id":"12","product_id":"20","channel":"web"}}`)
				e.DedupKey = key()
				evs[i] = e
			}
			if _, err := l.Append(context.Background(), evs); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
}

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	ctx := context.Background()

	t.Run("AppendThenRead", func(t *testing.T) {
		l := open(t)(t)
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
		l := open(t)(t)
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
		l := open(t)(t)
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
		l := open(t)(t)
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
		l := open(t)(t)
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
		l := open(t)(t)
		defer l.Close()
		const writers, per = 8, 200
		var wg sync.WaitGroup
		var ackMu sync.Mutex
		acked := map[event.ID]bool{}
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per; i++ {
					res, err := l.Append(ctx, []*event.Event{Event(1, "k", w*per+i)})
					if err != nil {
						t.Error(err)
						return
					}
					ackMu.Lock()
					acked[res[0].ID] = true
					ackMu.Unlock()
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
		if len(seen) != writers*per || len(all) != writers*per || !reflect.DeepEqual(seen, acked) {
			t.Fatalf("follower saw %d, log holds %d, %d acknowledged, want %d", len(seen), len(all), len(acked), writers*per)
		}
	})

	t.Run("ChangedIsClosedByCommit", func(t *testing.T) {
		l := open(t)(t)
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
		l := open(t)(t)
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
		l := open(t)(t)
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
		l := open(t)(t)
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
		l := open(t)(t)
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
		// After events without identities, a follower of those with finds
		// none, then the next one.
		plain, err := l.Append(ctx, []*event.Event{Event(1, "k", 20), Event(1, "k", 21)})
		if err != nil {
			t.Fatal(err)
		}
		for _, after := range []event.ID{res[9].ID, plain[0].ID, plain[1].ID} {
			if recs, err := l.Read(ctx, eventlog.Query{WithIdentities: true, After: after}); err != nil || len(recs) != 0 {
				t.Fatalf("with identities after %s: %d, %v", after, len(recs), err)
			}
		}
		e := Event(1, "k", 22)
		e.Identities = []event.Identity{{Type: "user_id", Value: "late"}}
		next, err := l.Append(ctx, []*event.Event{Event(1, "k", 23), e})
		if err != nil {
			t.Fatal(err)
		}
		if recs, err := l.Read(ctx, eventlog.Query{WithIdentities: true, After: plain[1].ID}); err != nil || len(recs) != 1 || recs[0].ID != next[1].ID {
			t.Fatalf("with identities after the plain ones: %+v, %v", recs, err)
		}
	})

	t.Run("Erase", func(t *testing.T) {
		l := open(t)(t)
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
		store := open(t)
		l := store(t)
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
		l = store(t)
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

	t.Run("HandlesShareOneStore", func(t *testing.T) { handlesShareOneStore(t, open(t)) })

	t.Run("FollowersMissNothingAcrossHandles", func(t *testing.T) { followersMissNothingAcrossHandles(t, open(t)) })

	t.Run("IDsCarryTheirCommitTime", func(t *testing.T) { idsCarryTheirCommitTime(t, open(t)) })
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

// waitChanged waits until ch is closed.
func waitChanged(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no change notification within 5 s", what)
	}
}

// WaitHead waits until l's head reaches id, following Changed, for at
// most within. It takes Changed before it reads the head: a head raised
// between the two would close the channel before it was taken.
func WaitHead(t testing.TB, l eventlog.Log, id event.ID, within time.Duration, what string) {
	t.Helper()
	deadline := time.After(within)
	for {
		ch := l.Changed()
		if l.Head() >= id {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s: head %s, want %s within %s", what, l.Head(), id, within)
		}
	}
}

// handlesShareOneStore: what one handle commits, another sees, is told of
// and continues above; dedup holds across handles; a handle outlives
// another's close.
func handlesShareOneStore(t *testing.T, store Store) {
	ctx := context.Background()
	a, b := store(t), store(t)
	defer func() { a.Close(); b.Close() }()

	changed := b.Changed()
	e := Event(1, "in.gen.a.b", 1)
	e.Identities = []event.Identity{{Type: "user_id", Value: "u1"}}
	res, err := a.Append(ctx, []*event.Event{e})
	if err != nil {
		t.Fatal(err)
	}
	waitChanged(t, changed, "a commit of the other handle")
	WaitHead(t, b, res[0].ID, 5*time.Second, "the other handle's head")
	if h := b.Head(); h != res[0].ID {
		t.Fatalf("head of the other handle %s, want %s", h, res[0].ID)
	}
	recs, err := b.Read(ctx, eventlog.Query{WithIdentities: true})
	if err != nil || len(recs) != 1 || recs[0].ID != res[0].ID {
		t.Fatalf("the other handle reads %+v, %v", recs, err)
	}
	// After one of its own commits without identities, the second handle
	// still finds the first's next event with identities.
	own, err := b.Append(ctx, []*event.Event{Event(1, "k", 30)})
	if err != nil {
		t.Fatal(err)
	}
	e2 := Event(1, "in.gen.a.b", 31)
	e2.Identities = []event.Identity{{Type: "user_id", Value: "u2"}}
	other, err := a.Append(ctx, []*event.Event{e2})
	if err != nil {
		t.Fatal(err)
	}
	WaitHead(t, b, other[0].ID, 5*time.Second, "the other handle's head")
	if recs, err := b.Read(ctx, eventlog.Query{WithIdentities: true, After: own[0].ID}); err != nil || len(recs) != 1 || recs[0].ID != other[0].ID {
		t.Fatalf("the other handle's event with identities after %s: %+v, %v", own[0].ID, recs, err)
	}
	if got, err := event.Decode(recs[0].Body); err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("body through the other handle: %+v, %v", got, err)
	}

	// The second handle's ids continue above the first's, and the first
	// hears of them.
	res2, err := b.Append(ctx, []*event.Event{Event(1, "k", 2)})
	if err != nil {
		t.Fatal(err)
	}
	if res2[0].ID <= res[0].ID {
		t.Fatalf("id %s of the second handle not above %s of the first", res2[0].ID, res[0].ID)
	}
	WaitHead(t, a, res2[0].ID, 5*time.Second, "the first handle's head")

	// One dedup key sent through both handles at once is stored once, and
	// both answers name its id.
	const keys = 20
	answers := make([][2]eventlog.Result, keys)
	var wg sync.WaitGroup
	for i := range keys {
		for h, l := range []eventlog.Log{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e := Event(2, "k", 100+i)
				e.DedupKey = fmt.Sprintf("twice-%d", i)
				res, err := l.Append(ctx, []*event.Event{e})
				if err != nil {
					t.Error(err)
					return
				}
				answers[i][h] = res[0]
			}()
		}
	}
	wg.Wait()
	var top event.ID
	for i, ans := range answers {
		if ans[0].ID == 0 || ans[0].ID != ans[1].ID || ans[0].Duplicate == ans[1].Duplicate {
			t.Fatalf("key %d: answers %+v, want one stored and one duplicate of the same id", i, ans)
		}
		top = max(top, ans[0].ID)
	}
	WaitHead(t, a, top, 5*time.Second, "the first handle's head after the twins")
	if n, err := a.Count(ctx, eventlog.Query{Projects: []uint32{2}}); err != nil || n != keys {
		t.Fatalf("stored %d events of %d keys sent twice, %v", n, keys, err)
	}

	// Closing one handle leaves the other working; a new handle sees it all.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	res3, err := b.Append(ctx, []*event.Event{Event(1, "k", 3)})
	if err != nil {
		t.Fatalf("append after the other handle closed: %v", err)
	}
	c := store(t)
	defer c.Close()
	if c.Head() != res3[0].ID {
		t.Fatalf("head of a new handle %s, want %s", c.Head(), res3[0].ID)
	}
	if n := len(readIDs(t, c)); n != keys+5 {
		t.Fatalf("a new handle reads %d events, want %d", n, keys+5)
	}
}

// followersMissNothingAcrossHandles is the property every consumer relies
// on, with the writers on three handles (three connections, three nodes):
// a follower that reads after its cursor sees every acknowledged event
// exactly once, in id order; and one that, like the profile consumer,
// reads a selection and moves its cursor to Head when nothing matched
// misses none of the selection. It holds only if ids grow in commit order
// across handles and Head never passes a commit still in flight.
func followersMissNothingAcrossHandles(t *testing.T, store Store) {
	ctx := context.Background()
	writers := []eventlog.Log{store(t), store(t), store(t)}
	follower := store(t)
	defer func() {
		for _, l := range writers {
			l.Close()
		}
		follower.Close()
	}()
	const perHandle, goroutines, per = 3, 4, 60 // batches of 1 to 3 events
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[event.ID]bool{}
	people := map[event.ID]bool{}
	for w, l := range writers {
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					var evs []*event.Event
					for j := range 1 + i%perHandle {
						e := Event(uint32(w), "k", ((w*goroutines+g)*per+i)*perHandle+j)
						if (i+j)%3 == 0 {
							e.Identities = []event.Identity{{Type: "user_id", Value: fmt.Sprint(w, g, i, j)}}
						}
						evs = append(evs, e)
					}
					res, err := l.Append(ctx, evs)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					for k, r := range res {
						acked[r.ID] = true
						if len(evs[k].Identities) > 0 {
							people[r.ID] = true
						}
					}
					mu.Unlock()
				}
			}()
		}
	}
	stop := make(chan struct{})
	go func() { wg.Wait(); close(stop) }()

	type cursor struct {
		q      eventlog.Query
		toHead bool
		seen   map[event.ID]bool
		last   event.ID
	}
	all := &cursor{q: eventlog.Query{Limit: 50}, seen: map[event.ID]bool{}}
	sel := &cursor{q: eventlog.Query{Limit: 20, WithIdentities: true}, toHead: true, seen: map[event.ID]bool{}}
	// step reads once; it reports whether the follower may have more.
	step := func(c *cursor) bool {
		head := follower.Head()
		q := c.q
		q.After = c.last
		recs, err := follower.Read(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if c.seen[r.ID] {
				t.Fatalf("id %s read twice", r.ID)
			}
			if r.ID <= c.last {
				t.Fatalf("id %s after cursor %s", r.ID, c.last)
			}
			c.seen[r.ID] = true
			c.last = r.ID
		}
		if len(recs) == q.Limit {
			return true
		}
		if c.toHead && head > c.last {
			c.last = head // nothing more up to head: the cursor moves there
		}
		return len(recs) > 0
	}
	finished := false
	for {
		changed := follower.Changed()
		more := step(all)
		more = step(sel) || more
		if more {
			continue
		}
		if finished {
			break
		}
		select {
		case <-changed:
		case <-stop:
			finished = true
			// The last commits may still be on their way to the follower.
			mu.Lock()
			var top event.ID
			for id := range acked {
				top = max(top, id)
			}
			mu.Unlock()
			WaitHead(t, follower, top, 5*time.Second, "the follower's head after the last commit")
		case <-time.After(10 * time.Second):
			t.Fatal("no change notification within 10 s")
		}
	}
	if want := len(writers) * goroutines * per * 2; len(acked) != want { // 1, 2, 3, 1, 2, 3… events a batch
		t.Fatalf("%d events acknowledged, want %d", len(acked), want)
	}
	if !reflect.DeepEqual(all.seen, acked) {
		t.Fatalf("the follower saw %d events, %d acknowledged", len(all.seen), len(acked))
	}
	if !reflect.DeepEqual(sel.seen, people) {
		t.Fatalf("the follower of events with identities saw %d of %d", len(sel.seen), len(people))
	}
}

// idsCarryTheirCommitTime: however many commits, through however many
// handles, an id's time is when it was committed (retention deletes by it,
// a hook starts from a time by it), to within a second, and the ids grow.
func idsCarryTheirCommitTime(t *testing.T, store Store) {
	ctx := context.Background()
	handles := []eventlog.Log{store(t), store(t)}
	defer func() {
		for _, l := range handles {
			l.Close()
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last event.ID
	// One sender per handle commits alone, one event a commit, 1500
	// times: a log that moved its clock a millisecond a commit would be
	// ahead by more than a second. Three more send at once, in groups.
	const alone, together = 1500, 200
	for _, l := range handles {
		for g := range 4 {
			n := together
			if g == 0 {
				n = alone
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					before := time.Now()
					res, err := l.Append(ctx, []*event.Event{Event(1, "k", g*1000+i)})
					if err != nil {
						t.Error(err)
						return
					}
					if at := res[0].ID.Time(); at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
						t.Errorf("id %s says %s, committed between %s and %s", res[0].ID, at.Format(time.RFC3339Nano), before.Format(time.RFC3339Nano), time.Now().Format(time.RFC3339Nano))
						return
					}
					mu.Lock()
					last = max(last, res[0].ID)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	// A handle shows another's commits once it has raised its head to
	// them (the contract of Head and Changed), not at the other's answer.
	WaitHead(t, handles[0], last, 5*time.Second, "the reading handle's head")
	ids := readIDs(t, handles[0])
	if want := len(handles) * (alone + 3*together); len(ids) != want {
		t.Fatalf("%d events stored, want %d", len(ids), want)
	}
	if first := ids[0].Time(); first.Before(start.Add(-time.Second)) {
		t.Fatalf("first id at %s, before the test began (%s)", first, start)
	}
}
