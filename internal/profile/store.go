// Package profile folds the identities and attributes that events carry
// into user profiles. A consumer follows the event log from a persisted
// cursor; applying a batch and moving the cursor happen in one
// transaction, so every event is applied exactly once, whatever crashes.
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
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/identity"
	"github.com/sluicehq/sluice/internal/sqlitefile"
)

// Store holds profiles in SQLite (profiles.db in the data directory).
type Store struct {
	db *sql.DB
}

const schema = `
CREATE TABLE IF NOT EXISTS profiles (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	project_id  INTEGER NOT NULL,
	created_at  INTEGER NOT NULL, -- server time, Unix ms
	updated_at  INTEGER NOT NULL,
	merged_into INTEGER           -- set when this profile was merged into another
);
CREATE TABLE IF NOT EXISTS identities (
	project_id INTEGER NOT NULL,
	type       TEXT    NOT NULL,
	value      TEXT    NOT NULL,
	profile_id INTEGER NOT NULL,
	first_seen INTEGER NOT NULL, -- event time, Unix ms
	last_seen  INTEGER NOT NULL,
	PRIMARY KEY (project_id, type, value)
);
CREATE INDEX IF NOT EXISTS identities_profile ON identities(profile_id);
CREATE TABLE IF NOT EXISTS attributes (
	profile_id INTEGER NOT NULL,
	name       TEXT    NOT NULL,
	value      TEXT    NOT NULL, -- JSON
	time       INTEGER NOT NULL, -- the event time that set it, Unix ms
	event_id   INTEGER NOT NULL, -- the event that set it (breaks ties)
	PRIMARY KEY (profile_id, name)
);
CREATE TABLE IF NOT EXISTS cursors (
	name  TEXT PRIMARY KEY,
	after INTEGER NOT NULL
);
`

// Open opens (creating when absent) the profile store at path.
func Open(path string) (*Store, error) {
	v := url.Values{}
	v.Set("_journal_mode", "WAL")
	v.Set("_synchronous", "NORMAL") // the log is the source: a lost batch is re-applied from the cursor
	v.Set("_busy_timeout", "10000")
	v.Set("_txlock", "immediate")
	// Kept -wal and -shm files let a start on a full disk open it.
	db := sqlitefile.Open("file:"+(&url.URL{Path: path}).EscapedPath()+"?"+v.Encode(), sqlitefile.DefaultWALLimit)
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open profiles %s: %w", path, err)
	}
	return &Store{db: db}, nil
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

