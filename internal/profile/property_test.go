package profile

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/event"
)

// randomEvents makes n events of one project over a small universe of
// identities, so that links, merges and conflicts are common, with facts
// of every kind.
func randomEvents(r *rand.Rand, n int) []*event.Event {
	universe := []string{
		"user_id=u1", "user_id=u2", "user_id=u3", "custom_user_id=c1", "custom_user_id=c2",
		"phone_hash=" + h("1"), "phone_hash=" + h("2"), "cuid:crm=k1",
		"email_hash=" + h("e1"), "email_hash=" + h("e2"),
		"anonymous_id=a1", "anonymous_id=a2", "anonymous_id=a3", "anonymous_id=a4",
		"metrix_user_id=m1", "uid=1234567890", "ga_client_id=g1",
	}
	shapes := []struct{ key, data string }{
		{"in.s2s.user", `{"type":"user","city":"C%d","firstName":"F%d"}`},
		{"in.s2s.revenue.buy", `{"type":"revenue","revenue":%d.5,"currency":"IRR","n":%d}`},
		{"in.commerce.add-to-cart-v1", `{"properties":{"eventType":"add-to-cart-v1","value":1,"productId":"p%d","quantity":%d}}`},
		{"in.commerce.remove-from-cart-v1", `{"properties":{"eventType":"remove-from-cart-v1","value":1,"productId":"p%d","quantity":%d}}`},
		{"in.commerce.sync-cart-v1", `{"properties":{"eventType":"sync-cart-v1","cart":[{"productId":"p%d","quantity":%d,"itemPrice":1}]}}`},
		{"in.commerce.purchase-v1", `{"properties":{"eventType":"purchase-v1","uniqueTransactionId":"t%d","value":%d,"currency":"RUB"}}`},
		{"in.commerce.add-to-wishlist-v1", `{"properties":{"eventType":"add-to-wishlist-v1","productId":"w%d","n":%d}}`},
		{"in.commerce.signup-v1", `{"properties":{"eventType":"signup-v1","plan":"p%d","seats":%d}}`},
		{"in.track.transaction.completed", `{"event":{"name":"Completed Transaction","transaction":{"total":%d,"currency":"RUB","orderId":"o%d"}}}`},
		{"in.gen.calltrack.call", `{"n":%d,"m":%d}`},
	}
	evs := make([]*event.Event, n)
	for i := range evs {
		k := 1 + r.IntN(3)
		var ids []string
		for j := 0; j < k; j++ {
			ids = append(ids, universe[r.IntN(len(universe))])
		}
		sh := shapes[r.IntN(len(shapes))]
		// Times collide now and then: the digest orders those.
		t := int64(1_000_000 + r.IntN(n*2)*1000)
		evs[i] = ev(event.ID(1000+i), 1, sh.key, t, fmt.Sprintf(sh.data, r.IntN(4), 1+r.IntN(3)), ids...)
	}
	return evs
}

// The same events in any arrival order, in batches of any size, give the
// same profiles: the same ids, identities, attributes, traits, merges and
// conflicts.
func TestSameEventsAnyOrderSameProfiles(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		seeds := 25
		if testing.Short() || be.name == "postgres" {
			// On PostgreSQL the fold is the same code: ten seeds run every
			// statement of the backend, at a fifth of a second per store.
			seeds = 10
		}
		for seed := 0; seed < seeds; seed++ {
			r := rand.New(rand.NewPCG(uint64(seed), 7))
			evs := randomEvents(r, 30+r.IntN(50))
			var want string
			for round := 0; round < 4; round++ {
				order := append([]*event.Event(nil), evs...)
				if round > 0 {
					r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
				}
				s := be.open(t)
				for i := 0; i < len(order); {
					n := 1 + r.IntN(8)
					if round == 0 {
						n = 1
					}
					n = min(n, len(order)-i)
					apply(t, s, order[i:i+n]...)
					i += n
				}
				// The stored states too, with what decides whether a late
				// event folds in place (when each identity came, the last
				// merge).
				got := dump(t, s, 1) + dumpStates(t, s, 1)
				if round == 0 {
					want = got
					continue
				}
				if got != want {
					t.Fatalf("seed %d, round %d: the profiles differ from those of the first order\nfirst:\n%s\nthis:\n%s", seed, round, want, got)
				}
			}
		}
	})
}

