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
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/identity"
	"github.com/sluicehq/sluice/internal/sqlitefile"
)

// Store holds profiles in SQLite (profiles.db in the data directory).
type Store struct {
	db *sql.DB

	// mu serialises the writers (the consumer's Apply, Erase). The folded
	// profiles of recent batches stay in memory (worlds) so that a person
	// seen again is not read back; any failure or erasure drops them.
	mu     sync.Mutex
	worlds map[uint32]*world
	known  map[uint32]map[string]bool
	cached int
}

// maxCached bounds the profiles kept in memory between batches.
const maxCached = 100_000

func (s *Store) dropCache() {
	s.worlds, s.known, s.cached = map[uint32]*world{}, map[uint32]map[string]bool{}, 0
}

// schemaVersion 2 replaced the s2s-only profiles of version 1; a version
// 1 database is emptied and rebuilt from the log.
const schemaVersion = 2

const schema = `
CREATE TABLE IF NOT EXISTS profiles (
	id         TEXT    PRIMARY KEY,   -- prf_…: named after the identity that created it
	project_id INTEGER NOT NULL,
	doc        TEXT    NOT NULL       -- the fold's state (fold.go), JSON
);
CREATE TABLE IF NOT EXISTS identities (
	project_id INTEGER NOT NULL,
	type       TEXT    NOT NULL,
	value      TEXT    NOT NULL,
	profile_id TEXT    NOT NULL,
	PRIMARY KEY (project_id, type, value)
);
CREATE INDEX IF NOT EXISTS identities_profile ON identities(profile_id);
-- What each event with identities said of its person, and the profile
-- it belongs to: the source a profile is rebuilt from, and its timeline.
CREATE TABLE IF NOT EXISTS observations (
	event_id   INTEGER PRIMARY KEY,
	project_id INTEGER NOT NULL,
	profile_id TEXT    NOT NULL,
	time       INTEGER NOT NULL, -- event time, Unix ms
	digest     TEXT    NOT NULL,
	key        TEXT    NOT NULL,
	doc        TEXT    NOT NULL  -- ids, attributes, facts
);
CREATE INDEX IF NOT EXISTS observations_profile ON observations(profile_id, time, event_id);
-- Ids of profiles that were merged into (or rebuilt as) another.
CREATE TABLE IF NOT EXISTS aliases (
	id         TEXT    PRIMARY KEY,
	project_id INTEGER NOT NULL,
	into_id    TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
	name  TEXT PRIMARY KEY,
	after INTEGER NOT NULL
);
`

