package sqlite

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

// Dump gives every event with its id, dedup key and identities count,
// in id order, and every kept raw request.
func TestDump(t *testing.T) {
	ctx := context.Background()
	l, err := Open(Config{Path: filepath.Join(t.TempDir(), "events.db")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	now := time.Now().UnixMilli()
	raw := &event.Content{Body: []byte("a=1&b=2"), ReceivedAt: now}
	var evs []*event.Event
	for i := 0; i < 12003; i++ { // more than a page
		e := &event.Event{Key: "in.gen.calltrack.call", Channel: event.ChannelHTTP, Service: "calltrack", Name: "call", ProjectID: uint32(i % 3),
			Data: json.RawMessage(`{}`), Time: now, Dialect: "webhook", ReceivedAt: now}
		if i%1000 == 0 {
			e.DedupKey = "order-" + string(rune('a'+i/1000))
			e.Identities = []event.Identity{{Type: "user_id", Value: "u"}, {Type: "anonymous_id", Value: "a"}}
			e.Content = raw
		}
		evs = append(evs, e)
	}
	for i := 0; i < len(evs); i += 500 {
		if _, err := l.Append(ctx, evs[i:i+min(500, len(evs)-i)]); err != nil {
			t.Fatal(err)
		}
	}
	var got []eventlog.StoredEvent
	var contents []eventlog.StoredContent
	if err := l.Dump(ctx, func(e eventlog.StoredEvent) error { got = append(got, e); return nil },
		func(c eventlog.StoredContent) error { contents = append(contents, c); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(evs) {
		t.Fatalf("%d events dumped, %d stored", len(got), len(evs))
	}
	for i, e := range got {
		if e.ID != evs[i].ID || (i > 0 && e.ID <= got[i-1].ID) {
			t.Fatalf("event %d: id %d, stored as %d", i, e.ID, evs[i].ID)
		}
		if e.DedupKey != evs[i].DedupKey || e.People != len(evs[i].Identities) || e.ProjectID != evs[i].ProjectID || e.Key != evs[i].Key {
			t.Fatalf("event %d: %+v", i, e)
		}
		if (e.ContentID != 0) != (evs[i].Content != nil) {
			t.Fatalf("event %d: content id %d", i, e.ContentID)
		}
	}
	recs, _ := l.Read(ctx, eventlog.Query{IDs: []event.ID{got[5].ID}})
	if len(recs) != 1 || string(recs[0].Body) != string(got[5].Body) {
		t.Fatal("a dumped body differs from the stored one")
	}
	if len(contents) != 13 {
		t.Fatalf("%d raw requests dumped, want 13 (one per append of an event that kept one)", len(contents))
	}
	if string(contents[0].Body) != "a=1&b=2" || contents[0].ReceivedAt != now {
		t.Fatalf("raw request %+v", contents[0])
	}
}
