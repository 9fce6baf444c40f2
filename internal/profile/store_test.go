package profile

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/identity"
	"github.com/sluicehq/sluice/internal/pgmigrate"
	"github.com/sluicehq/sluice/internal/pgtest"
)

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "profiles.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// backend opens fresh, empty Stores of one kind; pair opens two on one
// backend (two nodes on one database, two handles on one file).
type backend struct {
	name string
	open func(t testing.TB) *Store
	pair func(t testing.TB) (*Store, *Store)
}

var backends = []backend{
	{"sqlite", openStore, func(t testing.TB) (*Store, *Store) {
		path := filepath.Join(t.TempDir(), "profiles.db")
		var out [2]*Store
		for i := range out {
			s, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			out[i] = s
		}
		return out[0], out[1]
	}},
	{"postgres", openPostgres, func(t testing.TB) (*Store, *Store) {
		a := openPostgres(t)
		return a, New(NewPostgres(a.db.(*PostgresBackend).db))
	}},
}

func TestMain(m *testing.M) { pgtest.Main(m) }

// forBackends runs test on every backend: the store tests, the property
// test and the golden scenarios are the conformance suite of Backend.
func forBackends(t *testing.T, test func(t *testing.T, be backend)) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { test(t, be) })
	}
}

// pgDatabases holds the database of each test: its Stores live in
// schemas of their own.
var pgDatabases sync.Map // testing.TB → *pgDatabase

type pgDatabase struct {
	dsn     string
	schemas atomic.Int64
}

// openPostgres opens a Store on a fresh schema of the test's database.
func openPostgres(t testing.TB) *Store {
	t.Helper()
	v, ok := pgDatabases.Load(t)
	if !ok {
		v, _ = pgDatabases.LoadOrStore(t, &pgDatabase{dsn: pgtest.Start(t)})
		t.Cleanup(func() { pgDatabases.Delete(t) })
	}
	db := v.(*pgDatabase)
	ctx := context.Background()
	schema := "s" + strconv.FormatInt(db.schemas.Add(1), 10)
	cfg, err := pgxpool.ParseConfig(db.dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 2
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	// These tests are of the fold, not of durability: a commit need not
	// wait for its fsync.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	if err := pgmigrate.Apply(ctx, pool, Migrations); err != nil {
		t.Fatal(err)
	}
	s := New(NewPostgres(pool))
	t.Cleanup(func() { s.Close() })
	return s
}

// ev builds an event: key, time, data and identities as "type=value".
func ev(id event.ID, project uint32, key string, t int64, data string, ids ...string) *event.Event {
	e := &event.Event{Key: key, ProjectID: project, ID: id, Time: t, Data: json.RawMessage(data), Dialect: strings.Split(key, ".")[1]}
	if data == "" {
		e.Data = json.RawMessage(`{}`)
	}
	for _, s := range ids {
		typ, v, _ := strings.Cut(s, "=")
		e.Identities = append(e.Identities, event.Identity{Type: typ, Value: v})
	}
	return e
}

func apply(t testing.TB, s *Store, evs ...*event.Event) FoldStats {
	t.Helper()
	st, err := s.ApplyStats(context.Background(), "test", evs[len(evs)-1].ID, evs)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func find(t testing.TB, s *Store, project uint32, typ, value string) *Profile {
	t.Helper()
	p, err := s.Find(context.Background(), project, typ, value)
	if err != nil {
		t.Fatalf("find %s=%s: %v", typ, value, err)
	}
	return p
}

func idents(p *Profile) string {
	var out []string
	for _, i := range p.Identities {
		out = append(out, i.Type+"="+i.Value)
	}
	return strings.Join(out, " ")
}

var h = identity.Hash

func TestUserMessageAttributes(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		s := be.open(t)
		apply(t, s, ev(1, 1, "in.s2s.user", 1680000000000,
			`{"type":"user","id":"u1","time":1680000000000,"firstName":"Reza","phone":"+98917*******","channels":["SMS","Push"],"customAttributes":{"job":"developer"}}`,
			"custom_user_id=r.akbari", "metrix_user_id=dev-1", "email_hash="+h("e")))
		p := find(t, s, 1, "metrix_user_id", "dev-1")
		if idents(p) != "custom_user_id=r.akbari email_hash="+h("e")+" metrix_user_id=dev-1" {
			t.Fatalf("identities %s", idents(p))
		}
		for name, want := range map[string]string{"firstName": `"Reza"`, "channels": `["SMS","Push"]`, "customAttributes.job": `"developer"`, "phoneNumber": `"+98917*******"`} {
			if got := string(p.Attributes[name].Value); got != want {
				t.Errorf("%s = %s, want %s", name, got, want)
			}
		}
		for _, k := range []string{"type", "id", "time", "phone"} {
			if _, ok := p.Attributes[k]; ok {
				t.Errorf("message field %s stored as an attribute", k)
			}
		}
		if p.Identities[0].Strength != "strong" || p.Identities[2].Strength != "device" || p.Traits.Events != 1 ||
			p.Traits.EventsByKey["in.s2s.user"] != 1 || p.Attributes["firstName"].EventID != 1 {
			t.Fatalf("profile %+v", p)
		}
		if !strings.HasPrefix(p.ID, "prf_") || p.ID != profileID(1, event.Identity{Type: "custom_user_id", Value: "r.akbari"}) {
			t.Fatalf("id %s", p.ID)
		}
	})
}

