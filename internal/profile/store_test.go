package profile

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
	"github.com/sluicehq/sluice/internal/identity"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "profiles.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var nextID event.ID = 1000

// userEvent is an s2s user message as the dialect stores it.
func userEvent(project uint32, custom, device string, t int64, data string, extra ...event.Identity) *event.Event {
	nextID++
	var ids []event.Identity
	if custom != "" {
		ids = append(ids, event.Identity{Type: identity.TypeCustomUserID, Value: custom})
	}
	if device != "" {
		ids = append(ids, event.Identity{Type: identity.TypeMetrixUserID, Value: device})
	}
	ids = append(ids, extra...)
	return &event.Event{
		Key: "in.s2s.user", Channel: "http", Service: "s2s", Name: "user", ProjectID: project,
		Data: json.RawMessage(data), ID: nextID, Time: t, Dialect: "s2s", ReceivedAt: 1_700_000_000_000, Identities: ids,
	}
}

func apply(t *testing.T, s *Store, evs ...*event.Event) {
	t.Helper()
	if err := s.Apply(context.Background(), "test", evs[len(evs)-1].ID, evs); err != nil {
		t.Fatal(err)
	}
}

func find(t *testing.T, s *Store, project uint32, typ, value string) *Profile {
	t.Helper()
	p, err := s.Find(context.Background(), project, typ, value)
	if err != nil {
		t.Fatalf("find %s=%s: %v", typ, value, err)
	}
	return p
}

func attr(p *Profile, name string) string {
	return string(p.Attributes[name].Value)
}

func TestUserMessageCreatesProfile(t *testing.T) {
	s := openStore(t)
	apply(t, s, userEvent(1, "r.akbari", "dev-1", 1680000000000,
		`{"type":"user","id":"u1","time":1680000000000,"firstName":"Reza","channels":["SMS","Push"],"customAttributes":{"job":"developer"}}`,
		event.Identity{Type: identity.TypeEmailHash, Value: "e1"}))
	p := find(t, s, 1, identity.TypeMetrixUserID, "dev-1")
	if len(p.Identities) != 3 || attr(p, "firstName") != `"Reza"` || attr(p, "channels") != `["SMS","Push"]` ||
		attr(p, "customAttributes.job") != `"developer"` || p.Attributes["firstName"].Time != time.UnixMilli(1680000000000).UTC() {
		t.Fatalf("profile %+v", p)
	}
	for _, k := range []string{"type", "id", "time"} {
		if _, ok := p.Attributes[k]; ok {
			t.Fatalf("message field %s stored as an attribute", k)
		}
	}
	if _, err := s.Find(context.Background(), 2, identity.TypeCustomUserID, "r.akbari"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("profile leaked into project 2: %v", err)
	}
}

func TestEmptyUserMessageRegisters(t *testing.T) {
	s := openStore(t)
	apply(t, s, userEvent(1, "quiet", "", 1680000000000, `{"type":"user","id":"u1","time":1680000000000}`))
	p := find(t, s, 1, identity.TypeCustomUserID, "quiet")
	if len(p.Identities) != 1 || len(p.Attributes) != 0 {
		t.Fatalf("%+v", p)
	}
}

func TestLastWriterWinsByEventTime(t *testing.T) {
	s := openStore(t)
	newer := userEvent(1, "u", "", 2000, `{"type":"user","id":"b","time":2000,"firstName":"Newer","customAttributes":{"tier":"gold"}}`)
	older := userEvent(1, "u", "", 1000, `{"type":"user","id":"a","time":1000,"firstName":"Older","lastName":"Only-old","customAttributes":{"tier":"silver","city":"Tehran"}}`)
	apply(t, s, newer)
	apply(t, s, older) // arrives later, happened earlier
	p := find(t, s, 1, identity.TypeCustomUserID, "u")
	if attr(p, "firstName") != `"Newer"` || attr(p, "customAttributes.tier") != `"gold"` {
		t.Fatalf("an older message overwrote a newer value: %+v", p.Attributes)
	}
	if attr(p, "lastName") != `"Only-old"` || attr(p, "customAttributes.city") != `"Tehran"` {
		t.Fatalf("values only the older message had are missing: %+v", p.Attributes)
	}
	// Same time: the later event (higher id) wins.
	tie := userEvent(1, "u", "", 2000, `{"type":"user","id":"c","time":2000,"firstName":"Tie"}`)
	apply(t, s, tie)
	if p := find(t, s, 1, identity.TypeCustomUserID, "u"); attr(p, "firstName") != `"Tie"` {
		t.Fatalf("tie: %s", attr(p, "firstName"))
	}
}

