// Package pgmigrate applies versioned SQL migrations, embedded in the
// binary, to a PostgreSQL database. Each component (the event log, each
// store) has its own numbered files, 1_create.sql, 2_add_x.sql… (the
// number, an underscore, a name), and the table schema_migrations holds
// the version each component is at.
//
// Apply runs in one transaction under a transaction-level advisory lock:
// nodes that start together apply each migration once and the others
// wait, a migration that fails leaves the database as it was, and a
// database at a version newer than the binary's is refused (an older
// binary must not write to a schema it does not know).
package pgmigrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// LockKey is the advisory lock that Apply holds until its commit.
const LockKey int64 = 0x736c756963656d67 // "sluicemg"

// Component is one set of migrations.
type Component struct {
	// Name identifies the component in schema_migrations ("eventlog").
	Name string
	// FS holds the migrations at its root: <version>_<name>.sql, versions
	// 1, 2, 3… without a gap.
	FS fs.FS
}

// Migration is one file of a component.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns c's migrations in order, checking their numbering.
func (c Component) Migrations() ([]Migration, error) {
	files, err := fs.Glob(c.FS, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("migrations of %s: %w", c.Name, err)
	}
	var out []Migration
	for _, f := range files {
		num, name, ok := strings.Cut(strings.TrimSuffix(path.Base(f), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migrations of %s: %s is not named <version>_<name>.sql", c.Name, f)
		}
		b, err := fs.ReadFile(c.FS, f)
		if err != nil {
			return nil, fmt.Errorf("migrations of %s: %w", c.Name, err)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migrations of %s: version %d follows %d", c.Name, m.Version, i)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("migrations of %s: none", c.Name)
	}
	return out, nil
}

// Beginner is a pool or a connection.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// ErrNewer is wrapped by the error of Apply on a database whose version
// of a component is newer than the binary's.
var ErrNewer = errors.New("the database's schema is newer than this binary's")

// Apply brings every component up to its latest version, in one
// transaction.
func Apply(ctx context.Context, db Beginner, comps ...Component) error {
	return apply(ctx, db, comps, 0)
}

// ApplyUpTo brings c up to version (for tests of an upgrade from an
// earlier schema).
func ApplyUpTo(ctx context.Context, db Beginner, c Component, version int) error {
	return apply(ctx, db, []Component{c}, version)
}

func apply(ctx context.Context, db Beginner, comps []Component, upTo int) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", LockKey); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component  text PRIMARY KEY,
		version    integer NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, c := range comps {
		ms, err := c.Migrations()
		if err != nil {
			return err
		}
		latest := len(ms)
		if upTo > 0 {
			latest = min(upTo, latest)
		}
		var at int
		err = tx.QueryRow(ctx, "SELECT version FROM schema_migrations WHERE component = $1", c.Name).Scan(&at)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("migrate %s: %w", c.Name, err)
		}
		if at > len(ms) {
			return fmt.Errorf("migrate %s: %w (version %d, this binary knows %d)", c.Name, ErrNewer, at, len(ms))
		}
		for _, m := range ms[min(at, latest):latest] {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migrate %s to %d (%s): %w", c.Name, m.Version, m.Name, err)
			}
		}
		if latest > at {
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (component, version) VALUES ($1, $2)
				ON CONFLICT (component) DO UPDATE SET version = excluded.version, applied_at = now()`, c.Name, latest); err != nil {
				return fmt.Errorf("migrate %s: %w", c.Name, err)
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

// Querier is a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Version is the version c is at in the database (0 before any).
func Version(ctx context.Context, db Querier, name string) (int, error) {
	var missing bool
	if err := db.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NULL`).Scan(&missing); err != nil {
		return 0, fmt.Errorf("schema version of %s: %w", name, err)
	}
	if missing {
		return 0, nil
	}
	var v int
	err := db.QueryRow(ctx, `SELECT coalesce((SELECT version FROM schema_migrations WHERE component = $1), 0)`, name).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("schema version of %s: %w", name, err)
	}
	return v, nil
}
