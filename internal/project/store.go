package project

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/internal/sqlitefile"
)

// Store persists projects and tokens in SQLite and serves lookups from an
// in-memory snapshot that every change replaces.
type Store struct {
	db  *sql.DB
	now func() time.Time

	mu   sync.Mutex // serialises changes
	snap atomic.Pointer[snapshot]
}

type snapshot struct {
	projects   map[uint32]*Project
	tokens     map[[32]byte]tokenEntry
	appIDs     map[string]uint32
	eventTypes map[uint32]map[string]EventType
	schemas    map[uint32]map[string]*SchemaRecord
}

type tokenEntry struct {
	hash      [32]byte
	id        string
	projectID uint32
}

const stateSchema = `
CREATE TABLE IF NOT EXISTS projects (
	id         INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	settings   TEXT NOT NULL DEFAULT '{}',
	created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
	id         TEXT PRIMARY KEY,
	project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	hash       BLOB NOT NULL UNIQUE, -- SHA-256 of the secret; the secret is never stored
	hint       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS tokens_project ON tokens(project_id);
CREATE TABLE IF NOT EXISTS event_types (
	project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	slug        TEXT NOT NULL,
	kind        TEXT NOT NULL,
	name        TEXT NOT NULL DEFAULT '',
	description TEXT NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	PRIMARY KEY (project_id, slug)
);
CREATE TABLE IF NOT EXISTS schemas (
	project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	type       TEXT NOT NULL, -- <name>-v<N>
	body       TEXT NOT NULL, -- the JSON Schema, compacted
	created_at INTEGER NOT NULL,
	PRIMARY KEY (project_id, type)
);
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
`

