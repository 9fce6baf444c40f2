package profile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"sort"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/identity"
)

// The fold: how one observation changes the profiles it touches. The
// rules (docs/profiles.md has them as a table):
//
//  1. The identities of one event belong to one profile: that of the
//     first of them in canonical order (strongest first); when no profile
//     holds it, the first profile of the others that may take it; else a
//     new profile, named after that first identity.
//  2. An identity no profile holds joins it; one another profile holds
//     merges that profile in.
//  3. Unless a strong type would then hold two values (two user ids, two
//     phone hashes): the profile keeps its first, and the event's link
//     is recorded as a conflict. Device and weak identities never keep
//     profiles apart.
//  4. Of two merged profiles, the one first seen (in canonical order)
//     survives; the other's id stays resolvable, naming it.
//  5. Attributes: the last writer wins, by event time, then by the
//     canonical order. Traits are counted from every event.
//
// Folded in canonical order (event time, content digest, id), the same
// events give the same profiles, whatever order they arrived in.

// state is one profile as the fold keeps it.
type state struct {
	ID         string                `json:"id"`
	ProjectID  uint32                `json:"project"`
	Anchor     event.Identity        `json:"anchor"`
	First      order                 `json:"first"`
	Last       order                 `json:"last"`
	Identities map[string]*seen      `json:"identities"` // by identityKey
	Attrs      map[string]*attribute `json:"attributes"`
	Traits     traits                `json:"traits"`
	Conflicts  []conflict            `json:"conflicts,omitempty"`
	Merged     []string              `json:"merged,omitempty"`
	// MergedAt is the order of the observation that made the last merge
	// into this profile (zero: none, or a state stored before it was kept).
	MergedAt order `json:"mergedAt,omitzero"`
	// Contested names the profiles whose events linked an identity this
	// one holds, refused (their conflicts name it): a rebuild of this
	// profile rebuilds them too.
	Contested []string `json:"contested,omitempty"`
}

type seen struct {
	Type  string `json:"type"`
	Value string `json:"value"`
	First int64  `json:"first"`
	Last  int64  `json:"last"`
	// Since is the order of the observation that brought the identity
	// into this profile or one merged into it (zero in a state stored
	// before it was kept).
	Since order `json:"since,omitzero"`
}

type attribute struct {
	Value json.RawMessage `json:"value"`
	At    order           `json:"at"`
}

type traits struct {
	Events       int64             `json:"events"`
	EventsByKey  map[string]int64  `json:"eventsByKey"`
	Revenue      map[string]string `json:"revenue,omitempty"`
	Purchases    int64             `json:"purchases"`
	LastPurchase *lastPurchase     `json:"lastPurchase,omitempty"`
	Cart         []CartItem        `json:"cart,omitempty"`
	CartAt       *order            `json:"cartAt,omitempty"`
	// CartBase is the order of the last replace or clear of the cart:
	// a cart change before it is undone by it (nil: none, or a state
	// stored before it was kept).
	CartBase *order   `json:"cartBase,omitempty"`
	Wishlist []string `json:"wishlist,omitempty"`
}

type lastPurchase struct {
	Purchase
	Key     string   `json:"key"`
	EventID event.ID `json:"eventId"`
	At      order    `json:"at"`
}

// conflict is a link an event made that the merge rule refused: linking
// Linked would have put two values of the strong type Type in one
// profile, the profile's Held and Value; Other is the profile that holds
// Linked, if any.
type conflict struct {
	EventID event.ID       `json:"eventId"`
	Time    int64          `json:"time"`
	Linked  event.Identity `json:"linked"`
	Type    string         `json:"type"`
	Held    string         `json:"held"`
	Value   string         `json:"value"`
	Other   string         `json:"other,omitempty"`
}

// maxConflicts bounds the conflicts a profile keeps (the newest).
const maxConflicts = 100

func identityKey(id event.Identity) string { return id.Type + "\x00" + id.Value }

// profileID names the profile that identity anchor created in project.
func profileID(project uint32, anchor event.Identity) string {
	h := sha256.Sum256([]byte(strconv.FormatUint(uint64(project), 10) + "\x00" + anchor.Type + "\x00" + anchor.Value))
	return "prf_" + hex.EncodeToString(h[:10])
}

func (s *state) ids() []event.Identity {
	out := make([]event.Identity, 0, len(s.Identities))
	for _, i := range s.Identities {
		out = append(out, event.Identity{Type: i.Type, Value: i.Value})
	}
	return out
}

