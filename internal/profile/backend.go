package profile

import (
	"context"

	"github.com/sluicehq/sluice/internal/event"
)

// Backend is where a Store keeps profiles: profiles.db (SQLiteBackend) or
// PostgreSQL shared by several nodes (PostgresBackend). It only persists;
// the fold (fold.go, observe.go) and the order of its writes are the
// Store's, the same on every backend, and one conformance suite — this
// package's tests, its property test and golden scenarios among them —
// runs on both.
//
// Writes happen in a Tx, and the Txs of every node take turns: Begin
// waits for the one before to end. Each commit moves the backend's
// version, which lets the Store keep the profiles of its last batch in
// memory for as long as no other writer came between.
type Backend interface {
	Reader
	// Cursor is where the named consumer resumes (0 when never moved).
	Cursor(ctx context.Context, name string) (event.ID, error)
	// Begin starts the write transaction; it waits for every other one
	// (of this node or another) to end.
	Begin(ctx context.Context) (Tx, error)
	// Timeline reads a page of a profile's observations, newest first.
	Timeline(ctx context.Context, pid string, q TimelineQuery) ([]TimelineEntry, error)
	// EventsOf returns the ids of a profile's events, in id order.
	EventsOf(ctx context.Context, pid string) ([]event.ID, error)
	// ProfileIDs lists a project's profiles by id.
	ProfileIDs(ctx context.Context, projectID uint32) ([]string, error)
	// Dump calls fn with everything stored, table by table, in order, and
	// Load stores what a Dump gave (into an empty backend), for moving
	// an installation.
	Dump(ctx context.Context, fn func(Row) error) error
	Load(ctx context.Context, rows []Row) error
	Close() error
}

// Reader reads profiles, identities, aliases and observations.
type Reader interface {
	// Owner is the profile that holds an identity ("" when none).
	Owner(ctx context.Context, projectID uint32, idType, value string) (string, error)
	// Profile returns a profile's project and fold state (found false
	// when there is none).
	Profile(ctx context.Context, pid string) (projectID uint32, doc []byte, found bool, err error)
	// AliasInto is the profile that a merged or rebuilt profile id names
	// ("" when none).
	AliasInto(ctx context.Context, projectID uint32, id string) (string, error)
	// Observations returns a profile's observations.
	Observations(ctx context.Context, pid string) ([]StoredObservation, error)
}

// Tx is one write transaction: an Apply or an Erase.
type Tx interface {
	Reader
	// Version is the backend's version when the Tx began: the one the
	// last commit left.
	Version() int64
	PutProfile(ctx context.Context, pid string, projectID uint32, doc []byte) error
	DeleteProfile(ctx context.Context, pid string) error
	// PutIdentity makes pid the owner of an identity.
	PutIdentity(ctx context.Context, projectID uint32, idType, value, pid string) error
	DeleteIdentitiesOf(ctx context.Context, pid string) error
	// PutAlias makes id name into; RedirectAliases makes every alias
	// that named from name into.
	PutAlias(ctx context.Context, id string, projectID uint32, into string) error
	RedirectAliases(ctx context.Context, from, into string) error
	DeleteAlias(ctx context.Context, id string) error
	DeleteAliasesInto(ctx context.Context, into string) error
	// PutObservation stores an observation of profile pid, or, when its
	// event has one, moves it to pid.
	PutObservation(ctx context.Context, o StoredObservation) error
	// MoveObservations moves every observation of from to into.
	MoveObservations(ctx context.Context, from, into string) error
	DeleteObservationsOf(ctx context.Context, pid string) error
	// Cursor reads and SetCursor moves the named consumer's cursor.
	Cursor(ctx context.Context, name string) (event.ID, error)
	SetCursor(ctx context.Context, name string, after event.ID) error
	// Commit ends the Tx, moving the version on; Rollback drops it.
	Commit() error
	Rollback() error
}

// StoredObservation is an observation as stored: its index columns and
// the rest (ids, attributes, facts) as JSON.
type StoredObservation struct {
	EventID   event.ID
	ProjectID uint32
	ProfileID string
	Time      int64
	Digest    string
	Key       string
	Doc       []byte
}

// Row is one stored row of any table (exactly one field is set), as Dump
// gives it.
type Row struct {
	Profile     *StoredProfile
	Identity    *StoredIdentity
	Alias       *StoredAlias
	Observation *StoredObservation
	Cursor      *StoredCursor
}

// StoredProfile is a profile's fold state as stored.
type StoredProfile struct {
	ID        string
	ProjectID uint32
	Doc       []byte
}

// StoredIdentity is an identity and its owner.
type StoredIdentity struct {
	ProjectID   uint32
	Type, Value string
	ProfileID   string
}

// StoredAlias is a profile id that names another.
type StoredAlias struct {
	ID        string
	ProjectID uint32
	Into      string
}

// StoredCursor is a consumer's cursor.
type StoredCursor struct {
	Name  string
	After event.ID
}
