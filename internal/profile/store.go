// Package profile folds the identities, attributes and facts that events
// of every dialect carry into one profile per person. A consumer follows
// the event log from a persisted cursor; applying a batch and moving the
// cursor happen in one transaction, so every event is applied exactly
// once, whatever crashes.
//
// A profile is a fold of observations (what each event says of its
// person) in their canonical order: event time, then a digest of the
// event's content (fold.go). An observation that arrives in that order is
// folded into the stored profiles; one that arrives late and could change
// an order-dependent outcome (a link, a conflict, the cart) makes the
// profiles it touches be rebuilt from their observations. So the same
// events give the same profiles whatever order they arrived in.
package profile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/identity"
)

// Store holds profiles in a Backend: profiles.db in the data directory,
// or PostgreSQL shared by several nodes.
type Store struct {
	db Backend

	// mu serialises the writers of this node (the consumer's Apply,
	// Erase). The folded profiles of recent batches stay in memory
	// (worlds) so that a person seen again is not read back; any failure
	// or erasure drops them, and so does a write by another node (the
	// backend's version is not the one the last commit here left).
	mu      sync.Mutex
	version int64
	worlds  map[uint32]*world
	known   map[uint32]map[string]bool
	cached  int
}

// maxCached bounds the profiles kept in memory between batches.
const maxCached = 100_000

func (s *Store) dropCache() {
	s.worlds, s.known, s.cached = map[uint32]*world{}, map[uint32]map[string]bool{}, 0
}

// Open opens (creating when absent) the profile store at path. A store
// of the older schema is emptied: the consumer rebuilds it from the log.
func Open(path string) (*Store, error) {
	b, err := OpenSQLite(path)
	if err != nil {
		return nil, err
	}
	return New(b), nil
}