func TestEventsWithoutIdentitiesChangeNothing(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		s := be.open(t)
		if st := apply(t, s, ev(1, 1, "in.gen.crm.lead", 1, `{"a":1}`)); st.Observations != 0 {
			t.Fatalf("%+v", st)
		}
		if _, err := s.Find(context.Background(), 1, "uid", "1"); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	})
}

// Rule 5: the last writer wins by event time, whatever the arrival order.
func TestLastWriterWinsByEventTime(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		s := be.open(t)
		apply(t, s, ev(1, 1, "in.s2s.user", 2000, `{"city":"Qom"}`, "custom_user_id=u"))
		apply(t, s, ev(2, 1, "in.s2s.user", 1000, `{"city":"Tehran","job":"dev"}`, "custom_user_id=u"))
		p := find(t, s, 1, "custom_user_id", "u")
		if string(p.Attributes["city"].Value) != `"Qom"` || string(p.Attributes["job"].Value) != `"dev"` || p.Attributes["city"].EventID != 1 {
			t.Fatalf("attributes %+v", p.Attributes)
		}
		if p.FirstSeen.UnixMilli() != 1000 || p.LastSeen.UnixMilli() != 2000 || p.Identities[0].FirstSeen.UnixMilli() != 1000 {
			t.Fatalf("seen %v %v %+v", p.FirstSeen, p.LastSeen, p.Identities)
		}
	})
}

// Rules 1, 2 and 4: a device seen alone, then with a user id, is the
// user's; the profile first seen survives, and the other id names it.
func TestDeviceJoinsAndMergedIDResolves(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		s := be.open(t)
		apply(t, s, ev(1, 1, "in.track.custom.view", 1000, `{}`, "anonymous_id=a"))
		apply(t, s, ev(2, 1, "in.commerce.login-v1", 2000, `{}`, "user_id=u"))
		anonID := find(t, s, 1, "anonymous_id", "a").ID
		userID := find(t, s, 1, "user_id", "u").ID
		st := apply(t, s, ev(3, 1, "in.commerce.custom.x", 3000, `{}`, "user_id=u", "anonymous_id=a"))
		if st.Merges != 1 {
			t.Fatalf("stats %+v", st)
		}
		p := find(t, s, 1, "user_id", "u")
		if p.ID != anonID || idents(p) != "user_id=u anonymous_id=a" || p.Traits.Events != 3 || len(p.Merged) != 1 || p.Merged[0] != userID {
			t.Fatalf("profile %+v", p)
		}
		if q := find(t, s, 1, LookupProfile, userID); q.ID != anonID {
			t.Fatalf("merged id names %s", q.ID)
		}
		if _, err := s.Find(context.Background(), 2, LookupProfile, anonID); !errors.Is(err, ErrNotFound) {
			t.Fatal("a profile id of another project resolved")
		}
	})
}

