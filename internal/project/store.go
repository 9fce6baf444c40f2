package project

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/internal/event"
)

// Store persists projects and tokens in a Backend (state.db, or
// PostgreSQL shared by several nodes) and serves lookups from an
// in-memory snapshot that every change replaces. A change made by
// another node is seen once Watch notices the backend's version move.
type Store struct {
	db  Backend
	now func() time.Time

	mu   sync.Mutex // serialises changes
	snap atomic.Pointer[snapshot]
}

type snapshot struct {
	version    int64 // of the backend when it was read
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

// Open opens (creating when absent) the SQLite store at path and makes
// sure the default project exists. now is the clock; nil means time.Now.
func Open(path string, now func() time.Time) (*Store, error) {
	b, err := OpenSQLite(path)
	if err != nil {
		return nil, err
	}
	s, err := New(b, now)
	if err != nil {
		b.Close()
		return nil, err
	}
	return s, nil
}

// New serves the projects kept in b and makes sure the default project
// exists. now is the clock; nil means time.Now. Close closes b.
func New(b Backend, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	s := &Store{db: b, now: now}
	ctx := context.Background()
	err := b.InsertProject(ctx, StoredProject{ID: DefaultID, Name: "default", Settings: []byte(`{"app_id":"` + NewAppID() + `"}`), CreatedAt: now()})
	if err != nil && !errors.Is(err, ErrExists) {
		return nil, fmt.Errorf("create default project: %w", err)
	}
	if err := s.ensureAppIDs(ctx); err != nil {
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
		if err := s.db.UpdateProject(ctx, p.ID, p.Name, b); err != nil {
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
	st, err := s.db.Load(ctx)
	if err != nil {
		return err
	}
	snap := &snapshot{
		version:  st.Version,
		projects: make(map[uint32]*Project, len(st.Projects)), tokens: map[[32]byte]tokenEntry{},
		appIDs: map[string]uint32{}, eventTypes: map[uint32]map[string]EventType{},
		schemas: map[uint32]map[string]*SchemaRecord{},
	}
	for _, sp := range st.Projects {
		p := &Project{ID: sp.ID, Name: sp.Name, CreatedAt: sp.CreatedAt.UTC()}
		// Stored settings were validated when written; decode leniently so
		// that a downgrade does not lock an operator out.
		if err := json.Unmarshal(sp.Settings, &p.Settings); err != nil {
			return fmt.Errorf("project %d settings: %w", p.ID, err)
		}
		snap.projects[p.ID] = p
		if p.Settings.AppID != "" {
			snap.appIDs[p.Settings.AppID] = p.ID
		}
	}
	if err := s.loadSchemas(st.Schemas, snap); err != nil {
		return err
	}
	for _, et := range st.EventTypes {
		m := snap.eventTypes[et.ProjectID]
		if m == nil {
			m = map[string]EventType{}
			snap.eventTypes[et.ProjectID] = m
		}
		m[et.Slug] = et
	}
	for _, t := range st.Tokens {
		snap.tokens[t.Hash] = tokenEntry{hash: t.Hash, id: t.ID, projectID: t.ProjectID}
	}
	s.snap.Store(snap)
	return nil
}

// Refresh reloads the snapshot now (a node about to provision what other
// nodes may just have made).
func (s *Store) Refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reload(ctx)
}

// Watch reloads the snapshot when another node changed the backend,
// checking its version every every (250ms when 0), until ctx ends.
func (s *Store) Watch(ctx context.Context, every time.Duration, logger *slog.Logger) {
	if every <= 0 {
		every = 250 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := s.db.Version(ctx)
		if err != nil {
			if ctx.Err() == nil {
				logger.Warn("read the projects' version", "err", err)
			}
			continue
		}
		if v == s.snap.Load().version {
			continue
		}
		s.mu.Lock()
		err = s.reload(ctx)
		s.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			logger.Warn("reload projects changed by another node", "err", err)
		}
	}
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
		return Project{}, invalid("", err)
	}
	if err := settings.Validate(); err != nil {
		return Project{}, invalid("settings", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != nil {
		if _, ok := s.Get(*id); ok {
			return Project{}, fmt.Errorf("project %d: %w", *id, ErrExists)
		}
	}
	if settings.AppID == "" {
		settings.AppID = NewAppID()
	} else if other, taken := s.snap.Load().appIDs[settings.AppID]; taken {
		return Project{}, fmt.Errorf("app_id %q belongs to project %d: %w", settings.AppID, other, ErrExists)
	}
	b, _ := json.Marshal(settings)
	for try := 1; ; try++ {
		var pid uint32
		if id != nil {
			pid = *id
		} else {
			max, err := s.db.MaxProjectID(ctx)
			if err != nil {
				return Project{}, fmt.Errorf("next project id: %w", err)
			}
			if max >= 1<<32-1 {
				return Project{}, fmt.Errorf("%w: no free project id above %d; give one explicitly", ErrInvalid, max)
			}
			pid = uint32(max + 1)
		}
		p := Project{ID: pid, Name: name, Settings: settings, CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
		err := s.db.InsertProject(ctx, StoredProject{ID: pid, Name: name, Settings: b, CreatedAt: p.CreatedAt})
		if err == nil {
			return p, s.reload(ctx)
		}
		if !errors.Is(err, ErrExists) {
			return Project{}, fmt.Errorf("create project %d: %w", pid, err)
		}
		// Made meanwhile by another node: the snapshot shows it, and
		// the next free id is taken instead.
		if rerr := s.reload(ctx); rerr != nil {
			return Project{}, rerr
		}
		if id != nil || try == 10 {
			return Project{}, fmt.Errorf("project %d: %w", pid, ErrExists)
		}
	}
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
			return Project{}, invalid("", err)
		}
		p.Name = *name
	}
	if settings != nil {
		if err := settings.Validate(); err != nil {
			return Project{}, invalid("settings", err)
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
	if err := s.db.UpdateProject(ctx, id, p.Name, b); err != nil {
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
	if err := s.db.DeleteProject(ctx, id); err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("project %d: %w", id, ErrNotFound)
		}
		return fmt.Errorf("delete project %d: %w", id, err)
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
	problem := ""
	switch {
	case len(secret) < 6:
		problem = "shorter than 6 characters"
	case len(secret) > 256:
		problem = "longer than 256 characters"
	case strings.ContainsAny(secret, ": \t\r\n"):
		problem = "has ':' or whitespace (it travels as an HTTP Basic user name)"
	default:
		return nil
	}
	return event.FieldErrors{{Path: "secret", Message: problem}}
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
		return Token{}, "", invalid("", err)
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
		return Token{}, "", invalid("name", errors.New("longer than 200 bytes"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.Get(projectID); !ok {
		return Token{}, "", fmt.Errorf("project %d: %w", projectID, ErrNotFound)
	}
	existing, err := s.db.Tokens(ctx, TokenQuery{Hash: &hash})
	if err != nil {
		return Token{}, "", fmt.Errorf("look up token: %w", err)
	}
	if len(existing) > 0 {
		return Token{}, "", fmt.Errorf("token with this secret: %w (%s)", ErrExists, existing[0].ID)
	}
	var idb [6]byte
	_, _ = rand.Read(idb[:])
	t := Token{
		ID: "tok_" + hex.EncodeToString(idb[:]), ProjectID: projectID, Name: name, Hint: hint,
		CreatedAt: s.now().UTC().Truncate(time.Millisecond),
	}
	if err := s.db.InsertToken(ctx, t, hash); err != nil {
		return Token{}, "", fmt.Errorf("create token: %w", err)
	}
	return t, secret, s.reload(ctx)
}

// TokenByHash returns the token (revoked or not) stored with hash.
func (s *Store) TokenByHash(ctx context.Context, hash [32]byte) (Token, error) {
	ts, err := s.db.Tokens(ctx, TokenQuery{Hash: &hash})
	if err != nil {
		return Token{}, fmt.Errorf("list tokens: %w", err)
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
	ts, err := s.db.Tokens(ctx, TokenQuery{ProjectID: &projectID})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return ts, nil
}

// RevokeToken revokes a token of project: it stops working at once.
// Revoking twice is not an error.
func (s *Store) RevokeToken(ctx context.Context, projectID uint32, tokenID string) (Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.RevokeToken(ctx, projectID, tokenID, s.now()); err != nil {
		return Token{}, fmt.Errorf("revoke token: %w", err)
	}
	ts, err := s.db.Tokens(ctx, TokenQuery{ProjectID: &projectID, ID: tokenID})
	if err != nil {
		return Token{}, fmt.Errorf("list tokens: %w", err)
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

// IsToken reports whether secret is a live token of any project.
func (s *Store) IsToken(secret string) bool {
	_, _, ok := s.Authenticate(secret)
	return ok
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

// CreateEventType declares an event type; a slug that exists is ErrExists.
func (s *Store) CreateEventType(ctx context.Context, et EventType) (EventType, error) {
	if err := et.Validate(); err != nil {
		return EventType{}, invalid("", err)
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
	if err := s.db.InsertEventType(ctx, et); err != nil {
		return EventType{}, fmt.Errorf("create event type: %w", err)
	}
	return et, s.reload(ctx)
}

// UpdateEventType changes an event type's kind, name and description.
func (s *Store) UpdateEventType(ctx context.Context, et EventType) (EventType, error) {
	if err := et.Validate(); err != nil {
		return EventType{}, invalid("", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.EventType(et.ProjectID, et.Slug)
	if !ok {
		return EventType{}, fmt.Errorf("event type %q of project %d: %w", et.Slug, et.ProjectID, ErrNotFound)
	}
	et.CreatedAt = cur.CreatedAt
	if err := s.db.UpdateEventType(ctx, et); err != nil {
		return EventType{}, fmt.Errorf("update event type: %w", err)
	}
	return et, s.reload(ctx)
}

// DeleteEventType removes an event type; s2s messages naming it are then
// refused.
func (s *Store) DeleteEventType(ctx context.Context, projectID uint32, slug string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.DeleteEventType(ctx, projectID, slug); err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("event type %q of project %d: %w", slug, projectID, ErrNotFound)
		}
		return fmt.Errorf("delete event type: %w", err)
	}
	return s.reload(ctx)
}

// Meta returns a stored value ("" when absent).
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	v, err := s.db.Meta(ctx, key)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", key, err)
	}
	return v, nil
}

// SetMeta stores a value.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	if err := s.db.SetMeta(ctx, key, value); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// SetMetaOnce stores value unless key holds a value already, and returns
// the value key holds after (value, or the one another node stored first).
func (s *Store) SetMetaOnce(ctx context.Context, key, value string) (string, error) {
	v, err := s.db.SetMetaOnce(ctx, key, value)
	if err != nil {
		return "", fmt.Errorf("write %s: %w", key, err)
	}
	return v, nil
}