// dumpStates is the stored state of each profile of project, as the fold
// keeps it.
func dumpStates(t testing.TB, s *Store, project uint32) string {
	t.Helper()
	ids, err := s.db.ProfileIDs(context.Background(), project)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, id := range ids {
		_, doc, ok, err := s.db.Profile(context.Background(), id)
		if err != nil || !ok {
			t.Fatalf("profile %s: %v %v", id, ok, err)
		}
		var st state
		if err := json.Unmarshal(doc, &st); err != nil {
			t.Fatal(err)
		}
		out, _ := json.MarshalIndent(&st, "", "  ")
		b.Write(out)
		b.WriteString("\n")
	}
	return b.String()
}

// A person with a long history whose events arrive slightly out of
// order, as concurrent senders deliver them (the same identities on every
// event, times that collide or step back a little): the late ones fold in
// place, without a rebuild, and the profile is the one of the canonical
// order. The one late event that links a new identity before the
// profile's start is rebuilt.
func TestLateEventsOfAKnownPersonFoldInPlace(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		r := rand.New(rand.NewPCG(3, 9))
		var evs []*event.Event
		for i := 0; i < 400; i++ {
			// Within 3 ms windows the arrival order is any.
			tm := int64(1_000_000 + i/3*1)
			data := fmt.Sprintf(`{"type":"user","city":"C%d"}`, r.IntN(5))
			if i%7 == 0 {
				data = fmt.Sprintf(`{"type":"revenue","revenue":%d.25,"currency":"USD"}`, 1+r.IntN(9))
			}
			evs = append(evs, ev(event.ID(5000+i), 1, "in.s2s.user", tm, data, "user_id=hot", "email_hash="+h("hot")))
		}
		arrived := shuffledWindows(r, evs, 0, 3)
		canon, s := be.open(t), be.open(t)
		for _, e := range evs {
			apply(t, canon, e)
		}
		if rebuilt := foldInChunks(t, s, arrived, 4); rebuilt != 0 {
			t.Fatalf("%d rebuilds for late events that link nothing", rebuilt)
		}
		sameProfiles(t, s, canon, "late events folded in place")
		// A late event that brings a new identity, earlier than the
		// profile's first event, is not one of those.
		early := ev(4999, 1, "in.s2s.user", 999_000, `{"type":"user"}`, "user_id=hot", "phone_hash="+h("p"))
		if st := apply(t, s, early); st.Rebuilt != 1 {
			t.Fatalf("rebuilt %d for an early event that links a phone", st.Rebuilt)
		}
		apply(t, canon, early)
		if got, want := dump(t, s, 1), dump(t, canon, 1); got != want {
			t.Fatalf("after the early event\ncanonical:\n%s\ngot:\n%s", want, got)
		}
	})
}