// New keeps profiles in b; Close closes it.
func New(b Backend) *Store {
	st := &Store{db: b, version: -1}
	st.dropCache()
	return st
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Cursor returns the id after which the named consumer resumes.
func (s *Store) Cursor(ctx context.Context, name string) (event.ID, error) {
	c, err := s.db.Cursor(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("read cursor %s: %w", name, err)
	}
	return c, nil
}

// FoldStats counts what one Apply did.
type FoldStats struct {
	Observations, Merges, Conflicts, Rebuilt int
}

// Apply folds evs into profiles and moves the named cursor to after, in
// one transaction. Events without identities change nothing.
func (s *Store) Apply(ctx context.Context, cursor string, after event.ID, evs []*event.Event) (err error) {
	_, err = s.ApplyStats(ctx, cursor, after, evs)
	return err
}

// ApplyStats is Apply, saying what it did.
func (s *Store) ApplyStats(ctx context.Context, cursor string, after event.ID, evs []*event.Event) (st FoldStats, err error) {
	return s.apply(ctx, cursor, nil, after, ObserveAll(evs))
}

// ErrCursorMoved is an ApplyFrom whose cursor is not where it was read:
// another node applied those events.
var ErrCursorMoved = errors.New("the cursor was moved by another writer")

// ApplyFrom is ApplyStats for events after from: it applies nothing and
// fails with ErrCursorMoved unless the named cursor is at from, so that a
// consumer that lost its turn to another node's never folds an event
// twice.
func (s *Store) ApplyFrom(ctx context.Context, cursor string, from, after event.ID, evs []*event.Event) (FoldStats, error) {
	return s.apply(ctx, cursor, &from, after, ObserveAll(evs))
}

// ApplyObservedFrom is ApplyFrom for the observations ObserveAll gave of
// the events: the consumer observes a batch while the one before is
// folded.
func (s *Store) ApplyObservedFrom(ctx context.Context, cursor string, from, after event.ID, obs []Observation) (FoldStats, error) {
	return s.apply(ctx, cursor, &from, after, obs)
}

// ObserveAll returns the observations of evs (none for events without
// identities) in canonical order: a batch is folded in that order, so its
// events are late only if the stored profiles have seen later ones.
func ObserveAll(evs []*event.Event) []Observation {
	obs := make([]Observation, 0, len(evs))
	for _, e := range evs {
		if o, ok := Observe(e); ok {
			// Encoded here, on the reading side of the consumer,
			// while the last batch is folded.
			o.doc = o.document()
			obs = append(obs, o)
		}
	}
	slices.SortFunc(obs, func(a, b Observation) int { return a.order().compare(b.order()) })
	return obs
}

func (s *Store) apply(ctx context.Context, cursor string, from *event.ID, after event.ID, obs []Observation) (st FoldStats, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return st, fmt.Errorf("apply profiles: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
			s.dropCache() // it holds what was not committed
		}
	}()
	if from != nil {
		at, err := tx.Cursor(ctx, cursor)
		if err != nil {
			return st, fmt.Errorf("read cursor %s: %w", cursor, err)
		}
		if at != *from {
			return st, fmt.Errorf("cursor %s at %s, not %s: %w", cursor, at, *from, ErrCursorMoved)
		}
	}
	if tx.Version() != s.version {
		s.dropCache() // another writer came between
	}
	f := &folder{ctx: ctx, tx: tx, worlds: s.worlds, known: s.known}
	for i := range obs {
		st.Observations++
		if err := f.observe(&obs[i]); err != nil {
			return st, fmt.Errorf("apply event %s: %w", obs[i].EventID, err)
		}
	}
	if err := f.flushAll(); err != nil {
		return st, err
	}
	st.Merges, st.Conflicts, st.Rebuilt = f.merges, f.conflicts, f.rebuilt
	if err := tx.SetCursor(ctx, cursor, after); err != nil {
		return st, fmt.Errorf("move cursor: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return st, fmt.Errorf("apply profiles: %w", err)
	}
	s.version = tx.Version() + 1
	s.cached = 0
	for _, w := range s.worlds {
		s.cached += len(w.byID)
	}
	if s.cached > maxCached {
		s.dropCache()
	}
	return st, nil
}

// folder applies the observations of one transaction. It keeps one world
// per project, loading profiles as observations touch them, and writes
// what changed at the end (or before a rebuild, which works on the
// database).
type folder struct {
	ctx    context.Context
	tx     Tx
	worlds map[uint32]*world
	// known: identities whose owner was looked up (owned or not).
	known                      map[uint32]map[string]bool
	merges, conflicts, rebuilt int
}

func (f *folder) world(project uint32) *world {
	w, ok := f.worlds[project]
	if !ok {
		w = newWorld(project)
		f.worlds[project] = w
		f.known[project] = map[string]bool{}
	}
	return w
}

// load makes sure the world knows the owners of ids, loading their
// profiles.
func (f *folder) load(w *world, ids []event.Identity) error {
	known := f.known[w.project]
	for _, id := range ids {
		k := identityKey(id)
		if known[k] {
			continue
		}
		known[k] = true
		if _, ok := w.owner[k]; ok {
			continue
		}
		pid, err := f.tx.Owner(f.ctx, w.project, id.Type, id.Value)
		if err != nil {
			return fmt.Errorf("look up identity: %w", err)
		}
		if pid == "" {
			continue
		}
		if _, ok := w.byID[pid]; ok {
			continue
		}
		st, err := loadState(f.ctx, f.tx, pid)
		if err != nil {
			return err
		}
		w.add(st)
		for k := range st.Identities {
			known[k] = true
		}
	}
	return nil
}

func loadState(ctx context.Context, q Reader, pid string) (*state, error) {
	_, doc, found, err := q.Profile(ctx, pid)
	if err != nil {
		return nil, fmt.Errorf("read profile %s: %w", pid, err)
	}
	if !found {
		return nil, fmt.Errorf("read profile %s: %w", pid, ErrNotFound)
	}
	return decodeState(pid, doc)
}

func decodeState(pid string, doc []byte) (*state, error) {
	st := &state{}
	if err := json.Unmarshal(doc, st); err != nil {
		return nil, fmt.Errorf("read profile %s: %w", pid, err)
	}
	if st.Traits.EventsByKey == nil {
		st.Traits.EventsByKey = map[string]int64{}
	}
	return st, nil
}

// observe folds one observation: in place when it comes in canonical
// order, or when whatever it changes does not depend on order; otherwise
// by rebuilding the profiles it touches.
func (f *folder) observe(o *Observation) error {
	w := f.world(o.ProjectID)
	if err := f.load(w, o.IDs); err != nil {
		return err
	}
	if !f.inOrder(w, o) {
		return f.rebuild(w, o)
	}
	before := [2]int{w.merges, w.conflicts}
	p := w.fold(o)
	f.merges += w.merges - before[0]
	f.conflicts += w.conflicts - before[1]
	return f.insertObservation(o, p.ID)
}

// inOrder reports whether folding o in place gives what a fold of all
// the events of the profiles it touches in canonical order gives. It
// does when o comes after everything those profiles have seen. It does
// too when o is late but one profile p held one of its identities before
// o's place in the order, and p has merged nothing since: at o's place
// the fold would pick p too. Then each other identity of o is p's, or no
// profile's yet (it joins p there as here), or a device or weak one of
// p's first brought in after o's place (o brings it earlier: the fold
// lowers its Since, and the later event that brought it finds it in p
// either way). An identity that no profile holds, or that p got after
// o's place, must be a device or weak one: those are never refused, so
// no event between carried it elsewhere; a strong one may have been
// refused by an event between (a conflict in another profile) that
// would meet it in p, folded after o: another conflict, or a link.
// o's attributes (the later writer wins), counts, sums and wishlist do
// not care when they are folded; its cart change does, between the last
// replace or clear of the cart (before it, that undoes o's change, and
// the fold skips it) and the cart's last change. Anything else could
// have linked, refused or created profiles otherwise, so it makes them
// be rebuilt. So a person with a long
// history is not rebuilt for each event that arrives slightly out of
// order, as concurrent senders make them, nor for each device of theirs
// first seen in such an event.
func (f *folder) inOrder(w *world, o *Observation) bool {
	at := o.order()
	late := false
	for _, id := range o.IDs {
		if pid, ok := w.owner[identityKey(id)]; ok && at.less(w.byID[pid].Last) {
			late = true
			break
		}
	}
	if !late {
		return true
	}
	var p *state
	anchored := false
	for _, id := range o.IDs {
		pid, ok := w.owner[identityKey(id)]
		if !ok {
			continue
		}
		if p != nil && pid != p.ID {
			return false
		}
		p = w.byID[pid]
		// Zero: a state stored before Since was kept.
		s := p.Identities[identityKey(id)]
		if s == nil || s.Since.zero() {
			return false
		}
		if s.Since.less(at) {
			anchored = true
		} else if strong(id) {
			// p got it after o's place: an event between may have been
			// refused it elsewhere, and would meet it in p there.
			return false
		}
	}
	if !anchored {
		return false
	}
	for _, id := range o.IDs {
		if _, ok := w.owner[identityKey(id)]; !ok && strong(id) {
			return false
		}
	}
	if len(p.Merged) > 0 && (p.MergedAt.zero() || !p.MergedAt.less(at)) {
		return false
	}
	if c := &p.Traits; o.Facts.Cart != nil && c.CartAt != nil && at.less(*c.CartAt) && (c.CartBase == nil || !at.less(*c.CartBase)) {
		return false
	}
	return true
}

// strong reports whether id's type is a strong one.
func strong(id event.Identity) bool {
	k, ok := identity.Lookup(id.Type)
	return ok && k.Strength == identity.Strong
}

func (f *folder) insertObservation(o *Observation, pid string) error {
	doc := o.doc
	if doc == nil {
		doc = o.document()
	}
	return f.tx.PutObservation(f.ctx, StoredObservation{EventID: o.EventID, ProjectID: o.ProjectID, ProfileID: pid, Time: o.Time,
		Digest: o.Digest, Key: o.Key, Doc: doc})
}

// flushAll writes every world.
func (f *folder) flushAll() error {
	for _, w := range f.worlds {
		if err := f.flush(w); err != nil {
			return err
		}
	}
	return nil
}

// flush writes what changed in w: profiles, identity owners, profiles
// merged away (an alias, their observations moved to the survivor).
func (f *folder) flush(w *world) error {
	ctx, tx := f.ctx, f.tx
	for from, into := range w.gone {
		if err := tx.DeleteProfile(ctx, from); err != nil {
			return err
		}
		if err := tx.PutAlias(ctx, from, w.project, into); err != nil {
			return err
		}
		if err := tx.RedirectAliases(ctx, from, into); err != nil {
			return err
		}
		if err := tx.MoveObservations(ctx, from, into); err != nil {
			return err
		}
	}
	for pid := range w.dirty {
		doc, err := json.Marshal(w.byID[pid])
		if err != nil {
			return err
		}
		if err := tx.PutProfile(ctx, pid, w.project, doc); err != nil {
			return err
		}
	}
	for pid := range w.created {
		// A profile made again under an id that named another (an
		// erased or rebuilt one) is itself again.
		if err := tx.DeleteAlias(ctx, pid); err != nil {
			return err
		}
	}
	for k, id := range w.moved {
		if err := tx.PutIdentity(ctx, w.project, id.Type, id.Value, w.owner[k]); err != nil {
			return err
		}
	}
	w.dirty, w.gone, w.moved, w.created = map[string]bool{}, map[string]string{}, map[string]event.Identity{}, map[string]bool{}
	return nil
}

// rebuild folds o by rebuilding the profiles it touches, and every
// profile their observations touch, from their observations in canonical
// order.
func (f *folder) rebuild(w *world, o *Observation) error {
	if err := f.flush(w); err != nil {
		return err
	}
	ctx, tx := f.ctx, f.tx
	// The closure: profiles holding an identity of an observation of a
	// profile in the set.
	set := map[string]bool{}
	var queue []string
	for _, id := range o.IDs {
		if pid, ok := w.owner[identityKey(id)]; ok && !set[pid] {
			set[pid] = true
			queue = append(queue, pid)
		}
	}
	obs := []*Observation{o}
	anchors := map[string]event.Identity{}
	// What the old profiles held, so that only what the rebuild adds is
	// counted (merges and conflicts are counters).
	heldMerged, heldConflicts := 0, 0
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		st, err := loadState(ctx, tx, pid)
		if err != nil {
			return err
		}
		anchors[pid] = st.Anchor
		heldMerged += len(st.Merged)
		heldConflicts += len(st.Conflicts)
		for _, c := range st.Contested {
			if live, err := resolveAlias(ctx, tx, w.project, c); err == nil && !set[live] {
				set[live] = true
				queue = append(queue, live)
			}
		}
		batch, err := observationsOf(ctx, tx, pid)
		if err != nil {
			return err
		}
		for _, b := range batch {
			obs = append(obs, b)
			for _, id := range b.IDs {
				owner, err := tx.Owner(ctx, w.project, id.Type, id.Value)
				if err != nil {
					return err
				}
				if owner != "" && !set[owner] {
					set[owner] = true
					queue = append(queue, owner)
				}
			}
		}
	}
	sort.Slice(obs, func(i, j int) bool { return obs[i].order().less(obs[j].order()) })
	// Replay from nothing.
	fresh := newWorld(w.project)
	owners := map[event.ID]string{}
	for _, b := range obs {
		p := fresh.fold(b)
		owners[b.EventID] = p.ID
	}
	// Follow merges: an observation belongs to its profile's survivor.
	for id, pid := range owners {
		for {
			into, ok := fresh.gone[pid]
			if !ok {
				break
			}
			pid = into
		}
		owners[id] = pid
	}
	// Replace the old profiles by the new ones.
	for pid := range set {
		if err := tx.DeleteProfile(ctx, pid); err != nil {
			return err
		}
		if err := tx.DeleteIdentitiesOf(ctx, pid); err != nil {
			return err
		}
	}
	for pid := range set {
		if _, alive := fresh.byID[pid]; alive {
			continue
		}
		into := fresh.gone[pid]
		if into == "" {
			// Gone not by a merge: it names the profile that now holds
			// what created it.
			into = fresh.owner[identityKey(anchors[pid])]
		}
		if into == "" {
			continue
		}
		if err := tx.PutAlias(ctx, pid, w.project, into); err != nil {
			return err
		}
		if err := tx.RedirectAliases(ctx, pid, into); err != nil {
			return err
		}
	}
	for k := range fresh.owner {
		fresh.moved[k] = identityFromKey(k)
	}
	for pid := range fresh.byID {
		fresh.dirty[pid], fresh.created[pid] = true, true
	}
	fresh.gone = map[string]string{}
	if err := f.flush(fresh); err != nil {
		return err
	}
	for _, b := range obs {
		if err := f.insertObservation(b, owners[b.EventID]); err != nil {
			return err
		}
	}
	f.rebuilt += len(set)
	merged, conflicts := 0, 0
	for _, p := range fresh.byID {
		merged += len(p.Merged)
		conflicts += len(p.Conflicts)
	}
	f.merges += max(0, merged-heldMerged)
	f.conflicts += max(0, conflicts-heldConflicts)
	// The cached world is stale: start it over.
	delete(f.worlds, w.project)
	delete(f.known, w.project)
	f.world(w.project)
	return nil
}