// Open opens (creating when absent) the profile store at path. A store
// of the older schema is emptied: the consumer rebuilds it from the log.
func Open(path string) (*Store, error) {
	v := url.Values{}
	v.Set("_journal_mode", "WAL")
	v.Set("_synchronous", "NORMAL") // the log is the source: a lost batch is re-applied from the cursor
	v.Set("_busy_timeout", "10000")
	v.Set("_txlock", "immediate")
	// A page cache for the profiles the consumer keeps touching (64 MiB).
	v.Set("_cache_size", "-65536")
	// Kept -wal and -shm files let a start on a full disk open it.
	db := sqlitefile.Open("file:"+(&url.URL{Path: path}).EscapedPath()+"?"+v.Encode(), sqlitefile.DefaultWALLimit)
	db.SetMaxOpenConns(1)
	var version int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil {
		db.Close()
		return nil, fmt.Errorf("open profiles %s: %w", path, err)
	}
	switch {
	case version > schemaVersion:
		db.Close()
		return nil, fmt.Errorf("open profiles %s: schema version %d is newer than this binary's %d", path, version, schemaVersion)
	case version < schemaVersion:
		// Version 1 (or none): s2s-only profiles with integer ids. The
		// log is the source: start over and refold it.
		if _, err := db.Exec(`DROP TABLE IF EXISTS attributes; DROP TABLE IF EXISTS identities; DROP TABLE IF EXISTS profiles;
			DROP TABLE IF EXISTS observations; DROP TABLE IF EXISTS aliases; DROP TABLE IF EXISTS cursors;`); err != nil {
			db.Close()
			return nil, fmt.Errorf("upgrade profiles %s: %w", path, err)
		}
		if _, err := db.Exec(schema + fmt.Sprintf("PRAGMA user_version=%d;", schemaVersion)); err != nil {
			db.Close()
			return nil, fmt.Errorf("open profiles %s: %w", path, err)
		}
	}
	st := &Store{db: db}
	st.dropCache()
	return st, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Cursor returns the id after which the named consumer resumes.
func (s *Store) Cursor(ctx context.Context, name string) (event.ID, error) {
	var after int64
	err := s.db.QueryRowContext(ctx, `SELECT after FROM cursors WHERE name = ?`, name).Scan(&after)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read cursor %s: %w", name, err)
	}
	return event.ID(after), nil
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
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return st, fmt.Errorf("apply profiles: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
			s.dropCache() // it holds what was not committed
		}
	}()
	f := &folder{ctx: ctx, tx: tx, worlds: s.worlds, known: s.known, stmts: map[string]*sql.Stmt{}}
	// A batch is folded in canonical order: its events are late only if
	// the stored profiles have seen later ones.
	obs := make([]Observation, 0, len(evs))
	for _, e := range evs {
		if o, ok := Observe(e); ok {
			obs = append(obs, o)
		}
	}
	sort.Slice(obs, func(i, j int) bool { return obs[i].order().less(obs[j].order()) })
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
	if _, err := tx.ExecContext(ctx, `INSERT INTO cursors(name, after) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET after = excluded.after`,
		cursor, int64(after)); err != nil {
		return st, fmt.Errorf("move cursor: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return st, fmt.Errorf("apply profiles: %w", err)
	}
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
	tx     *sql.Tx
	stmts  map[string]*sql.Stmt // prepared in tx, by query
	worlds map[uint32]*world
	// known: identities whose owner was looked up (owned or not).
	known                      map[uint32]map[string]bool
	merges, conflicts, rebuilt int
}

// exec and queryRow run a statement prepared once per transaction.
func (f *folder) stmt(query string) (*sql.Stmt, error) {
	if st, ok := f.stmts[query]; ok {
		return st, nil
	}
	st, err := f.tx.PrepareContext(f.ctx, query)
	if err != nil {
		return nil, err
	}
	f.stmts[query] = st
	return st, nil
}

func (f *folder) exec(query string, args ...any) error {
	st, err := f.stmt(query)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(f.ctx, args...)
	return err
}

func (f *folder) queryRow(query string, args ...any) *sql.Row {
	st, err := f.stmt(query)
	if err != nil {
		return f.tx.QueryRowContext(f.ctx, query, args...) // reports err on Scan
	}
	return st.QueryRowContext(f.ctx, args...)
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
		var pid string
		err := f.queryRow(`SELECT profile_id FROM identities WHERE project_id = ? AND type = ? AND value = ?`,
			int64(w.project), id.Type, id.Value).Scan(&pid)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return fmt.Errorf("look up identity: %w", err)
		}
		if _, ok := w.byID[pid]; ok {
			continue
		}
		var doc string
		if err := f.queryRow(`SELECT doc FROM profiles WHERE id = ?`, pid).Scan(&doc); err != nil {
			return fmt.Errorf("read profile %s: %w", pid, err)
		}
		st, err := decodeState(pid, doc)
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

func loadState(ctx context.Context, q querier, pid string) (*state, error) {
	var doc string
	if err := q.QueryRowContext(ctx, `SELECT doc FROM profiles WHERE id = ?`, pid).Scan(&doc); err != nil {
		return nil, fmt.Errorf("read profile %s: %w", pid, err)
	}
	return decodeState(pid, doc)
}