// Rule 3: two values of one strong type never share a profile; the
// profile keeps its first and the link is a conflict, on both sides.
func TestStrongClashIsAConflict(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		s := be.open(t)
		apply(t, s, ev(1, 1, "in.track.custom.view", 1000, `{}`, "user_id=u1", "anonymous_id=shared"))
		st := apply(t, s, ev(2, 1, "in.track.custom.view", 2000, `{}`, "user_id=u2", "anonymous_id=shared"))
		if st.Conflicts != 1 || st.Merges != 0 {
			t.Fatalf("stats %+v", st)
		}
		p1, p2 := find(t, s, 1, "user_id", "u1"), find(t, s, 1, "user_id", "u2")
		if p1.ID == p2.ID || idents(p1) != "user_id=u1 anonymous_id=shared" || idents(p2) != "user_id=u2" {
			t.Fatalf("%s / %s", idents(p1), idents(p2))
		}
		if len(p2.Conflicts) != 1 || p2.Conflicts[0].Linked != (event.Identity{Type: "anonymous_id", Value: "shared"}) || p2.Conflicts[0].Type != "user_id" ||
			p2.Conflicts[0].Held != "u2" || p2.Conflicts[0].Value != "u1" || p2.Conflicts[0].Other != p1.ID || p2.Conflicts[0].EventID != 2 {
			t.Fatalf("conflicts %+v", p2.Conflicts)
		}
		// Strong identities of different types merge: a phone joins u1.
		apply(t, s, ev(3, 1, "in.s2s.user", 3000, `{}`, "phone_hash="+h("7999"), "user_id=u1"))
		if p := find(t, s, 1, "phone_hash", h("7999")); p.ID != p1.ID {
			t.Fatal("a phone of u1 made its own profile")
		}
		// A second phone for u1 is refused.
		apply(t, s, ev(4, 1, "in.s2s.user", 4000, `{}`, "user_id=u1", "phone_hash="+h("7111")))
		if _, err := s.Find(context.Background(), 1, "phone_hash", h("7111")); !errors.Is(err, ErrNotFound) {
			t.Fatal("a second phone joined u1")
		}
		if p := find(t, s, 1, "user_id", "u1"); len(p.Conflicts) != 1 || p.Conflicts[0].Value != h("7111") || p.Conflicts[0].Held != h("7999") {
			t.Fatalf("conflicts %+v", p.Conflicts)
		}
	})
}

// A weak identity (an e-mail hash) links devices into one person.
func TestWeakIdentityLinks(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		s := be.open(t)
		apply(t, s, ev(1, 1, "in.track.custom.a", 1000, `{}`, "anonymous_id=a", "email_hash="+h("x")))
		apply(t, s, ev(2, 1, "in.track.custom.b", 2000, `{}`, "anonymous_id=b", "email_hash="+h("x")))
		if p := find(t, s, 1, "anonymous_id", "b"); idents(p) != "email_hash="+h("x")+" anonymous_id=a anonymous_id=b" {
			t.Fatalf("%s", idents(p))
		}
	})
}