func identityFromKey(k string) event.Identity {
	t, v, _ := strings.Cut(k, "\x00")
	return event.Identity{Type: t, Value: v}
}

// observationsOf reads the observations of a profile.
func observationsOf(ctx context.Context, q Reader, pid string) ([]*Observation, error) {
	stored, err := q.Observations(ctx, pid)
	if err != nil {
		return nil, fmt.Errorf("read observations: %w", err)
	}
	out := make([]*Observation, 0, len(stored))
	for _, so := range stored {
		o := &Observation{}
		if err := json.Unmarshal(so.Doc, o); err != nil {
			return nil, fmt.Errorf("read observation %s: %w", so.EventID, err)
		}
		o.EventID, o.ProjectID, o.Time, o.Digest, o.Key = so.EventID, so.ProjectID, so.Time, so.Digest, so.Key
		out = append(out, o)
	}
	return out, nil
}

// Profile is one person as the API shows it.
type Profile struct {
	ID        string    `json:"id"`
	ProjectID uint32    `json:"projectId"`
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
	// Merged lists the ids of profiles merged into this one: each still
	// names it.
	Merged     []string             `json:"merged,omitempty"`
	Identities []Identity           `json:"identities"`
	Attributes map[string]Attribute `json:"attributes"`
	Traits     Traits               `json:"traits"`
	Conflicts  []Conflict           `json:"conflicts"`
}