func decodeState(pid, doc string) (*state, error) {
	st := &state{}
	if err := json.Unmarshal([]byte(doc), st); err != nil {
		return nil, fmt.Errorf("read profile %s: %w", pid, err)
	}
	if st.Traits.EventsByKey == nil {
		st.Traits.EventsByKey = map[string]int64{}
	}
	return st, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
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

// inOrder reports whether o comes, in canonical order, after everything
// the profiles it touches have seen: then folding it in place gives what
// a fold of all their events in canonical order gives. Anything earlier
// could have linked, refused or created profiles otherwise, so it makes
// them be rebuilt.
func (f *folder) inOrder(w *world, o *Observation) bool {
	at := o.order()
	for _, id := range o.IDs {
		if pid, ok := w.owner[identityKey(id)]; ok && at.less(w.byID[pid].Last) {
			return false
		}
	}
	return true
}

func (f *folder) insertObservation(o *Observation, pid string) error {
	doc, err := json.Marshal(o)
	if err != nil {
		return err
	}
	return f.exec(`INSERT INTO observations(event_id, project_id, profile_id, time, digest, key, doc) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(event_id) DO UPDATE SET profile_id = excluded.profile_id`,
		int64(o.EventID), int64(o.ProjectID), pid, o.Time, o.Digest, o.Key, string(doc))
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
		if _, err := tx.ExecContext(ctx, `DELETE FROM profiles WHERE id = ?`, from); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO aliases(id, project_id, into_id) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET into_id = excluded.into_id`,
			from, int64(w.project), into); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE aliases SET into_id = ? WHERE into_id = ?`, into, from); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE observations SET profile_id = ? WHERE profile_id = ?`, into, from); err != nil {
			return err
		}
	}
	for pid := range w.dirty {
		doc, err := json.Marshal(w.byID[pid])
		if err != nil {
			return err
		}
		if err := f.exec(`INSERT INTO profiles(id, project_id, doc) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc`,
			pid, int64(w.project), string(doc)); err != nil {
			return err
		}
	}
	for pid := range w.created {
		// A profile made again under an id that named another (an
		// erased or rebuilt one) is itself again.
		if err := f.exec(`DELETE FROM aliases WHERE id = ?`, pid); err != nil {
			return err
		}
	}
	for k, id := range w.moved {
		if err := f.exec(`INSERT INTO identities(project_id, type, value, profile_id) VALUES (?, ?, ?, ?)
			ON CONFLICT(project_id, type, value) DO UPDATE SET profile_id = excluded.profile_id`,
			int64(w.project), id.Type, id.Value, w.owner[k]); err != nil {
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
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		st, err := loadState(ctx, tx, pid)
		if err != nil {
			return err
		}
		anchors[pid] = st.Anchor
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
				var owner string
				err := tx.QueryRowContext(ctx, `SELECT profile_id FROM identities WHERE project_id = ? AND type = ? AND value = ?`,
					int64(w.project), id.Type, id.Value).Scan(&owner)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
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
		for _, stmt := range []string{`DELETE FROM profiles WHERE id = ?`, `DELETE FROM identities WHERE profile_id = ?`} {
			if _, err := tx.ExecContext(ctx, stmt, pid); err != nil {
				return err
			}
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
		if _, err := tx.ExecContext(ctx, `INSERT INTO aliases(id, project_id, into_id) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET into_id = excluded.into_id`,
			pid, int64(w.project), into); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE aliases SET into_id = ? WHERE into_id = ?`, into, pid); err != nil {
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
	f.merges += fresh.merges
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
func observationsOf(ctx context.Context, q querier, pid string) ([]*Observation, error) {
	rows, err := q.QueryContext(ctx, `SELECT event_id, project_id, time, digest, key, doc FROM observations WHERE profile_id = ?`, pid)
	if err != nil {
		return nil, fmt.Errorf("read observations: %w", err)
	}
	defer rows.Close()
	var out []*Observation
	for rows.Next() {
		o := &Observation{}
		var id, project int64
		var doc string
		if err := rows.Scan(&id, &project, &o.Time, &o.Digest, &o.Key, &doc); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(doc), o); err != nil {
			return nil, err
		}
		o.EventID, o.ProjectID = event.ID(id), uint32(project)
		out = append(out, o)
	}
	return out, rows.Err()
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
func (s *Store) resolve(ctx context.Context, q querier, projectID uint32, idType, value string) (string, error) {
	if idType != LookupProfile {
		var id string
		err := q.QueryRowContext(ctx, `SELECT profile_id FROM identities WHERE project_id = ? AND type = ? AND value = ?`,
			int64(projectID), idType, value).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return "", ErrNotFound
		}
		if err != nil {
			return "", fmt.Errorf("find profile: %w", err)
		}
		return id, nil
	}
	return resolveAlias(ctx, q, projectID, value)
}