// Traits from every dialect: revenue by currency, purchases, the cart as
// seed 002 describes it, the wishlist.
func TestTraits(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		s := be.open(t)
		u := "user_id=u"
		apply(t, s,
			ev(1, 1, "in.s2s.revenue.buy", 1000, `{"type":"revenue","name":"buy","revenue":1000.5,"currency":"IRR"}`, u),
			ev(2, 1, "in.commerce.add-to-cart-v1", 2000, `{"properties":{"eventType":"add-to-cart-v1","value":2,"productId":"p1","quantity":2}}`, u),
			ev(3, 1, "in.commerce.add-to-cart-v1", 3000, `{"properties":{"eventType":"add-to-cart-v1","value":1,"productId":"p2","quantity":1}}`, u),
			ev(4, 1, "in.commerce.remove-from-cart-v1", 4000, `{"properties":{"eventType":"remove-from-cart-v1","value":1,"productId":"p1","quantity":1}}`, u),
			ev(5, 1, "in.commerce.add-to-wishlist-v1", 5000, `{"properties":{"eventType":"add-to-wishlist-v1","productId":"w2"}}`, u),
			ev(6, 1, "in.commerce.add-to-wishlist-v1", 5500, `{"properties":{"eventType":"add-to-wishlist-v1","productId":"w1"}}`, u),
			ev(7, 1, "in.track.transaction.completed", 6000, `{"event":{"name":"Completed Transaction","transaction":{"total":3029,"currency":"RUB","orderId":"o-1","lineItems":[{"product":{"id":"64800237","unitSalePrice":3029},"quantity":1}]}}}`, u),
		)
		p := find(t, s, 1, "user_id", "u")
		tr := p.Traits
		if tr.Revenue["IRR"] != "1000.5" || tr.Revenue["RUB"] != "3029" || tr.Purchases != 1 || tr.LastPurchase == nil || tr.LastPurchase.OrderID != "o-1" ||
			len(tr.Cart) != 2 || tr.Cart[0] != (CartItem{ProductID: "p1", Quantity: 1}) || tr.Cart[1].ProductID != "p2" ||
			strings.Join(tr.Wishlist, ",") != "w1,w2" || tr.Events != 7 || tr.EventsByKey["in.commerce.add-to-cart-v1"] != 2 {
			t.Fatalf("traits %+v", tr)
		}
		// A purchase with its cart empties the cart; sync replaces it.
		apply(t, s, ev(8, 1, "in.commerce.purchase-v1", 7000, `{"properties":{"eventType":"purchase-v1","uniqueTransactionId":"t-9","value":"12.25","currency":"rub","cart":[{"productId":"p2","quantity":1,"itemPrice":12.25}]}}`, u))
		tr = find(t, s, 1, "user_id", "u").Traits
		if len(tr.Cart) != 0 || tr.Revenue["RUB"] != "3041.25" || tr.LastPurchase.OrderID != "t-9" || tr.LastPurchase.Items[0].Price != "12.25" || tr.Purchases != 2 {
			t.Fatalf("after purchase %+v", tr)
		}
		apply(t, s, ev(9, 1, "in.commerce.sync-cart-v1", 8000, `{"properties":{"eventType":"sync-cart-v1","cart":[{"productId":"z","quantity":3,"itemPrice":1}]}}`, u))
		if tr = find(t, s, 1, "user_id", "u").Traits; len(tr.Cart) != 1 || tr.Cart[0] != (CartItem{ProductID: "z", Quantity: 3, Price: "1"}) {
			t.Fatalf("after sync %+v", tr.Cart)
		}
	})
}

// A late event that would change who holds a contested identity rebuilds
// the profiles it touches: the result is what in-order arrival gives.
func TestLateEventRebuilds(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		inOrder, late := be.open(t), be.open(t)
		e1 := ev(1, 1, "in.track.custom.v", 1000, `{}`, "user_id=u1", "anonymous_id=a")
		e2 := ev(2, 1, "in.track.custom.v", 2000, `{}`, "user_id=u2", "anonymous_id=a")
		apply(t, inOrder, e1)
		apply(t, inOrder, e2)
		apply(t, late, e2)
		st := apply(t, late, e1)
		if st.Rebuilt == 0 {
			t.Fatalf("no rebuild: %+v", st)
		}
		for _, store := range []*Store{inOrder, late} {
			if p := find(t, store, 1, "anonymous_id", "a"); idents(p) != "user_id=u1 anonymous_id=a" {
				t.Fatalf("%s", idents(p))
			}
		}
		a, b := dump(t, inOrder, 1), dump(t, late, 1)
		if a != b {
			t.Fatalf("in order:\n%s\nlate:\n%s", a, b)
		}
		// The id of the profile the rebuild dissolved still resolves.
		old := profileID(1, event.Identity{Type: "user_id", Value: "u2"})
		if p := find(t, late, 1, LookupProfile, old); p.ID != old {
			t.Fatalf("%s resolves to %s", old, p.ID)
		}
	})
}

// dump renders every profile of project as JSON, sorted by id.
func dump(t testing.TB, s *Store, project uint32) string {
	t.Helper()
	ids, err := s.db.ProfileIDs(context.Background(), project)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, id := range ids {
		p := find(t, s, project, LookupProfile, id)
		out, _ := json.MarshalIndent(p, "", "  ")
		b.Write(out)
		b.WriteString("\n")
	}
	return b.String()
}