// clashWith is what keeps id out of s: s holds another value of id's
// type, a strong one (the merge rule, for one identity).
func (s *state) clashWith(id event.Identity) *identity.Clash {
	if !strong(id) {
		return nil
	}
	for _, i := range s.Identities {
		if i.Type == id.Type && i.Value != id.Value {
			return &identity.Clash{Type: id.Type, Values: [2]string{i.Value, id.Value}}
		}
	}
	return nil
}

// world is the profiles a fold reads and changes: those of one project
// that the observations at hand touch, with the ownership of their
// identities. The store loads it, folds, and writes back what changed.
type world struct {
	project uint32
	byID    map[string]*state
	owner   map[string]string // identityKey → profile id
	// What changed: profiles to write, profiles gone (into their
	// survivor), identities whose owner changed.
	dirty   map[string]bool
	gone    map[string]string
	moved   map[string]event.Identity
	created map[string]bool
	// counts for metrics
	merges, conflicts int
}

func newWorld(project uint32) *world {
	return &world{project: project, byID: map[string]*state{}, owner: map[string]string{},
		dirty: map[string]bool{}, gone: map[string]string{}, moved: map[string]event.Identity{}, created: map[string]bool{}}
}

// add puts a loaded profile into the world.
func (w *world) add(s *state) {
	w.byID[s.ID] = s
	for k := range s.Identities {
		w.owner[k] = s.ID
	}
}

func (w *world) setOwner(id event.Identity, p string) {
	k := identityKey(id)
	w.owner[k] = p
	w.moved[k] = id
}

// fold applies o: rules 1–5 above. It returns the profile o now belongs to.
func (w *world) fold(o *Observation) *state {
	var p *state
	first := o.IDs[0]
	if pid, ok := w.owner[identityKey(first)]; ok {
		p = w.byID[pid]
	} else {
		// The first identity is new: it joins the first profile of the
		// others that may hold it.
		for _, id := range o.IDs[1:] {
			pid, ok := w.owner[identityKey(id)]
			if !ok {
				continue
			}
			if w.byID[pid].clashWith(first) == nil {
				p = w.byID[pid]
				break
			}
		}
	}
	if p == nil {
		anchor := o.IDs[0]
		p = &state{ID: profileID(w.project, anchor), ProjectID: w.project, Anchor: anchor, First: o.order(), Last: o.order(),
			Identities: map[string]*seen{}, Attrs: map[string]*attribute{}, Traits: traits{EventsByKey: map[string]int64{}}}
		w.byID[p.ID] = p
		w.created[p.ID] = true
	}
	w.dirty[p.ID] = true
	for _, id := range o.IDs {
		k := identityKey(id)
		pid, owned := w.owner[k]
		switch {
		case owned && pid == p.ID:
		case owned:
			q := w.byID[pid]
			if ok, clash := identity.Mergeable(p.ids(), q.ids()); !ok {
				p.conflict(o, id, clash, q.ID)
				q.contest(p.ID)
				w.dirty[q.ID] = true
				w.conflicts++
				continue
			}
			p = w.merge(p, q, o.order())
		default:
			if clash := p.clashWith(id); clash != nil {
				p.conflict(o, id, clash, "")
				w.conflicts++
				continue
			}
			p.Identities[k] = &seen{Type: id.Type, Value: id.Value, First: o.Time, Last: o.Time, Since: o.order()}
			w.setOwner(id, p.ID)
		}
	}
	p.apply(o)
	return p
}