func TestAnonymousDeviceMergesIntoUser(t *testing.T) {
	s := openStore(t)
	apply(t, s, userEvent(1, "", "dev-9", 1000, `{"type":"user","id":"a","time":1000,"city":"Tehran","firstName":"Anon"}`))
	anon := find(t, s, 1, identity.TypeMetrixUserID, "dev-9")
	apply(t, s, userEvent(1, "reza", "", 2000, `{"type":"user","id":"b","time":2000,"firstName":"Reza"}`))
	apply(t, s, userEvent(1, "reza", "dev-9", 3000, `{"type":"user","id":"c","time":3000}`))
	p := find(t, s, 1, identity.TypeMetrixUserID, "dev-9")
	if p.ID == anon.ID {
		t.Fatal("the device stayed on its anonymous profile")
	}
	if attr(p, "city") != `"Tehran"` || attr(p, "firstName") != `"Reza"` || len(p.Identities) != 2 {
		t.Fatalf("merged profile %+v", p)
	}
	var merged int64
	s.db.QueryRow(`SELECT merged_into FROM profiles WHERE id = ?`, anon.ID).Scan(&merged)
	if merged != p.ID {
		t.Fatalf("merged_into %d, want %d", merged, p.ID)
	}
}

func TestDeviceMovesBetweenKnownUsers(t *testing.T) {
	s := openStore(t)
	apply(t, s, userEvent(1, "alice", "shared-tablet", 1000, `{"type":"user","id":"a","time":1000,"firstName":"Alice"}`))
	apply(t, s, userEvent(1, "bob", "shared-tablet", 2000, `{"type":"user","id":"b","time":2000,"firstName":"Bob"}`))
	alice := find(t, s, 1, identity.TypeCustomUserID, "alice")
	bob := find(t, s, 1, identity.TypeCustomUserID, "bob")
	if alice.ID == bob.ID || attr(alice, "firstName") != `"Alice"` || attr(bob, "firstName") != `"Bob"` {
		t.Fatal("two known users were merged")
	}
	if dev := find(t, s, 1, identity.TypeMetrixUserID, "shared-tablet"); dev.ID != bob.ID {
		t.Fatal("the device did not move to its latest user")
	}
}

func TestWeakIdentityNeverMerges(t *testing.T) {
	s := openStore(t)
	shared := event.Identity{Type: identity.TypeEmailHash, Value: identity.Hash("family@example.com")}
	apply(t, s, userEvent(1, "a", "", 1000, `{"type":"user","id":"a","time":1000}`, shared))
	apply(t, s, userEvent(1, "b", "", 2000, `{"type":"user","id":"b","time":2000}`, shared))
	a := find(t, s, 1, identity.TypeCustomUserID, "a")
	b := find(t, s, 1, identity.TypeCustomUserID, "b")
	if a.ID == b.ID {
		t.Fatal("a shared e-mail hash merged two users")
	}
	if p := find(t, s, 1, identity.TypeEmailHash, shared.Value); p.ID != a.ID {
		t.Fatal("the e-mail hash moved")
	}
}

func TestNonUserEventsIgnored(t *testing.T) {
	s := openStore(t)
	e := userEvent(1, "u", "", 1000, `{"type":"action","id":"x","time":1000,"name":"slug1"}`)
	e.Key = "in.s2s.action.slug1"
	apply(t, s, e)
	if _, err := s.Find(context.Background(), 1, identity.TypeCustomUserID, "u"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an action created a profile: %v", err)
	}
	if c, _ := s.Cursor(context.Background(), "test"); c != e.ID {
		t.Fatalf("cursor %d, want %d", c, e.ID)
	}
}

// The consumer follows a real log: it applies what is appended, persists
// its cursor, and resumes from it.
func TestConsumerFollowsTheLog(t *testing.T) {
	dir := t.TempDir()
	gen, _ := event.NewGenerator(0, nil)
	l, err := sqlite.Open(sqlite.Config{Path: filepath.Join(dir, "events.db")}, gen, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c := &Consumer{Store: s, Log: l, Batch: 3}
	go func() { c.Run(ctx); close(done) }()

	var evs []*event.Event
	for i := 0; i < 10; i++ {
		e := userEvent(1, "u", "", int64(1000+i), `{"type":"user","id":"x","time":1,"n":`+string(rune('0'+i))+`}`)
		e.ID = 0
		evs = append(evs, e)
		noise := userEvent(1, "u", "", 1, `{"type":"action"}`)
		noise.ID, noise.Key = 0, "in.s2s.action.slug1"
		evs = append(evs, noise)
	}
	if _, err := l.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cur, _ := s.Cursor(ctx, CursorName)
		if cur == l.Head() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cursor %d never reached head %d", cur, l.Head())
		}
		time.Sleep(10 * time.Millisecond)
	}
	p := find(t, s, 1, identity.TypeCustomUserID, "u")
	if attr(p, "n") != "9" {
		t.Fatalf("n = %s, want the newest (9)", attr(p, "n"))
	}
	cancel()
	<-done
	// Events appended while it was stopped are applied when it resumes.
	late := userEvent(1, "u", "", 5000, `{"type":"user","id":"late","time":5000,"n":10}`)
	late.ID = 0
	if _, err := l.Append(context.Background(), []*event.Event{late}); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go (&Consumer{Store: s, Log: l}).Run(ctx2)
	for {
		if p := find(t, s, 1, identity.TypeCustomUserID, "u"); attr(p, "n") == "10" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the resumed consumer did not apply the late event")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if recs, _ := l.Read(context.Background(), eventlog.Query{Limit: 100}); len(recs) != 21 {
		t.Fatalf("%d events in the log", len(recs))
	}
}