func TestTimelineAndErase(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		s := be.open(t)
		apply(t, s,
			ev(1, 1, "in.track.custom.view", 1000, `{}`, "anonymous_id=a"),
			ev(2, 1, "in.commerce.login-v1", 3000, `{}`, "user_id=u", "anonymous_id=a"),
			ev(3, 1, "in.s2s.revenue.buy", 2000, `{"revenue":1,"currency":"IRR"}`, "user_id=u"),
			ev(4, 1, "in.s2s.user", 4000, `{}`, "user_id=other"),
		)
		_, page, err := s.Timeline(context.Background(), 1, "user_id", "u", TimelineQuery{Limit: 2})
		if err != nil || len(page) != 2 || page[0].EventID != 2 || page[1].EventID != 3 {
			t.Fatalf("page %+v %v", page, err)
		}
		_, page, _ = s.Timeline(context.Background(), 1, "user_id", "u", TimelineQuery{Limit: 2, BeforeTime: page[1].Time, BeforeID: page[1].EventID})
		if len(page) != 1 || page[0].EventID != 1 {
			t.Fatalf("second page %+v", page)
		}
		if _, page, _ = s.Timeline(context.Background(), 1, "anonymous_id", "a", TimelineQuery{KeyGlob: "in.s2s.*"}); len(page) != 1 || page[0].EventID != 3 {
			t.Fatalf("glob page %+v", page)
		}
		er, err := s.Erase(context.Background(), 1, "anonymous_id", "a")
		if err != nil || er.Identities != 2 || len(er.Events) != 3 || er.Events[0] != 1 || er.Events[2] != 3 {
			t.Fatalf("erased %+v %v", er, err)
		}
		for _, id := range []string{"user_id=u", "anonymous_id=a"} {
			typ, v, _ := strings.Cut(id, "=")
			if _, err := s.Find(context.Background(), 1, typ, v); !errors.Is(err, ErrNotFound) {
				t.Fatalf("%s still found", id)
			}
		}
		if _, _, err := s.Timeline(context.Background(), 1, "user_id", "u", TimelineQuery{}); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if p := find(t, s, 1, "user_id", "other"); p.Traits.Events != 1 {
			t.Fatal("erasure touched another person")
		}
	})
}

func TestOldSchemaIsRebuilt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "profiles.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, ev(1, 1, "in.s2s.user", 1, `{}`, "custom_user_id=c"))
	s.db.(*SQLiteBackend).db.Exec(`PRAGMA user_version=1`)
	s.Close()
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if c, _ := s.Cursor(context.Background(), "test"); c != 0 {
		t.Fatalf("cursor %d: the consumer must refold the log", c)
	}
	if _, err := s.Find(context.Background(), 1, "custom_user_id", "c"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

func TestIdentityTypesNamesEveryType(t *testing.T) {
	got := IdentityTypes()
	for _, k := range identity.Kinds() {
		if !strings.Contains(got, k.Type) {
			t.Errorf("%s missing from %s", k.Type, got)
		}
	}
	if !strings.HasSuffix(got, ", profile") {
		t.Fatal(got)
	}
	_ = strconv.Itoa
}

// docs/profiles.md's table of identity types is the identity package's.
func TestDocsTableOfIdentityTypes(t *testing.T) {
	b, err := os.ReadFile("../../docs/profiles.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "<!-- identity-types")
	if start < 0 {
		t.Fatal("docs/profiles.md has no identity-types table")
	}
	var rows []string
	for _, line := range strings.Split(doc[start:], "\n")[1:] {
		if strings.HasPrefix(line, "| `") {
			rows = append(rows, line)
		} else if len(rows) > 0 && !strings.HasPrefix(line, "|") {
			break
		}
	}
	kinds := identity.Kinds()
	if len(rows) != len(kinds) {
		t.Fatalf("%d rows for %d types", len(rows), len(kinds))
	}
	for i, k := range kinds {
		want := "| `" + k.Type + "` | " + k.From + " | " + k.Strength.String() + " |"
		if rows[i] != want {
			t.Errorf("row %d:\n got %s\nwant %s", i, rows[i], want)
		}
	}
}

// A Store keeps the profiles of its last batch in memory; a write by
// another node in between (here an erasure) makes it read them again,
// so it never writes back what the other removed.
func TestAnotherWriterInvalidatesTheKeptProfiles(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		a, b := be.pair(t)
		apply(t, a, ev(1, 1, "in.s2s.user", 1000, `{"city":"Tehran"}`, "user_id=u", "anonymous_id=x"))
		if _, err := b.Erase(context.Background(), 1, "user_id", "u"); err != nil {
			t.Fatal(err)
		}
		apply(t, a, ev(2, 1, "in.s2s.user", 2000, `{"plan":"pro"}`, "user_id=u"))
		p := find(t, a, 1, "user_id", "u")
		if p.Traits.Events != 1 || idents(p) != "user_id=u" || len(p.Attributes) != 1 {
			t.Fatalf("the erased profile came back: events %d, identities %s, attributes %v", p.Traits.Events, idents(p), p.Attributes)
		}
		if _, err := b.Find(context.Background(), 1, "anonymous_id", "x"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("an erased identity: %v", err)
		}
	})
}