// Apply folds evs into profiles and moves the named cursor to after, in
// one transaction.
func (s *Store) Apply(ctx context.Context, cursor string, after event.ID, evs []*event.Event) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("apply profiles: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for _, e := range evs {
		if err := applyEvent(ctx, tx, e); err != nil {
			return fmt.Errorf("apply event %s: %w", e.ID, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO cursors(name, after) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET after = excluded.after`,
		cursor, int64(after)); err != nil {
		return fmt.Errorf("move cursor: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("apply profiles: %w", err)
	}
	return nil
}

// strong identities name one user: two profiles that share one are the
// same user. Two different custom user ids are never the same user.
var strong = map[string]bool{identity.TypeCustomUserID: true, identity.TypeMetrixUserID: true}

// update is what one event says about its user.
type update struct {
	ids    []event.Identity
	attrs  map[string]json.RawMessage
	create bool // the event may register a new user
}

// extract reads an event's identities and attributes. Only s2s user
// messages register users and carry attributes today; other dialects will
// join here.
func extract(e *event.Event) (update, bool) {
	if e.Key != "in.s2s.user" || len(e.Identities) == 0 {
		return update{}, false
	}
	u := update{ids: e.Identities, attrs: map[string]json.RawMessage{}, create: true}
	var msg map[string]json.RawMessage
	if err := json.Unmarshal(e.Data, &msg); err != nil {
		return u, true
	}
	for k, v := range msg {
		switch k {
		case "type", "id", "time":
		case "customAttributes":
			var ca map[string]json.RawMessage
			if json.Unmarshal(v, &ca) == nil {
				for ck, cv := range ca {
					u.attrs["customAttributes."+ck] = cv
				}
			}
		case "phone":
			u.attrs["phoneNumber"] = v
		default:
			u.attrs[k] = v
		}
	}
	return u, true
}

func applyEvent(ctx context.Context, tx *sql.Tx, e *event.Event) error {
	u, ok := extract(e)
	if !ok {
		return nil
	}
	pid := int64(e.ProjectID)
	owner := func(typ, value string) (int64, bool, error) {
		var id int64
		err := tx.QueryRowContext(ctx, `SELECT profile_id FROM identities WHERE project_id = ? AND type = ? AND value = ?`, pid, typ, value).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, false, nil
		}
		return id, err == nil, err
	}
	var custom, device *event.Identity
	for i := range u.ids {
		switch u.ids[i].Type {
		case identity.TypeCustomUserID:
			custom = &u.ids[i]
		case identity.TypeMetrixUserID:
			device = &u.ids[i]
		}
	}
	// The profile: the custom user id's, else the device's.
	var profileID int64
	var found bool
	var err error
	switch {
	case custom != nil:
		profileID, found, err = owner(custom.Type, custom.Value)
	case device != nil:
		profileID, found, err = owner(device.Type, device.Value)
	}
	if err != nil {
		return err
	}
	if !found {
		if !u.create {
			return nil
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO profiles(project_id, created_at, updated_at) VALUES (?, ?, ?)`, pid, e.ReceivedAt, e.ReceivedAt)
		if err != nil {
			return err
		}
		if profileID, err = res.LastInsertId(); err != nil {
			return err
		}
	}
	// A device seen with this custom user id joins the profile: an
	// anonymous device profile is merged in; a device that belonged to
	// another known user moves to this one (the latest link wins).
	if custom != nil && device != nil {
		other, ok, err := owner(device.Type, device.Value)
		if err != nil {
			return err
		}
		if ok && other != profileID {
			var named int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM identities WHERE profile_id = ? AND type = ?`, other, identity.TypeCustomUserID).Scan(&named); err != nil {
				return err
			}
			if named == 0 {
				if err := merge(ctx, tx, other, profileID); err != nil {
					return err
				}
			}
		}
	}
	for _, id := range u.ids {
		o, ok, err := owner(id.Type, id.Value)
		if err != nil {
			return err
		}
		switch {
		case !ok:
			_, err = tx.ExecContext(ctx, `INSERT INTO identities(project_id, type, value, profile_id, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?)`,
				pid, id.Type, id.Value, profileID, e.Time, e.Time)
		case o == profileID || strong[id.Type] && id.Type != identity.TypeCustomUserID:
			// Ours, or a device moving to this user.
			_, err = tx.ExecContext(ctx, `UPDATE identities SET profile_id = ?, last_seen = max(last_seen, ?), first_seen = min(first_seen, ?)
				WHERE project_id = ? AND type = ? AND value = ?`, profileID, e.Time, e.Time, pid, id.Type, id.Value)
		default:
			// A phone or e-mail hash another profile already holds stays
			// there: weak identities never merge users.
		}
		if err != nil {
			return err
		}
	}
	for name, value := range u.attrs {
		if err := setAttribute(ctx, tx, profileID, name, string(value), e.Time, int64(e.ID)); err != nil {
			return err
		}
	}
	_, err = tx.ExecContext(ctx, `UPDATE profiles SET updated_at = max(updated_at, ?) WHERE id = ?`, e.ReceivedAt, profileID)
	return err
}

// setAttribute writes an attribute unless the profile holds a newer value:
// last writer wins by event time (then by event id), not by arrival.
func setAttribute(ctx context.Context, tx *sql.Tx, profileID int64, name, value string, t, eventID int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO attributes(profile_id, name, value, time, event_id) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(profile_id, name) DO UPDATE SET value = excluded.value, time = excluded.time, event_id = excluded.event_id
		WHERE excluded.time > attributes.time OR (excluded.time = attributes.time AND excluded.event_id > attributes.event_id)`,
		profileID, name, value, t, eventID)
	return err
}

// merge moves profile from's identities and attributes into into.
func merge(ctx context.Context, tx *sql.Tx, from, into int64) error {
	if _, err := tx.ExecContext(ctx, `UPDATE identities SET profile_id = ? WHERE profile_id = ?`, into, from); err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, `SELECT name, value, time, event_id FROM attributes WHERE profile_id = ?`, from)
	if err != nil {
		return err
	}
	type attr struct {
		name, value string
		t, id       int64
	}
	var attrs []attr
	for rows.Next() {
		var a attr
		if err := rows.Scan(&a.name, &a.value, &a.t, &a.id); err != nil {
			rows.Close()
			return err
		}
		attrs = append(attrs, a)
	}
	rows.Close()
	for _, a := range attrs {
		if err := setAttribute(ctx, tx, into, a.name, a.value, a.t, a.id); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM attributes WHERE profile_id = ?`, from); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE profiles SET merged_into = ? WHERE id = ?`, into, from)
	return err
}