// merge merges two profiles, at the order of the observation that links
// them; the one first seen survives (rule 4).
func (w *world) merge(a, b *state, at order) *state {
	into, from := a, b
	if b.First.less(a.First) {
		into, from = b, a
	}
	for k, i := range from.Identities {
		if cur, ok := into.Identities[k]; ok {
			cur.First, cur.Last = min(cur.First, i.First), max(cur.Last, i.Last)
			if cur.Since.zero() || i.Since.zero() {
				cur.Since = order{}
			} else if i.Since.less(cur.Since) {
				cur.Since = i.Since
			}
		} else {
			into.Identities[k] = i
		}
		w.setOwner(event.Identity{Type: i.Type, Value: i.Value}, into.ID)
	}
	for name, at := range from.Attrs {
		into.setAttr(name, at.Value, at.At)
	}
	into.Traits.mergeFrom(&from.Traits)
	into.Conflicts = append(into.Conflicts, from.Conflicts...)
	sort.Slice(into.Conflicts, func(i, j int) bool {
		if into.Conflicts[i].Time != into.Conflicts[j].Time {
			return into.Conflicts[i].Time < into.Conflicts[j].Time
		}
		return into.Conflicts[i].EventID < into.Conflicts[j].EventID
	})
	if n := len(into.Conflicts); n > maxConflicts {
		into.Conflicts = into.Conflicts[n-maxConflicts:]
	}
	into.Merged = append(append(into.Merged, from.ID), from.Merged...)
	sort.Strings(into.Merged)
	// Contested ids naming from resolve, through its alias, to into.
	for _, c := range from.Contested {
		into.contest(c)
	}
	if from.First.less(into.First) {
		into.First = from.First
	}
	if into.Last.less(from.Last) {
		into.Last = from.Last
	}
	for _, m := range []order{from.MergedAt, at} {
		if into.MergedAt.less(m) {
			into.MergedAt = m
		}
	}
	delete(w.byID, from.ID)
	delete(w.dirty, from.ID)
	w.gone[from.ID] = into.ID
	for id, to := range w.gone {
		if to == from.ID {
			w.gone[id] = into.ID
		}
	}
	w.dirty[into.ID] = true
	w.merges++
	return into
}

// contest records that profile pid's conflicts name s.
func (s *state) contest(pid string) {
	if pid == s.ID {
		return
	}
	i := sort.SearchStrings(s.Contested, pid)
	if i < len(s.Contested) && s.Contested[i] == pid {
		return
	}
	s.Contested = append(s.Contested, "")
	copy(s.Contested[i+1:], s.Contested[i:])
	s.Contested[i] = pid
}

func (s *state) conflict(o *Observation, id event.Identity, clash *identity.Clash, other string) {
	c := conflict{EventID: o.EventID, Time: o.Time, Linked: id, Other: other}
	if clash != nil {
		c.Type, c.Held, c.Value = clash.Type, clash.Values[0], clash.Values[1]
	}
	s.Conflicts = append(s.Conflicts, c)
	if n := len(s.Conflicts); n > maxConflicts {
		s.Conflicts = s.Conflicts[n-maxConflicts:]
	}
}

// apply adds what o says to s: when its identities were seen, its
// attributes, its traits.
func (s *state) apply(o *Observation) {
	at := o.order()
	for _, id := range o.IDs {
		if i, ok := s.Identities[identityKey(id)]; ok {
			i.First, i.Last = min(i.First, o.Time), max(i.Last, o.Time)
			// A late event folded in place brings it earlier (inOrder).
			if !i.Since.zero() && at.less(i.Since) {
				i.Since = at
			}
		}
	}
	for name, v := range o.Attrs {
		s.setAttr(name, json.RawMessage(v), at)
	}
	if at.less(s.First) {
		s.First = at
	}
	if s.Last.less(at) {
		s.Last = at
	}
	t := &s.Traits
	t.Events++
	t.EventsByKey[o.Key]++
	if r := o.Facts.Revenue; r != nil {
		t.addRevenue(r.Currency, r.Amount)
	}
	if pu := o.Facts.Purchase; pu != nil {
		t.Purchases++
		if t.LastPurchase == nil || t.LastPurchase.At.less(at) {
			t.LastPurchase = &lastPurchase{Purchase: *pu, Key: o.Key, EventID: o.EventID, At: at}
		}
	}
	if c := o.Facts.Cart; c != nil {
		t.applyCart(c, at)
	}
	for _, p := range o.Facts.Wishlist {
		t.addWish(p)
	}
}

// setAttr keeps the value with the later order (rule 5).
func (s *state) setAttr(name string, v json.RawMessage, at order) {
	if cur, ok := s.Attrs[name]; ok && !cur.At.less(at) {
		return
	}
	s.Attrs[name] = &attribute{Value: v, At: at}
}

func (t *traits) addRevenue(currency, amount string) {
	add, ok := new(big.Rat).SetString(amount)
	if !ok {
		return
	}
	if t.Revenue == nil {
		t.Revenue = map[string]string{}
	}
	if a, ok := parseFixed(amount); ok {
		cur, ok := int64(0), true
		if s, held := t.Revenue[currency]; held {
			cur, ok = parseFixed(s)
		}
		if sum := cur + a; ok && (a >= 0) == (sum >= cur) {
			t.Revenue[currency] = formatFixed(sum)
			return
		}
	}
	sum := new(big.Rat)
	if cur, ok := t.Revenue[currency]; ok {
		sum.SetString(cur)
	}
	t.Revenue[currency] = decimal(sum.Add(sum, add))
}