// Identity is one way the person is known, with when it was first and
// last seen (event time).
type Identity struct {
	Type      string    `json:"type"`
	Value     string    `json:"value"`
	Strength  string    `json:"strength"`
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
}

// Attribute is a value and the time of the event that set it.
type Attribute struct {
	Value   json.RawMessage `json:"value"`
	Time    time.Time       `json:"time"`
	EventID event.ID        `json:"eventId"`
}

// Traits are computed from every event of the person.
type Traits struct {
	FirstSeen    time.Time         `json:"firstSeen"`
	LastSeen     time.Time         `json:"lastSeen"`
	Events       int64             `json:"events"`
	EventsByKey  map[string]int64  `json:"eventsByKey"`
	Revenue      map[string]string `json:"revenue"`
	Purchases    int64             `json:"purchases"`
	LastPurchase *LastPurchase     `json:"lastPurchase,omitempty"`
	Cart         []CartItem        `json:"cart"`
	Wishlist     []string          `json:"wishlist"`
}

// LastPurchase is the person's latest order.
type LastPurchase struct {
	Purchase
	Time    time.Time `json:"time"`
	Key     string    `json:"key"`
	EventID event.ID  `json:"eventId"`
}

// Conflict is a link an event made that the merge rule refused: linking
// the identity Linked would have put a second value (Value) of the strong
// type Type beside the profile's own (Held). Other is the profile that
// holds Linked, when one does.
type Conflict struct {
	EventID event.ID       `json:"eventId"`
	Time    time.Time      `json:"time"`
	Linked  event.Identity `json:"linked"`
	Type    string         `json:"type"`
	Held    string         `json:"held"`
	Value   string         `json:"value"`
	Other   string         `json:"otherProfile,omitempty"`
}