// Profile is one user as the API shows it.
type Profile struct {
	ID         int64                `json:"id"`
	ProjectID  uint32               `json:"projectId"`
	CreatedAt  time.Time            `json:"createdAt"`
	UpdatedAt  time.Time            `json:"updatedAt"`
	Identities []Identity           `json:"identities"`
	Attributes map[string]Attribute `json:"attributes"`
}

// Identity is one way the user is known, with when it was first and last
// seen (event time).
type Identity struct {
	Type      string    `json:"type"`
	Value     string    `json:"value"`
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
}

// Attribute is a value and the event time that set it.
type Attribute struct {
	Value json.RawMessage `json:"value"`
	Time  time.Time       `json:"time"`
}

// ErrNotFound means no profile holds the identity.
var ErrNotFound = errors.New("no profile")

// Find returns the profile that holds identity (idType, value) in project.
func (s *Store) Find(ctx context.Context, projectID uint32, idType, value string) (*Profile, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT profile_id FROM identities WHERE project_id = ? AND type = ? AND value = ?`,
		int64(projectID), idType, value).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("find profile: %w", err)
	}
	p := &Profile{ID: id, ProjectID: projectID, Attributes: map[string]Attribute{}}
	var created, updated int64
	if err := s.db.QueryRowContext(ctx, `SELECT created_at, updated_at FROM profiles WHERE id = ?`, id).Scan(&created, &updated); err != nil {
		return nil, fmt.Errorf("read profile %d: %w", id, err)
	}
	p.CreatedAt, p.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	rows, err := s.db.QueryContext(ctx, `SELECT type, value, first_seen, last_seen FROM identities WHERE profile_id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("read identities: %w", err)
	}
	for rows.Next() {
		var i Identity
		var first, last int64
		if err := rows.Scan(&i.Type, &i.Value, &first, &last); err != nil {
			rows.Close()
			return nil, err
		}
		i.FirstSeen, i.LastSeen = time.UnixMilli(first).UTC(), time.UnixMilli(last).UTC()
		p.Identities = append(p.Identities, i)
	}
	rows.Close()
	sort.Slice(p.Identities, func(a, b int) bool {
		if p.Identities[a].Type != p.Identities[b].Type {
			return p.Identities[a].Type < p.Identities[b].Type
		}
		return p.Identities[a].Value < p.Identities[b].Value
	})
	rows, err = s.db.QueryContext(ctx, `SELECT name, value, time FROM attributes WHERE profile_id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("read attributes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, value string
		var t int64
		if err := rows.Scan(&name, &value, &t); err != nil {
			return nil, err
		}
		p.Attributes[name] = Attribute{Value: json.RawMessage(value), Time: time.UnixMilli(t).UTC()}
	}
	return p, rows.Err()
}

// IdentityTypes lists the identity types a profile can be looked up by.
func IdentityTypes() string {
	return strings.Join([]string{identity.TypeCustomUserID, identity.TypeMetrixUserID, identity.TypeEmailHash, identity.TypePhoneHash}, ", ")
}