// resolveAlias follows the aliases of a profile id to a live profile.
func resolveAlias(ctx context.Context, q querier, projectID uint32, id string) (string, error) {
	for hop := 0; hop < 64; hop++ {
		var project int64
		err := q.QueryRowContext(ctx, `SELECT project_id FROM profiles WHERE id = ?`, id).Scan(&project)
		if err == nil {
			if uint32(project) != projectID {
				return "", ErrNotFound
			}
			return id, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return "", fmt.Errorf("find profile: %w", err)
		}
		var into string
		err = q.QueryRowContext(ctx, `SELECT into_id FROM aliases WHERE id = ? AND project_id = ?`, id, int64(projectID)).Scan(&into)
		if errors.Is(err, sql.ErrNoRows) {
			return "", ErrNotFound
		}
		if err != nil {
			return "", fmt.Errorf("find profile: %w", err)
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
	stmt := `SELECT event_id, time, key FROM observations WHERE profile_id = ?`
	args := []any{id}
	if q.BeforeTime != 0 || q.BeforeID != 0 {
		stmt += ` AND (time < ? OR (time = ? AND event_id < ?))`
		args = append(args, q.BeforeTime, q.BeforeTime, int64(q.BeforeID))
	}
	if q.KeyGlob != "" {
		stmt += ` AND key GLOB ?`
		args = append(args, event.SQLiteGlob(q.KeyGlob))
	}
	stmt += ` ORDER BY time DESC, event_id DESC LIMIT ?`
	args = append(args, q.Limit)
	rows, err := s.db.QueryContext(ctx, stmt, args...)
	if err != nil {
		return "", nil, fmt.Errorf("read timeline: %w", err)
	}
	defer rows.Close()
	var out []TimelineEntry
	for rows.Next() {
		var e TimelineEntry
		var eid int64
		if err := rows.Scan(&eid, &e.Time, &e.Key); err != nil {
			return "", nil, err
		}
		e.EventID = event.ID(eid)
		out = append(out, e)
	}
	return id, out, rows.Err()
}

// eventsOf returns the ids of a profile's events.
func (s *Store) eventsOf(ctx context.Context, pid string) ([]event.ID, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT event_id FROM observations WHERE profile_id = ? ORDER BY event_id`, pid)
	if err != nil {
		return nil, fmt.Errorf("read observations: %w", err)
	}
	defer rows.Close()
	var ids []event.ID
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, event.ID(id))
	}
	return ids, rows.Err()
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
	tx, err := s.db.BeginTx(ctx, nil)
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
	rows, err := tx.QueryContext(ctx, `SELECT event_id FROM observations WHERE profile_id = ? ORDER BY event_id`, id)
	if err != nil {
		return er, fmt.Errorf("erase profile: %w", err)
	}
	for rows.Next() {
		var eid int64
		if err := rows.Scan(&eid); err != nil {
			rows.Close()
			return er, err
		}
		er.Events = append(er.Events, event.ID(eid))
	}
	rows.Close()
	for _, stmt := range []string{
		`DELETE FROM observations WHERE profile_id = ?`,
		`DELETE FROM identities WHERE profile_id = ?`,
		`DELETE FROM aliases WHERE into_id = ?`,
		`DELETE FROM profiles WHERE id = ?`,
	} {
		if _, err := tx.ExecContext(ctx, stmt, id); err != nil {
			return er, fmt.Errorf("erase profile: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return er, fmt.Errorf("erase profile: %w", err)
	}
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