func ms(t int64) time.Time { return time.UnixMilli(t).UTC() }

func (s *state) profile() *Profile {
	p := &Profile{ID: s.ID, ProjectID: s.ProjectID, FirstSeen: ms(s.First.Time), LastSeen: ms(s.Last.Time), Merged: s.Merged,
		Attributes: map[string]Attribute{}, Conflicts: []Conflict{}}
	for _, i := range s.Identities {
		k, _ := identity.Lookup(i.Type)
		p.Identities = append(p.Identities, Identity{Type: i.Type, Value: i.Value, Strength: k.Strength.String(), FirstSeen: ms(i.First), LastSeen: ms(i.Last)})
	}
	sort.Slice(p.Identities, func(a, b int) bool {
		return identity.Less(event.Identity{Type: p.Identities[a].Type, Value: p.Identities[a].Value},
			event.Identity{Type: p.Identities[b].Type, Value: p.Identities[b].Value})
	})
	for name, a := range s.Attrs {
		p.Attributes[name] = Attribute{Value: a.Value, Time: ms(a.At.Time), EventID: a.At.ID}
	}
	t := &s.Traits
	p.Traits = Traits{FirstSeen: p.FirstSeen, LastSeen: p.LastSeen, Events: t.Events, EventsByKey: t.EventsByKey,
		Revenue: t.Revenue, Purchases: t.Purchases, Cart: t.Cart, Wishlist: t.Wishlist}
	if p.Traits.Revenue == nil {
		p.Traits.Revenue = map[string]string{}
	}
	if p.Traits.Cart == nil {
		p.Traits.Cart = []CartItem{}
	}
	if p.Traits.Wishlist == nil {
		p.Traits.Wishlist = []string{}
	}
	if lp := t.LastPurchase; lp != nil {
		p.Traits.LastPurchase = &LastPurchase{Purchase: lp.Purchase, Time: ms(lp.At.Time), Key: lp.Key, EventID: lp.EventID}
	}
	for i := len(s.Conflicts) - 1; i >= 0; i-- { // newest first
		c := s.Conflicts[i]
		p.Conflicts = append(p.Conflicts, Conflict{EventID: c.EventID, Time: ms(c.Time), Linked: c.Linked, Type: c.Type, Held: c.Held, Value: c.Value, Other: c.Other})
	}
	return p
}