// Writers on two nodes take turns: folding one person's events from
// both at once loses none.
func TestConcurrentWritersLoseNothing(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		a, b := be.pair(t)
		var wg sync.WaitGroup
		for w, s := range []*Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 20; i++ {
					id := event.ID(1 + 2*i + w)
					if _, err := s.ApplyStats(context.Background(), "test", id, []*event.Event{
						ev(id, 1, "in.s2s.user", int64(1000*id), `{}`, "user_id=u", "anonymous_id=a"+strconv.Itoa(int(id)))}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		for _, s := range []*Store{a, b} {
			if p := find(t, s, 1, "user_id", "u"); p.Traits.Events != 40 || len(p.Identities) != 41 {
				t.Fatalf("events %d, identities %d; want 40 and 41", p.Traits.Events, len(p.Identities))
			}
		}
	})
}

// Dump from one backend and Load into the other keeps every profile,
// identity, alias, observation and cursor (sluice migrate --from).
func TestDumpLoadAcrossBackends(t *testing.T) {
	ctx := context.Background()
	for _, pair := range [][2]backend{{backends[0], backends[1]}, {backends[1], backends[0]}} {
		t.Run(pair[0].name+"→"+pair[1].name, func(t *testing.T) {
			from, to := pair[0].open(t), pair[1].open(t)
			r := rand.New(rand.NewPCG(3, 9))
			evs := randomEvents(r, 60)
			for i := 0; i < len(evs); i += 7 {
				apply(t, from, evs[i:min(i+7, len(evs))]...)
			}
			var rows []Row
			if err := from.db.Dump(ctx, func(r Row) error { rows = append(rows, r); return nil }); err != nil {
				t.Fatal(err)
			}
			if err := to.db.Load(ctx, rows); err != nil {
				t.Fatal(err)
			}
			var again []Row
			if err := to.db.Dump(ctx, func(r Row) error { again = append(again, r); return nil }); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(again, rows) {
				t.Fatalf("loaded %d rows, dumped back %d, not the same", len(rows), len(again))
			}
			if got, want := dump(t, to, 1), dump(t, from, 1); got != want {
				t.Fatalf("profiles after the move:\n%s\nnot\n%s", got, want)
			}
			if c, _ := to.Cursor(ctx, "test"); c != evs[len(evs)-1].ID {
				t.Fatalf("cursor %d", c)
			}
			// The moved profiles fold on as they would have.
			more := ev(5000, 1, "in.s2s.user", 9_000_000, `{"city":"Kazan"}`, "user_id=u1")
			apply(t, from, more)
			apply(t, to, more)
			if got, want := dump(t, to, 1), dump(t, from, 1); got != want {
				t.Fatal("the next event folds otherwise after the move")
			}
		})
	}
}