// A shop's purchases (each clears the cart) and cart syncs (each replaces
// it) of one person arrive out of order: a late one before the cart's last
// replace or clear changes nothing there, so it folds in place. A late
// add between the last replace and the cart's last change is rebuilt.
func TestLateCartChangesFoldInPlace(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		r := rand.New(rand.NewPCG(8, 2))
		var evs []*event.Event
		for i := 0; i < 200; i++ {
			key, data := "in.commerce.purchase-v1", fmt.Sprintf(`{"properties":{"eventType":"purchase-v1","uniqueTransactionId":"t%d","value":%d,"currency":"RUB"}}`, i, 1+r.IntN(9))
			if i%3 == 1 {
				key, data = "in.commerce.sync-cart-v1", fmt.Sprintf(`{"properties":{"eventType":"sync-cart-v1","cart":[{"productId":"p%d","quantity":%d,"itemPrice":1}]}}`, i, 1+r.IntN(3))
			}
			evs = append(evs, ev(event.ID(20000+i), 1, key, int64(2_000_000+(i+3)/4), data, "email_hash="+h("shopper"), fmt.Sprintf("anonymous_id=s%d", i%7)))
		}
		arrived := shuffledWindows(r, evs, 1, 4)
		canon, s := be.open(t), be.open(t)
		for _, e := range evs {
			apply(t, canon, e)
		}
		if rebuilt := foldInChunks(t, s, arrived, 2); rebuilt != 0 {
			t.Fatalf("%d rebuilds for late purchases and cart syncs", rebuilt)
		}
		sameProfiles(t, s, canon, "late cart changes")
		if p := find(t, s, 1, "email_hash", h("shopper")); p == nil || p.Traits.Purchases != 133 || len(p.Traits.Cart) != 0 {
			t.Fatalf("the shopper is %+v, want 133 purchases and the cart cleared by the last", p)
		}
		// An add after the last sync, then a late add between the two: it
		// changes the cart the first add changed, so it is rebuilt.
		add := func(id event.ID, tm int64, product string) *event.Event {
			return ev(id, 1, "in.commerce.add-to-cart-v1", tm, `{"properties":{"eventType":"add-to-cart-v1","value":1,"productId":"`+product+`","quantity":1}}`, "email_hash="+h("shopper"))
		}
		for _, e := range []*event.Event{add(20500, 2_000_100, "a1"), add(20501, 2_000_090, "a2")} {
			apply(t, canon, e)
		}
		if st := apply(t, s, add(20500, 2_000_100, "a1")); st.Rebuilt != 0 {
			t.Fatalf("rebuilt %d for an add in order", st.Rebuilt)
		}
		if st := apply(t, s, add(20501, 2_000_090, "a2")); st.Rebuilt != 1 {
			t.Fatalf("rebuilt %d for a late add after the last clear", st.Rebuilt)
		}
		sameProfiles(t, s, canon, "a late add")
	})
}

// One person on many devices (a commerce shop's batches: each device's
// anonymousId with the one hashedEmail), whose events arrive out of
// order: the late events that bring a device first seen there, or seen
// already but later, fold in place too, and give the canonical profile.
// A late one that brings a strong identity no profile holds is rebuilt.
func TestLateEventsWithNewDevicesFoldInPlace(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		r := rand.New(rand.NewPCG(5, 11))
		var evs []*event.Event
		for i := 0; i < 400; i++ {
			tm := int64(1_000_000 + (i+3)/4) // the first alone first
			data := fmt.Sprintf(`{"type":"user","city":"C%d"}`, r.IntN(5))
			if i%5 == 0 {
				data = fmt.Sprintf(`{"type":"revenue","revenue":%d.5,"currency":"EUR"}`, 1+r.IntN(9))
			}
			// A device for two or three events, sometimes one seen before.
			dev := i / 3
			if i%11 == 0 {
				dev = r.IntN(i/3 + 1)
			}
			evs = append(evs, ev(event.ID(9000+i), 1, "in.s2s.user", tm, data, "email_hash="+h("hot"), fmt.Sprintf("anonymous_id=d%d", dev)))
		}
		// The first event is first, alone at its time (it makes the
		// profile); after it, within windows of 4 the order is any.
		arrived := shuffledWindows(r, evs, 1, 4)
		late := 0
		for i := 1; i < len(arrived); i++ {
			if arrived[i].ID < arrived[i-1].ID {
				late++
			}
		}
		if late < 50 {
			t.Fatalf("only %d events arrive late: the test tests little", late)
		}
		canon, s := be.open(t), be.open(t)
		for _, e := range evs {
			apply(t, canon, e)
		}
		if rebuilt := foldInChunks(t, s, arrived, 3); rebuilt != 0 {
			t.Fatalf("%d rebuilds for late events that bring devices", rebuilt)
		}
		sameProfiles(t, s, canon, "late events folded in place")
		if p := find(t, s, 1, "anonymous_id", "d50"); p == nil || len(p.Identities) != 1+400/3+1 {
			t.Fatalf("the person holds %v, want the e-mail and every device", p)
		}
		// A late event with a phone hash no profile holds: a later event
		// could have been refused for it, so it is rebuilt.
		phone := ev(9999, 1, "in.s2s.user", 1_000_050, `{"type":"user"}`, "email_hash="+h("hot"), "phone_hash="+h("p1"))
		if st := apply(t, s, phone); st.Rebuilt != 1 {
			t.Fatalf("rebuilt %d for a late event that brings a phone hash", st.Rebuilt)
		}
		apply(t, canon, phone)
		sameProfiles(t, s, canon, "after the phone")
	})
}