// ErrNotFound means no profile holds the identity.
var ErrNotFound = errors.New("no profile")

// LookupProfile is the identity type that looks a profile up by its id
// (a merged profile's id names its survivor).
const LookupProfile = "profile"

// resolve returns the id of the live profile that (idType, value) names.
func (s *Store) resolve(ctx context.Context, q Reader, projectID uint32, idType, value string) (string, error) {
	if idType != LookupProfile {
		id, err := q.Owner(ctx, projectID, idType, value)
		if err != nil {
			return "", fmt.Errorf("find profile: %w", err)
		}
		if id == "" {
			return "", ErrNotFound
		}
		return id, nil
	}
	return resolveAlias(ctx, q, projectID, value)
}

// resolveAlias follows the aliases of a profile id to a live profile.
func resolveAlias(ctx context.Context, q Reader, projectID uint32, id string) (string, error) {
	for hop := 0; hop < 64; hop++ {
		project, _, found, err := q.Profile(ctx, id)
		if err != nil {
			return "", fmt.Errorf("find profile: %w", err)
		}
		if found {
			if project != projectID {
				return "", ErrNotFound
			}
			return id, nil
		}
		into, err := q.AliasInto(ctx, projectID, id)
		if err != nil {
			return "", fmt.Errorf("find profile: %w", err)
		}
		if into == "" {
			return "", ErrNotFound
		}
		id = into
	}
	return "", ErrNotFound
}