// A database of the first schema is brought up to date, keeping what it
// holds.
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
	// What an earlier version stored: profiles made by folding, written
	// into the first schema's tables.
	src := openStore(t)
	apply(t, src, ev(1, 1, "in.track.custom.view", 1000, `{}`, "anonymous_id=a"))
	apply(t, src, ev(2, 1, "in.s2s.user", 2000, `{"city":"Tehran"}`, "user_id=u"))
	apply(t, src, ev(3, 1, "in.commerce.custom.x", 3000, `{}`, "user_id=u", "anonymous_id=a"))
	merged := find(t, src, 1, "user_id", "u")
	if len(merged.Merged) != 1 {
		t.Fatalf("no merge to keep: %+v", merged)
	}
	err = src.db.Dump(ctx, func(r Row) error {
		var err error
		switch {
		case r.Profile != nil:
			_, err = pool.Exec(ctx, `INSERT INTO profiles (id, project_id, doc) VALUES ($1, $2, $3)`, r.Profile.ID, r.Profile.ProjectID, string(r.Profile.Doc))
		case r.Identity != nil:
			_, err = pool.Exec(ctx, `INSERT INTO profile_identities (project_id, type, value, profile_id) VALUES ($1, $2, $3, $4)`,
				r.Identity.ProjectID, r.Identity.Type, r.Identity.Value, r.Identity.ProfileID)
		case r.Alias != nil:
			_, err = pool.Exec(ctx, `INSERT INTO profile_aliases (id, project_id, into_id) VALUES ($1, $2, $3)`, r.Alias.ID, r.Alias.ProjectID, r.Alias.Into)
		case r.Observation != nil:
			o := r.Observation
			_, err = pool.Exec(ctx, `INSERT INTO profile_observations (event_id, project_id, profile_id, time, digest, key, doc) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
				int64(o.EventID), o.ProjectID, o.ProfileID, o.Time, o.Digest, o.Key, string(o.Doc))
		case r.Cursor != nil:
			_, err = pool.Exec(ctx, `INSERT INTO consumer_cursors (name, after) VALUES ($1, $2)`, r.Cursor.Name, int64(r.Cursor.After))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := pgmigrate.Apply(ctx, pool, Migrations); err != nil {
		t.Fatal(err)
	}
	s := New(NewPostgres(pool))
	if c, err := s.Cursor(ctx, "test"); err != nil || c != 3 {
		t.Fatalf("cursor %d %v", c, err)
	}
	if p := find(t, s, 1, LookupProfile, merged.Merged[0]); p.ID != merged.ID {
		t.Fatalf("the merged id resolves to %s, not %s", p.ID, merged.ID)
	}
	if got, want := dump(t, s, 1), dump(t, src, 1); got != want {
		t.Fatalf("after the upgrade:\n%s\nnot\n%s", got, want)
	}
	more := ev(4, 1, "in.s2s.user", 4000, `{"city":"Kazan"}`, "user_id=u")
	apply(t, s, more)
	apply(t, src, more)
	if got, want := dump(t, s, 1), dump(t, src, 1); got != want {
		t.Fatalf("folding on after the upgrade:\n%s\nnot\n%s", got, want)
	}
}

// A rebuild counts only the merges and conflicts it adds: those the old
// profiles already held were counted when they happened.
func TestRebuildCountsWhatItAdds(t *testing.T) {
	s := openStore(t)
	var merges, conflicts, rebuilt int
	add := func(evs ...*event.Event) {
		st := apply(t, s, evs...)
		merges, conflicts, rebuilt = merges+st.Merges, conflicts+st.Conflicts, rebuilt+st.Rebuilt
	}
	add(ev(1, 1, "in.s2s.user", 10, "", "user_id=u1", "anonymous_id=a1"))
	add(ev(2, 1, "in.s2s.user", 20, "", "anonymous_id=a2"))
	add(ev(3, 1, "in.s2s.user", 30, "", "anonymous_id=a1", "anonymous_id=a2")) // a merge
	add(ev(4, 1, "in.s2s.user", 40, "", "user_id=u1", "phone_hash="+h("p1")))  // joins
	add(ev(5, 1, "in.s2s.user", 50, "", "user_id=u1", "phone_hash="+h("p2")))  // a conflict
	if merges != 1 || conflicts != 1 || rebuilt != 0 {
		t.Fatalf("in order: %d merges, %d conflicts, %d rebuilt", merges, conflicts, rebuilt)
	}
	// A late event that links another phone before both: rebuilt, and
	// p1's event is a conflict too; the merge is the same one.
	add(ev(6, 1, "in.s2s.user", 5, "", "user_id=u1", "phone_hash="+h("p0")))
	if merges != 1 || conflicts != 2 || rebuilt != 1 {
		t.Fatalf("after a late event: %d merges, %d conflicts, %d rebuilt", merges, conflicts, rebuilt)
	}
	p := find(t, s, 1, "user_id", "u1")
	if len(p.Conflicts) != 2 {
		t.Fatalf("conflicts %+v", p.Conflicts)
	}
}
