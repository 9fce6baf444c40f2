package project

import (
	"context"
	"time"
)

// Backend is where a Store keeps projects, tokens, event types, schemas
// and meta values (the admin token's hash): state.db (SQLiteBackend) or
// PostgreSQL shared by several nodes (PostgresBackend). Both pass one
// conformance suite (backend_test.go). Every change moves the backend's
// Version, so the Stores of other nodes know to reload.
type Backend interface {
	// Load reads everything a snapshot holds, as of one moment, with the
	// version of that moment.
	Load(ctx context.Context) (*Stored, error)
	// Version is a number that every change moves.
	Version(ctx context.Context) (int64, error)

	// MaxProjectID is the highest project id (0 when only the default
	// project exists).
	MaxProjectID(ctx context.Context) (int64, error)
	// InsertProject adds a project; ErrExists when its id is taken.
	InsertProject(ctx context.Context, p StoredProject) error
	// UpdateProject sets a project's name and settings; ErrNotFound when
	// there is none.
	UpdateProject(ctx context.Context, id uint32, name string, settings []byte) error
	// DeleteProject removes a project with its tokens, event types and
	// schemas; ErrNotFound when there is none.
	DeleteProject(ctx context.Context, id uint32) error

	// Tokens lists the tokens q selects (revoked ones included), oldest
	// first.
	Tokens(ctx context.Context, q TokenQuery) ([]Token, error)
	// InsertToken adds a token with the SHA-256 of its secret; ErrExists
	// when a token has that hash.
	InsertToken(ctx context.Context, t Token, hash [32]byte) error
	// RevokeToken marks a live token of a project revoked at at (a
	// revoked or missing one is left as it is).
	RevokeToken(ctx context.Context, projectID uint32, id string, at time.Time) error

	InsertEventType(ctx context.Context, et EventType) error
	UpdateEventType(ctx context.Context, et EventType) error
	// DeleteEventType: ErrNotFound when there is none.
	DeleteEventType(ctx context.Context, projectID uint32, slug string) error

	InsertSchema(ctx context.Context, s StoredSchema) error
	// DeleteSchema: ErrNotFound when there is none.
	DeleteSchema(ctx context.Context, projectID uint32, typ string) error

	// Meta returns a value ("" when absent); SetMeta stores one;
	// SetMetaOnce stores one unless the key holds a value, and returns
	// the value the key holds after.
	Meta(ctx context.Context, key string) (string, error)
	SetMeta(ctx context.Context, key, value string) error
	SetMetaOnce(ctx context.Context, key, value string) (string, error)
	// AllMeta returns every meta value, and AllTokens every token with
	// its hash, for moving an installation.
	AllMeta(ctx context.Context) (map[string]string, error)
	AllTokens(ctx context.Context) ([]StoredToken, error)

	Close() error
}

// Stored is everything a Backend keeps (the hashes of revoked tokens
// aside).
type Stored struct {
	Version    int64
	Projects   []StoredProject // by id
	Tokens     []LiveToken
	EventTypes []EventType
	Schemas    []StoredSchema
}

// StoredProject is a project as stored: its settings as JSON.
type StoredProject struct {
	ID        uint32
	Name      string
	Settings  []byte
	CreatedAt time.Time
}

// LiveToken is a token that is not revoked: what authentication needs.
type LiveToken struct {
	ID        string
	ProjectID uint32
	Hash      [32]byte
}

// StoredToken is a token with the SHA-256 of its secret.
type StoredToken struct {
	Token
	Hash [32]byte
}

// StoredSchema is a registered schema as stored.
type StoredSchema struct {
	ProjectID uint32
	Type      string
	Body      []byte
	CreatedAt time.Time
}

// TokenQuery selects tokens; zero fields are no condition.
type TokenQuery struct {
	ProjectID *uint32
	ID        string
	Hash      *[32]byte
}
