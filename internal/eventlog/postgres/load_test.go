package postgres

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/logtest"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
	"github.com/sluicehq/sluice/internal/pgtest"
)

// A SQLite log moved into PostgreSQL keeps its ids, bodies, raw
// requests and dedup keys; the log goes on above its ids, and another
// node hears of the head.
func TestLoadFromSQLite(t *testing.T) {
	ctx := context.Background()
	src, err := sqlite.Open(sqlite.Config{Path: filepath.Join(t.TempDir(), "events.db")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	now := time.Now().UnixMilli()
	raw := &event.Content{Body: []byte("raw=1"), ReceivedAt: now}
	var evs []*event.Event
	for i := 0; i < 300; i++ {
		e := &event.Event{Key: "in.gen.crm.lead", Channel: event.ChannelHTTP, Service: "crm", Name: "lead", ProjectID: uint32(1 + i%2),
			Data: json.RawMessage(`{"i":` + strconv.Itoa(i) + `}`), Time: now + int64(i), Dialect: "webhook", ReceivedAt: now}
		if i%10 == 0 {
			e.DedupKey, e.Content = "k"+strconv.Itoa(i), raw
			e.Identities = []event.Identity{{Type: "user_id", Value: "u" + strconv.Itoa(i)}}
		}
		evs = append(evs, e)
	}
	for i := 0; i < len(evs); i += 50 {
		if _, err := src.Append(ctx, evs[i:i+50]); err != nil {
			t.Fatal(err)
		}
	}
	dsn := pgtest.Start(t)
	dst, other := open(t, dsn), open(t, dsn)
	defer dst.Close()
	defer other.Close()
	var stored []eventlog.StoredEvent
	var contents []eventlog.StoredContent
	if err := src.Dump(ctx, func(e eventlog.StoredEvent) error { stored = append(stored, e); return nil },
		func(c eventlog.StoredContent) error { contents = append(contents, c); return nil }); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(stored); i += 120 {
		if err := dst.Load(ctx, stored[i:min(i+120, len(stored))], nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := dst.Load(ctx, nil, contents); err != nil {
		t.Fatal(err)
	}
	last := stored[len(stored)-1].ID
	if dst.Head() != last {
		t.Fatalf("head %d, want %d", dst.Head(), last)
	}
	logtest.WaitHead(t, other, last, 5*time.Second, "the other node, after the move")
	want, _ := src.Read(ctx, eventlog.Query{Limit: eventlog.MaxLimit})
	got, err := other.Read(ctx, eventlog.Query{Limit: eventlog.MaxLimit})
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("read after the move: %d records (%v), want %d as in SQLite", len(got), err, len(want))
	}
	people, _ := other.Read(ctx, eventlog.Query{WithIdentities: true, Limit: eventlog.MaxLimit})
	if len(people) != 30 {
		t.Fatalf("%d events with identities", len(people))
	}
	cs, err := other.Contents(ctx, []int64{want[0].ContentID})
	if err != nil || string(cs[want[0].ContentID].Body) != "raw=1" {
		t.Fatalf("raw request %v %v", cs, err)
	}
	// A dedup key moved along still holds; a new event goes above.
	res, err := other.Append(ctx, []*event.Event{
		{Key: "in.gen.crm.lead", ProjectID: 1, DedupKey: "k20", Data: json.RawMessage(`{}`), Time: now, Dialect: "webhook"},
		{Key: "in.gen.crm.lead", ProjectID: 1, Data: json.RawMessage(`{}`), Time: now, Dialect: "webhook"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Duplicate || res[0].ID != evs[20].ID {
		t.Fatalf("a moved dedup key: %+v, want a duplicate of %d", res[0], evs[20].ID)
	}
	if res[1].Duplicate || res[1].ID <= last {
		t.Fatalf("a new event %+v, not above %d", res[1], last)
	}
	// Loading what is there already fails and changes nothing.
	if err := dst.Load(ctx, stored[:1], nil); err == nil {
		t.Fatal("an id loaded twice")
	}
}