// A late event that brings into p a strong identity p got only after the
// event's place is rebuilt, not folded in place: an event between may
// have been refused that identity in another profile, and in canonical
// order meets it in p (here event 3's refused phone becomes a refused
// link to p, with p contesting q).
func TestLateStrongIdentityRefusedBetweenIsRebuilt(t *testing.T) {
	x, y := "phone_hash="+h("x"), "phone_hash="+h("y")
	evs := []*event.Event{
		ev(1, 1, "in.s2s.user", 10, "", "user_id=u9", y),                 // q
		ev(2, 1, "in.s2s.user", 11, "", "user_id=u1", "anonymous_id=d1"), // p
		ev(3, 1, "in.s2s.user", 30, "", "user_id=u9", x),                 // x refused in q
		ev(4, 1, "in.s2s.user", 31, "", "user_id=u9", "anonymous_id=d1"), // q's link to p refused
		ev(5, 1, "in.s2s.user", 40, "", x, "anonymous_id=d1"),            // x joins p
		ev(6, 1, "in.s2s.user", 20, "", x, "anonymous_id=d1"),            // late: x earlier
	}
	canon, s := openStore(t), openStore(t)
	for _, i := range []int{0, 1, 5, 2, 3, 4} {
		apply(t, canon, evs[i])
	}
	rebuilt := 0
	for _, e := range evs {
		rebuilt += apply(t, s, e).Rebuilt
	}
	if rebuilt == 0 {
		t.Fatal("the late event was folded in place")
	}
	sameProfiles(t, s, canon, "a late strong identity")
}

// shuffledWindows is a copy of evs in which, from index from on, each
// window of w events arrives in any order.
func shuffledWindows(r *rand.Rand, evs []*event.Event, from, w int) []*event.Event {
	out := append([]*event.Event(nil), evs...)
	for i := from; i+w <= len(out); i += w {
		r.Shuffle(w, func(a, b int) { out[i+a], out[i+b] = out[i+b], out[i+a] })
	}
	return out
}

// foldInChunks applies evs to s n at a time and returns the rebuilds.
func foldInChunks(t *testing.T, s *Store, evs []*event.Event, n int) (rebuilt int) {
	t.Helper()
	for i := 0; i < len(evs); i += n {
		rebuilt += apply(t, s, evs[i:min(i+n, len(evs))]...).Rebuilt
	}
	return rebuilt
}

// sameProfiles fails unless got holds the profiles and fold states of
// project 1 that canon (the events in canonical order) holds.
func sameProfiles(t *testing.T, got, canon *Store, what string) {
	t.Helper()
	if g, w := dump(t, got, 1)+dumpStates(t, got, 1), dump(t, canon, 1)+dumpStates(t, canon, 1); g != w {
		t.Fatalf("%s: differs from the canonical order\ncanonical:\n%s\nin arrival order:\n%s", what, w, g)
	}
}