// fixedScale is the unit of a fixed-point amount: 10⁻⁸, the 8 decimals
// decimal renders.
const fixedScale = 100_000_000

// parseFixed reads a decimal of at most 8 decimals and 10 integer digits
// (no exponent) in units of 10⁻⁸: what most amounts are, added without
// big.Rat, exactly as big.Rat and decimal would add and render them.
func parseFixed(s string) (int64, bool) {
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		s = s[1:]
	}
	whole, frac, dot := strings.Cut(s, ".")
	if len(whole) == 0 || len(whole) > 10 || (dot && (len(frac) == 0 || len(frac) > 8)) {
		return 0, false
	}
	var v int64
	for _, part := range []string{whole, frac} {
		for i := 0; i < len(part); i++ {
			c := part[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int64(c-'0')
		}
	}
	for range 8 - len(frac) {
		v *= 10
	}
	if neg {
		v = -v
	}
	return v, true
}

// formatFixed renders an amount in units of 10⁻⁸ as decimal does.
func formatFixed(v int64) string {
	var b []byte
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	b = strconv.AppendInt(b, v/fixedScale, 10)
	if f := v % fixedScale; f != 0 {
		d := strconv.AppendInt(nil, f+fixedScale, 10)[1:] // 8 digits
		for d[len(d)-1] == '0' {
			d = d[:len(d)-1]
		}
		b = append(append(b, '.'), d...)
	}
	return string(b)
}

// decimal renders r with at most 8 decimals, trailing zeros cut.
func decimal(r *big.Rat) string {
	s := r.FloatString(8)
	for len(s) > 0 && s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if len(s) > 0 && s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

func (t *traits) applyCart(c *CartOp, at order) {
	if t.CartBase != nil && at.less(*t.CartBase) {
		// A late change that the last replace or clear undoes (inOrder).
		return
	}
	switch c.Op {
	case "replace":
		t.Cart = append([]CartItem(nil), c.Items...)
		base := at
		t.CartBase = &base
	case "clear":
		t.Cart = nil
		base := at
		t.CartBase = &base
	case "add":
		for _, it := range c.Items {
			found := false
			for i := range t.Cart {
				if t.Cart[i].ProductID == it.ProductID {
					t.Cart[i].Quantity += it.Quantity
					found = true
				}
			}
			if !found {
				t.Cart = append(t.Cart, it)
			}
		}
	case "remove":
		for _, it := range c.Items {
			for i := 0; i < len(t.Cart); i++ {
				if t.Cart[i].ProductID != it.ProductID {
					continue
				}
				t.Cart[i].Quantity -= it.Quantity
				if t.Cart[i].Quantity <= 0 {
					t.Cart = append(t.Cart[:i], t.Cart[i+1:]...)
					i--
				}
			}
		}
	}
	t.CartAt = &at
}

func (t *traits) addWish(product string) {
	i := sort.SearchStrings(t.Wishlist, product)
	if i < len(t.Wishlist) && t.Wishlist[i] == product {
		return
	}
	t.Wishlist = append(t.Wishlist, "")
	copy(t.Wishlist[i+1:], t.Wishlist[i:])
	t.Wishlist[i] = product
}

// mergeFrom adds the traits of a merged profile. The cart is the one
// changed last; counts and sums add up.
func (t *traits) mergeFrom(f *traits) {
	t.Events += f.Events
	for k, n := range f.EventsByKey {
		t.EventsByKey[k] += n
	}
	for cur, amount := range f.Revenue {
		t.addRevenue(cur, amount)
	}
	t.Purchases += f.Purchases
	if f.LastPurchase != nil && (t.LastPurchase == nil || t.LastPurchase.At.less(f.LastPurchase.At)) {
		t.LastPurchase = f.LastPurchase
	}
	if f.CartAt != nil && (t.CartAt == nil || t.CartAt.less(*f.CartAt)) {
		t.Cart, t.CartAt, t.CartBase = f.Cart, f.CartAt, f.CartBase
	}
	for _, p := range f.Wishlist {
		t.addWish(p)
	}
}