// Find returns the profile that holds identity (idType, value) in
// project, or, for idType "profile", the profile of that id (a merged
// profile's id names its survivor).
func (s *Store) Find(ctx context.Context, projectID uint32, idType, value string) (*Profile, error) {
	id, err := s.resolve(ctx, s.db, projectID, idType, value)
	if err != nil {
		return nil, err
	}
	st, err := loadState(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	return st.profile(), nil
}

// TimelineQuery pages a profile's timeline, newest first.
type TimelineQuery struct {
	// Before is the cursor: events before (time, id) in the timeline's
	// order; zero starts at the newest.
	BeforeTime int64
	BeforeID   event.ID
	// KeyGlob selects keys (event.MatchGlob).
	KeyGlob string
	// Limit caps the page (default 50, at most 1000).
	Limit int
}

// TimelineEntry is one event of a person's timeline.
type TimelineEntry struct {
	EventID event.ID
	Time    int64
	Key     string
}

// Timeline returns the ids of the profile's events, newest first (by
// event time, then id), from every dialect.
func (s *Store) Timeline(ctx context.Context, projectID uint32, idType, value string, q TimelineQuery) (string, []TimelineEntry, error) {
	id, err := s.resolve(ctx, s.db, projectID, idType, value)
	if err != nil {
		return "", nil, err
	}
	if q.Limit <= 0 {
		q.Limit = 50
	}
	q.Limit = min(q.Limit, 1000)
	out, err := s.db.Timeline(ctx, id, q)
	if err != nil {
		return "", nil, fmt.Errorf("read timeline: %w", err)
	}
	return id, out, nil
}

// eventsOf returns the ids of a profile's events.
func (s *Store) eventsOf(ctx context.Context, pid string) ([]event.ID, error) {
	ids, err := s.db.EventsOf(ctx, pid)
	if err != nil {
		return nil, fmt.Errorf("read observations: %w", err)
	}
	return ids, nil
}

// Erased says what an erasure removed.
type Erased struct {
	Profile    string     `json:"profile"`
	Profiles   int        `json:"profiles"`
	Identities int        `json:"identities"`
	Attributes int        `json:"attributes"`
	Events     []event.ID `json:"-"`
}

// Erase removes the profile that (idType, value) names: the profile, the
// ids of profiles merged into it, its identities, attributes and
// observations. It returns the ids of the person's events, for the log
// to delete.
func (s *Store) Erase(ctx context.Context, projectID uint32, idType, value string) (er Erased, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropCache()
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return er, fmt.Errorf("erase profile: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	id, err := s.resolve(ctx, tx, projectID, idType, value)
	if err != nil {
		return er, err
	}
	st, err := loadState(ctx, tx, id)
	if err != nil {
		return er, err
	}
	er.Profile, er.Profiles, er.Identities, er.Attributes = id, 1+len(st.Merged), len(st.Identities), len(st.Attrs)
	obs, err := tx.Observations(ctx, id)
	if err != nil {
		return er, fmt.Errorf("erase profile: %w", err)
	}
	for _, o := range obs {
		er.Events = append(er.Events, o.EventID)
	}
	sortIDs(er.Events)
	for _, del := range []func(context.Context, string) error{tx.DeleteObservationsOf, tx.DeleteIdentitiesOf, tx.DeleteAliasesInto, tx.DeleteProfile} {
		if err := del(ctx, id); err != nil {
			return er, fmt.Errorf("erase profile: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return er, fmt.Errorf("erase profile: %w", err)
	}
	s.version = tx.Version() + 1
	return er, nil
}

// IdentityTypes lists the identity types a profile can be looked up by.
func IdentityTypes() string {
	var types []string
	for _, k := range identity.Kinds() {
		types = append(types, k.Type)
	}
	return strings.Join(append(types, LookupProfile), ", ")
}