// Open opens (creating when absent) the store at path and makes sure the
// default project exists. now is the clock; nil means time.Now.
func Open(path string, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	v := url.Values{}
	v.Set("_journal_mode", "WAL")
	v.Set("_synchronous", "FULL")
	v.Set("_busy_timeout", "10000")
	v.Set("_foreign_keys", "1")
	v.Set("_txlock", "immediate")
	// Kept -wal and -shm files let a start on a full disk open it.
	db := sqlitefile.Open("file:"+(&url.URL{Path: path}).EscapedPath()+"?"+v.Encode(), sqlitefile.DefaultWALLimit)
	db.SetMaxOpenConns(1)
	s := &Store{db: db, now: now}
	if _, err := db.Exec(stateSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	if _, err := db.Exec(`INSERT INTO projects(id, name, settings, created_at) VALUES (0, 'default', ?, ?) ON CONFLICT(id) DO NOTHING`,
		`{"app_id":"`+NewAppID()+`"}`, now().UnixMilli()); err != nil {
		db.Close()
		return nil, fmt.Errorf("create default project: %w", err)
	}
	if err := s.ensureAppIDs(context.Background()); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// NewAppID returns a fresh application id: "app_" and 12 hex digits.
func NewAppID() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return "app_" + hex.EncodeToString(b[:])
}

// ensureAppIDs gives every project without an application id one, and
// loads the snapshot.
func (s *Store) ensureAppIDs(ctx context.Context) error {
	if err := s.reload(ctx); err != nil {
		return err
	}
	missing := false
	for _, p := range s.List() {
		if p.Settings.AppID != "" {
			continue
		}
		missing = true
		p.Settings.AppID = NewAppID()
		b, _ := json.Marshal(p.Settings)
		if _, err := s.db.ExecContext(ctx, `UPDATE projects SET settings = ? WHERE id = ?`, string(b), p.ID); err != nil {
			return fmt.Errorf("give project %d an app id: %w", p.ID, err)
		}
	}
	if missing {
		return s.reload(ctx)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// reload rebuilds the in-memory snapshot from the database.
func (s *Store) reload(ctx context.Context) error {
	ps, err := s.queryProjects(ctx)
	if err != nil {
		return err
	}
	snap := &snapshot{
		projects: make(map[uint32]*Project, len(ps)), tokens: map[[32]byte]tokenEntry{},
		appIDs: map[string]uint32{}, eventTypes: map[uint32]map[string]EventType{},
		schemas: map[uint32]map[string]*SchemaRecord{},
	}
	for i := range ps {
		snap.projects[ps[i].ID] = &ps[i]
		if ps[i].Settings.AppID != "" {
			snap.appIDs[ps[i].Settings.AppID] = ps[i].ID
		}
	}
	ets, err := s.queryEventTypes(ctx, "")
	if err != nil {
		return err
	}
	if err := s.loadSchemas(ctx, snap); err != nil {
		return err
	}
	for _, et := range ets {
		m := snap.eventTypes[et.ProjectID]
		if m == nil {
			m = map[string]EventType{}
			snap.eventTypes[et.ProjectID] = m
		}
		m[et.Slug] = et
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, project_id, hash FROM tokens WHERE revoked_at IS NULL`)
	if err != nil {
		return fmt.Errorf("load tokens: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e tokenEntry
		var hash []byte
		if err := rows.Scan(&e.id, &e.projectID, &hash); err != nil {
			return fmt.Errorf("load tokens: %w", err)
		}
		copy(e.hash[:], hash)
		snap.tokens[e.hash] = e
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load tokens: %w", err)
	}
	s.snap.Store(snap)
	return nil
}

func (s *Store) queryProjects(ctx context.Context) ([]Project, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, name, settings, created_at FROM projects ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("load projects: %w", err)
	}
	defer rows.Close()
	var out []Project
	for rows.Next() {
		var p Project
		var settings string
		var created int64
		if err := rows.Scan(&p.ID, &p.Name, &settings, &created); err != nil {
			return nil, fmt.Errorf("load projects: %w", err)
		}
		// Stored settings were validated when written; decode leniently so
		// that a downgrade does not lock an operator out.
		if err := json.Unmarshal([]byte(settings), &p.Settings); err != nil {
			return nil, fmt.Errorf("project %d settings: %w", p.ID, err)
		}
		p.CreatedAt = time.UnixMilli(created).UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// Get returns project id from memory.
func (s *Store) Get(id uint32) (*Project, bool) {
	p, ok := s.snap.Load().projects[id]
	return p, ok
}

// List returns every project, ordered by id.
func (s *Store) List() []Project {
	snap := s.snap.Load()
	out := make([]Project, 0, len(snap.projects))
	for _, p := range snap.projects {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Create adds a project. id nil picks the next free id.
func (s *Store) Create(ctx context.Context, id *uint32, name string, settings Settings) (Project, error) {
	if err := ValidateName(name); err != nil {
		return Project{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := settings.Validate(); err != nil {
		return Project{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var pid uint32
	if id != nil {
		pid = *id
		if _, ok := s.Get(pid); ok {
			return Project{}, fmt.Errorf("project %d: %w", pid, ErrExists)
		}
	} else {
		var max sql.NullInt64
		if err := s.db.QueryRowContext(ctx, `SELECT max(id) FROM projects`).Scan(&max); err != nil {
			return Project{}, fmt.Errorf("next project id: %w", err)
		}
		if max.Int64 >= 1<<32-1 {
			return Project{}, fmt.Errorf("%w: no free project id above %d; give one explicitly", ErrInvalid, max.Int64)
		}
		pid = uint32(max.Int64 + 1)
	}
	if settings.AppID == "" {
		settings.AppID = NewAppID()
	} else if other, taken := s.snap.Load().appIDs[settings.AppID]; taken {
		return Project{}, fmt.Errorf("app_id %q belongs to project %d: %w", settings.AppID, other, ErrExists)
	}
	p := Project{ID: pid, Name: name, Settings: settings, CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	b, _ := json.Marshal(p.Settings)
	if _, err := s.db.ExecContext(ctx, `INSERT INTO projects(id, name, settings, created_at) VALUES (?, ?, ?, ?)`,
		pid, name, string(b), p.CreatedAt.UnixMilli()); err != nil {
		return Project{}, fmt.Errorf("create project %d: %w", pid, err)
	}
	return p, s.reload(ctx)
}

// Update changes a project's name and/or settings; nil leaves a field as is.
func (s *Store) Update(ctx context.Context, id uint32, name *string, settings *Settings) (Project, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.Get(id)
	if !ok {
		return Project{}, fmt.Errorf("project %d: %w", id, ErrNotFound)
	}
	p := *cur
	if name != nil {
		if err := ValidateName(*name); err != nil {
			return Project{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		p.Name = *name
	}
	if settings != nil {
		if err := settings.Validate(); err != nil {
			return Project{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		next := *settings
		if next.AppID == "" {
			next.AppID = cur.Settings.AppID // settings are replaced whole, the app id is kept
		} else if other, taken := s.snap.Load().appIDs[next.AppID]; taken && other != id {
			return Project{}, fmt.Errorf("app_id %q belongs to project %d: %w", next.AppID, other, ErrExists)
		}
		p.Settings = next
	}
	b, _ := json.Marshal(p.Settings)
	if _, err := s.db.ExecContext(ctx, `UPDATE projects SET name = ?, settings = ? WHERE id = ?`, p.Name, string(b), id); err != nil {
		return Project{}, fmt.Errorf("update project %d: %w", id, err)
	}
	return p, s.reload(ctx)
}

// Delete removes a project and its tokens. Its events stay in the log until
// retention removes them. The default project cannot be deleted.
func (s *Store) Delete(ctx context.Context, id uint32) error {
	if id == DefaultID {
		return fmt.Errorf("%w: the default project cannot be deleted", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := s.db.ExecContext(ctx, `DELETE FROM projects WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete project %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("project %d: %w", id, ErrNotFound)
	}
	return s.reload(ctx)
}

// Token secrets look like "sl_" followed by 40 hex digits (160 random bits).
const secretPrefix = "sl_"

// NewSecret returns a fresh random secret.
func NewSecret() string {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error()) // rand.Read never fails on Linux
	}
	return secretPrefix + hex.EncodeToString(b[:])
}

// HashSecret is how secrets are stored: SHA-256.
func HashSecret(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

// ValidateSecret checks a secret supplied by an operator (to keep a
// sender's existing token when it moves to sluice).
func ValidateSecret(secret string) error {
	switch {
	case len(secret) < 6:
		return errors.New("secret is shorter than 6 characters")
	case len(secret) > 256:
		return errors.New("secret is longer than 256 characters")
	case strings.ContainsAny(secret, ": \t\r\n"):
		return errors.New("secret must not contain ':' or whitespace (it travels as an HTTP Basic user name)")
	}
	return nil
}

func hint(secret string) string {
	if len(secret) <= 8 {
		return secret[:2] + "…"
	}
	return secret[:7] + "…"
}

// CreateToken makes a token for project. An empty secret makes a random
// one; otherwise the given secret is imported. The secret is returned once.
func (s *Store) CreateToken(ctx context.Context, projectID uint32, name, secret string) (Token, string, error) {
	if secret == "" {
		secret = NewSecret()
	} else if err := ValidateSecret(secret); err != nil {
		return Token{}, "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return s.addToken(ctx, projectID, name, HashSecret(secret), hint(secret), secret)
}

// ImportTokenHash adds a token known only by its SHA-256 (for provisioning
// without secrets in the config file).
func (s *Store) ImportTokenHash(ctx context.Context, projectID uint32, name string, hash [32]byte) (Token, error) {
	t, _, err := s.addToken(ctx, projectID, name, hash, "sha256:"+hex.EncodeToString(hash[:4])+"…", "")
	return t, err
}

func (s *Store) addToken(ctx context.Context, projectID uint32, name string, hash [32]byte, hint, secret string) (Token, string, error) {
	if len(name) > 200 {
		return Token{}, "", fmt.Errorf("%w: token name is longer than 200 characters", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.Get(projectID); !ok {
		return Token{}, "", fmt.Errorf("project %d: %w", projectID, ErrNotFound)
	}
	var existing string
	err := s.db.QueryRowContext(ctx, `SELECT id FROM tokens WHERE hash = ?`, hash[:]).Scan(&existing)
	if err == nil {
		return Token{}, "", fmt.Errorf("token with this secret: %w (%s)", ErrExists, existing)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return Token{}, "", fmt.Errorf("look up token: %w", err)
	}
	var idb [6]byte
	_, _ = rand.Read(idb[:])
	t := Token{
		ID: "tok_" + hex.EncodeToString(idb[:]), ProjectID: projectID, Name: name, Hint: hint,
		CreatedAt: s.now().UTC().Truncate(time.Millisecond),
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO tokens(id, project_id, name, hash, hint, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		t.ID, projectID, name, hash[:], hint, t.CreatedAt.UnixMilli()); err != nil {
		return Token{}, "", fmt.Errorf("create token: %w", err)
	}
	return t, secret, s.reload(ctx)
}

// TokenByHash returns the token (revoked or not) stored with hash.
func (s *Store) TokenByHash(ctx context.Context, hash [32]byte) (Token, error) {
	ts, err := s.queryTokens(ctx, `WHERE hash = ?`, hash[:])
	if err != nil {
		return Token{}, err
	}
	if len(ts) == 0 {
		return Token{}, ErrNotFound
	}
	return ts[0], nil
}

// Tokens lists a project's tokens, revoked ones included.
func (s *Store) Tokens(ctx context.Context, projectID uint32) ([]Token, error) {
	if _, ok := s.Get(projectID); !ok {
		return nil, fmt.Errorf("project %d: %w", projectID, ErrNotFound)
	}
	return s.queryTokens(ctx, `WHERE project_id = ?`, projectID)
}

func (s *Store) queryTokens(ctx context.Context, where string, args ...any) ([]Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, project_id, name, hint, created_at, revoked_at FROM tokens `+where+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	out := []Token{}
	for rows.Next() {
		var t Token
		var created int64
		var revoked sql.NullInt64
		if err := rows.Scan(&t.ID, &t.ProjectID, &t.Name, &t.Hint, &created, &revoked); err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		t.CreatedAt = time.UnixMilli(created).UTC()
		if revoked.Valid {
			r := time.UnixMilli(revoked.Int64).UTC()
			t.RevokedAt = &r
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken revokes a token of project: it stops working at once.
// Revoking twice is not an error.
func (s *Store) RevokeToken(ctx context.Context, projectID uint32, tokenID string) (Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.db.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE id = ? AND project_id = ? AND revoked_at IS NULL`,
		s.now().UnixMilli(), tokenID, projectID)
	if err != nil {
		return Token{}, fmt.Errorf("revoke token: %w", err)
	}
	ts, err := s.queryTokens(ctx, `WHERE id = ? AND project_id = ?`, tokenID, projectID)
	if err != nil {
		return Token{}, err
	}
	if len(ts) == 0 {
		return Token{}, fmt.Errorf("token %s of project %d: %w", tokenID, projectID, ErrNotFound)
	}
	return ts[0], s.reload(ctx)
}

// Authenticate returns the project and token id of a live token. The
// secret's SHA-256 selects the candidate, and the stored hash is compared
// in constant time.
func (s *Store) Authenticate(secret string) (projectID uint32, tokenID string, ok bool) {
	if secret == "" {
		return 0, "", false
	}
	h := HashSecret(secret)
	e, found := s.snap.Load().tokens[h]
	if !found || subtle.ConstantTimeCompare(e.hash[:], h[:]) != 1 {
		return 0, "", false
	}
	return e.projectID, e.id, true
}

// AuthenticateFor reports whether secret is a live token of projectID.
func (s *Store) AuthenticateFor(projectID uint32, secret string) bool {
	p, _, ok := s.Authenticate(secret)
	return ok && p == projectID
}

// ByAppID returns the project whose application id is appID.
func (s *Store) ByAppID(appID string) (*Project, bool) {
	snap := s.snap.Load()
	id, ok := snap.appIDs[appID]
	if !ok {
		return nil, false
	}
	p, ok := snap.projects[id]
	return p, ok
}

// EventType returns a project's event type from memory.
func (s *Store) EventType(projectID uint32, slug string) (EventType, bool) {
	et, ok := s.snap.Load().eventTypes[projectID][slug]
	return et, ok
}

// EventTypes lists a project's event types, by slug.
func (s *Store) EventTypes(projectID uint32) ([]EventType, error) {
	if _, ok := s.Get(projectID); !ok {
		return nil, fmt.Errorf("project %d: %w", projectID, ErrNotFound)
	}
	m := s.snap.Load().eventTypes[projectID]
	out := make([]EventType, 0, len(m))
	for _, et := range m {
		out = append(out, et)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Slug < out[j].Slug })
	return out, nil
}

func (s *Store) queryEventTypes(ctx context.Context, where string, args ...any) ([]EventType, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT project_id, slug, kind, name, description, created_at FROM event_types `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("load event types: %w", err)
	}
	defer rows.Close()
	var out []EventType
	for rows.Next() {
		var et EventType
		var created int64
		if err := rows.Scan(&et.ProjectID, &et.Slug, &et.Kind, &et.Name, &et.Description, &created); err != nil {
			return nil, fmt.Errorf("load event types: %w", err)
		}
		et.CreatedAt = time.UnixMilli(created).UTC()
		out = append(out, et)
	}
	return out, rows.Err()
}

// CreateEventType declares an event type; a slug that exists is ErrExists.
func (s *Store) CreateEventType(ctx context.Context, et EventType) (EventType, error) {
	if err := et.Validate(); err != nil {
		return EventType{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.Get(et.ProjectID); !ok {
		return EventType{}, fmt.Errorf("project %d: %w", et.ProjectID, ErrNotFound)
	}
	if _, ok := s.EventType(et.ProjectID, et.Slug); ok {
		return EventType{}, fmt.Errorf("event type %q of project %d: %w", et.Slug, et.ProjectID, ErrExists)
	}
	et.CreatedAt = s.now().UTC().Truncate(time.Millisecond)
	if _, err := s.db.ExecContext(ctx, `INSERT INTO event_types(project_id, slug, kind, name, description, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		et.ProjectID, et.Slug, et.Kind, et.Name, et.Description, et.CreatedAt.UnixMilli()); err != nil {
		return EventType{}, fmt.Errorf("create event type: %w", err)
	}
	return et, s.reload(ctx)
}

// UpdateEventType changes an event type's kind, name and description.
func (s *Store) UpdateEventType(ctx context.Context, et EventType) (EventType, error) {
	if err := et.Validate(); err != nil {
		return EventType{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.EventType(et.ProjectID, et.Slug)
	if !ok {
		return EventType{}, fmt.Errorf("event type %q of project %d: %w", et.Slug, et.ProjectID, ErrNotFound)
	}
	et.CreatedAt = cur.CreatedAt
	if _, err := s.db.ExecContext(ctx, `UPDATE event_types SET kind = ?, name = ?, description = ? WHERE project_id = ? AND slug = ?`,
		et.Kind, et.Name, et.Description, et.ProjectID, et.Slug); err != nil {
		return EventType{}, fmt.Errorf("update event type: %w", err)
	}
	return et, s.reload(ctx)
}

// DeleteEventType removes an event type; s2s messages naming it are then
// refused.
func (s *Store) DeleteEventType(ctx context.Context, projectID uint32, slug string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := s.db.ExecContext(ctx, `DELETE FROM event_types WHERE project_id = ? AND slug = ?`, projectID, slug)
	if err != nil {
		return fmt.Errorf("delete event type: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("event type %q of project %d: %w", slug, projectID, ErrNotFound)
	}
	return s.reload(ctx)
}

// Meta returns a stored value ("" when absent).
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", key, err)
	}
	return v, nil
}

// SetMeta stores a value.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}
