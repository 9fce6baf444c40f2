package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

func personEvent(i int, ids bool) *event.Event {
	e := &event.Event{Key: "in.s2s.action.buy", Channel: "http", Service: "s2s", Name: "buy", ProjectID: 1,
		Time: int64(1_700_000_000_000 + i), Dialect: "s2s", ReceivedAt: 1_700_000_000_000}
	if i%3 != 0 {
		e.Data = json.RawMessage(fmt.Sprintf(`{"n":%d,"s":"é\u00e9"}`, i))
	}
	if ids {
		e.Identities = []event.Identity{{Type: "custom_user_id", Value: fmt.Sprintf("u%d", i%7)}, {Type: "phone_hash", Value: fmt.Sprintf("%064x", i)}}
	}
	return e
}

// sameAsRead checks that PeopleAfter gives, field by field, what the
// profile consumer would read from SQLite for the same range.
func sameAsRead(t *testing.T, l *Log, after event.ID, limit int) int {
	t.Helper()
	head := l.Head()
	mem, ok := l.PeopleAfter(after, head, limit)
	if !ok {
		t.Fatalf("PeopleAfter(%s) not held in memory", after)
	}
	recs, err := l.Read(context.Background(), eventlog.Query{WithIdentities: true, After: after, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	if len(mem) != len(recs) {
		t.Fatalf("after %s: %d events in memory, %d read", after, len(mem), len(recs))
	}
	for i, r := range recs {
		m := mem[i]
		if m.ID != r.ID || m.ProjectID != r.ProjectID || m.Key != r.Key || m.Time != r.Time {
			t.Fatalf("event %d: memory %s/%d/%s/%d, read %s/%d/%s/%d", i, m.ID, m.ProjectID, m.Key, m.Time, r.ID, r.ProjectID, r.Key, r.Time)
		}
		if data := gjson.GetBytes(r.Body, "data").Raw; string(m.Data) != data {
			t.Fatalf("event %s: data %s in memory, %s stored", r.ID, m.Data, data)
		}
		var stored []event.Identity
		if err := json.Unmarshal([]byte(gjson.GetBytes(r.Body, "identities").Raw), &stored); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(stored) != fmt.Sprint(m.Identities) {
			t.Fatalf("event %s: identities %v in memory, %v stored", r.ID, m.Identities, stored)
		}
	}
	return len(mem)
}

func TestPeopleAfterIsWhatReadGives(t *testing.T) {
	l := openAt(t, t.TempDir())
	defer l.Close()
	ctx := context.Background()
	var batch []*event.Event
	for i := range 300 {
		batch = append(batch, personEvent(i, i%4 != 0)) // a quarter without identities
		if len(batch) == 25 {
			if _, err := l.Append(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
	// A duplicate is not stored again, and not held twice.
	d := personEvent(1000, true)
	d.DedupKey = "once"
	for range 2 {
		if _, err := l.Append(ctx, []*event.Event{d}); err != nil {
			t.Fatal(err)
		}
		d = personEvent(1000, true)
		d.DedupKey = "once"
	}
	if n := sameAsRead(t, l, 0, 1000); n != 226 {
		t.Fatalf("%d events with identities, want 226", n)
	}
	// Pages: a limit, and an after inside the range.
	mem, _ := l.PeopleAfter(0, l.Head(), 10)
	if len(mem) != 10 {
		t.Fatalf("limit 10 gave %d", len(mem))
	}
	sameAsRead(t, l, mem[9].ID, 50)
	// Nothing past the head the caller read, and nothing above it.
	if mem, ok := l.PeopleAfter(0, mem[4].ID, 1000); !ok || len(mem) != 5 {
		t.Fatalf("up to the 5th: %d events, ok %v", len(mem), ok)
	}
	if mem, ok := l.PeopleAfter(l.Head(), l.Head(), 1000); !ok || len(mem) != 0 {
		t.Fatalf("after the head: %d events, ok %v", len(mem), ok)
	}
}

// What memory may not hold all of makes PeopleAfter say so: the events
// of before the log was opened, another handle's, and anything after a
// maintenance job (which may have deleted events).
func TestPeopleAfterLeavesToReadWhatMemoryMayLack(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l := openAt(t, dir)
	if _, err := l.Append(ctx, []*event.Event{personEvent(1, true), personEvent(2, true)}); err != nil {
		t.Fatal(err)
	}
	l.Close()

	l = openAt(t, dir)
	defer l.Close()
	if _, ok := l.PeopleAfter(0, l.Head(), 100); ok {
		t.Fatal("events stored before the open given from memory")
	}
	res, err := l.Append(ctx, []*event.Event{personEvent(3, true)})
	if err != nil {
		t.Fatal(err)
	}
	before := res[0].ID
	if sameAsRead(t, l, before-1, 100) != 1 {
		t.Fatal("the event stored after the open not in memory")
	}

	// Another handle on the same file stores an event: the head this
	// handle reads may include it, so memory says no until this handle
	// commits again, and then it holds only what came after.
	other, err := Open(Config{Path: filepath.Join(dir, "events.db"), Worker: 2}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ores, err := other.Append(ctx, []*event.Event{personEvent(4, true)})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.PeopleAfter(before, ores[0].ID, 100); ok {
		t.Fatal("another handle's event taken as absent from memory")
	}
	res, err = l.Append(ctx, []*event.Event{personEvent(5, true)})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.PeopleAfter(before, l.Head(), 100); ok {
		t.Fatal("a range with another handle's event given from memory")
	}
	if sameAsRead(t, l, ores[0].ID, 100) != 1 {
		t.Fatal("this handle's event after the other's not in memory")
	}

	// A job (here erasure) starts memory over.
	if _, err := l.Erase(ctx, 1, []event.ID{res[0].ID}); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.PeopleAfter(ores[0].ID, l.Head(), 100); ok {
		t.Fatal("an erased event's range given from memory")
	}
	res, err = l.Append(ctx, []*event.Event{personEvent(6, true)})
	if err != nil {
		t.Fatal(err)
	}
	if sameAsRead(t, l, res[0].ID-1, 100) != 1 {
		t.Fatal("the event after the erasure not in memory")
	}
}

// The tail is bounded: past tailEvents, the oldest half goes, and a read
// of them goes to SQLite.
func TestPeopleAfterIsBounded(t *testing.T) {
	var tl tail
	var evs []*event.Event
	for i := 1; i <= tailEvents+10; i++ {
		evs = append(evs, &event.Event{ID: event.ID(i), Data: []byte("{}")})
	}
	tl.add(evs, event.ID(len(evs)))
	if len(tl.evs) > tailEvents || tl.from == 0 {
		t.Fatalf("%d events held, from %d", len(tl.evs), tl.from)
	}
	if _, ok := tl.after(0, event.ID(len(evs)), 10); ok {
		t.Fatal("dropped events given from memory")
	}
	got, ok := tl.after(tl.from, event.ID(len(evs)), 1<<20)
	if !ok || len(got) != len(tl.evs) || got[len(got)-1].ID != event.ID(len(evs)) {
		t.Fatalf("the kept half: %d events, ok %v", len(got), ok)
	}
	// Out of order (never expected): memory starts over above it.
	tl.add([]*event.Event{{ID: 5, Data: []byte("{}")}}, 5)
	if _, ok := tl.after(4, event.ID(len(evs)), 10); ok {
		t.Fatal("an out-of-order range given from memory")
	}
}
