package project

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/sqlitefile"
)

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
-- Moved by every change (Backend.Version).
CREATE TABLE IF NOT EXISTS state_version (
	id      INTEGER PRIMARY KEY CHECK (id = 0),
	version INTEGER NOT NULL
);
INSERT INTO state_version(id, version) VALUES (0, 0) ON CONFLICT(id) DO NOTHING;
`

// SQLiteBackend is state.db: the Backend of one node.
type SQLiteBackend struct {
	db *sql.DB
}

var _ Backend = (*SQLiteBackend)(nil)

// OpenSQLite opens (creating when absent) state.db at path.
func OpenSQLite(path string) (*SQLiteBackend, error) {
	v := url.Values{}
	v.Set("_journal_mode", "WAL")
	v.Set("_synchronous", "FULL")
	v.Set("_busy_timeout", "10000")
	v.Set("_foreign_keys", "1")
	v.Set("_txlock", "immediate")
	// Kept -wal and -shm files let a start on a full disk open it.
	db := sqlitefile.Open("file:"+(&url.URL{Path: path}).EscapedPath()+"?"+v.Encode(), sqlitefile.DefaultWALLimit)
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(stateSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	return &SQLiteBackend{db: db}, nil
}

func (b *SQLiteBackend) Close() error { return b.db.Close() }

// change runs fn in a transaction that moves the version.
func (b *SQLiteBackend) change(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE state_version SET version = version + 1`); err != nil {
		return err
	}
	return tx.Commit()
}

// affected is ErrNotFound when res changed no row.
func affected(res sql.Result) error {
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// conflict turns a uniqueness violation into ErrExists.
func conflict(err error) error {
	if err != nil && (strings.Contains(err.Error(), "UNIQUE constraint failed") || strings.Contains(err.Error(), "PRIMARY KEY")) {
		return fmt.Errorf("%w: %v", ErrExists, err)
	}
	return err
}

func (b *SQLiteBackend) Version(ctx context.Context) (int64, error) {
	var v int64
	err := b.db.QueryRowContext(ctx, `SELECT version FROM state_version`).Scan(&v)
	return v, err
}

func (b *SQLiteBackend) Load(ctx context.Context) (*Stored, error) {
	tx, err := b.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("load projects: %w", err)
	}
	defer tx.Rollback()
	st := &Stored{}
	if err := tx.QueryRowContext(ctx, `SELECT version FROM state_version`).Scan(&st.Version); err != nil {
		return nil, fmt.Errorf("load projects: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, name, settings, created_at FROM projects ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("load projects: %w", err)
	}
	for rows.Next() {
		var p StoredProject
		var settings string
		var created int64
		if err := rows.Scan(&p.ID, &p.Name, &settings, &created); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load projects: %w", err)
		}
		p.Settings, p.CreatedAt = []byte(settings), time.UnixMilli(created).UTC()
		st.Projects = append(st.Projects, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load projects: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT project_id, slug, kind, name, description, created_at FROM event_types`)
	if err != nil {
		return nil, fmt.Errorf("load event types: %w", err)
	}
	for rows.Next() {
		var et EventType
		var created int64
		if err := rows.Scan(&et.ProjectID, &et.Slug, &et.Kind, &et.Name, &et.Description, &created); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load event types: %w", err)
		}
		et.CreatedAt = time.UnixMilli(created).UTC()
		st.EventTypes = append(st.EventTypes, et)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load event types: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT project_id, type, body, created_at FROM schemas`)
	if err != nil {
		return nil, fmt.Errorf("load schemas: %w", err)
	}
	for rows.Next() {
		var s StoredSchema
		var body string
		var created int64
		if err := rows.Scan(&s.ProjectID, &s.Type, &body, &created); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load schemas: %w", err)
		}
		s.Body, s.CreatedAt = []byte(body), time.UnixMilli(created).UTC()
		st.Schemas = append(st.Schemas, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load schemas: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT id, project_id, hash FROM tokens WHERE revoked_at IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("load tokens: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t LiveToken
		var hash []byte
		if err := rows.Scan(&t.ID, &t.ProjectID, &hash); err != nil {
			return nil, fmt.Errorf("load tokens: %w", err)
		}
		copy(t.Hash[:], hash)
		st.Tokens = append(st.Tokens, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load tokens: %w", err)
	}
	return st, nil
}

func (b *SQLiteBackend) MaxProjectID(ctx context.Context) (int64, error) {
	var max sql.NullInt64
	err := b.db.QueryRowContext(ctx, `SELECT max(id) FROM projects`).Scan(&max)
	return max.Int64, err
}

func (b *SQLiteBackend) InsertProject(ctx context.Context, p StoredProject) error {
	return b.change(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO projects(id, name, settings, created_at) VALUES (?, ?, ?, ?)`,
			p.ID, p.Name, string(p.Settings), p.CreatedAt.UnixMilli())
		return conflict(err)
	})
}

func (b *SQLiteBackend) UpdateProject(ctx context.Context, id uint32, name string, settings []byte) error {
	return b.change(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE projects SET name = ?, settings = ? WHERE id = ?`, name, string(settings), id)
		if err != nil {
			return err
		}
		return affected(res)
	})
}

func (b *SQLiteBackend) DeleteProject(ctx context.Context, id uint32) error {
	return b.change(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM projects WHERE id = ?`, id)
		if err != nil {
			return err
		}
		return affected(res)
	})
}

func (b *SQLiteBackend) Tokens(ctx context.Context, q TokenQuery) ([]Token, error) {
	sts, err := b.tokens(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]Token, len(sts))
	for i, st := range sts {
		out[i] = st.Token
	}
	return out, nil
}

func (b *SQLiteBackend) tokens(ctx context.Context, q TokenQuery) ([]StoredToken, error) {
	where, args := []string{"1 = 1"}, []any{}
	if q.ProjectID != nil {
		where, args = append(where, "project_id = ?"), append(args, *q.ProjectID)
	}
	if q.ID != "" {
		where, args = append(where, "id = ?"), append(args, q.ID)
	}
	if q.Hash != nil {
		where, args = append(where, "hash = ?"), append(args, q.Hash[:])
	}
	rows, err := b.db.QueryContext(ctx, `SELECT id, project_id, name, hint, created_at, revoked_at, hash FROM tokens WHERE `+
		strings.Join(where, " AND ")+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []StoredToken{}
	for rows.Next() {
		var t StoredToken
		var created int64
		var revoked sql.NullInt64
		var hash []byte
		if err := rows.Scan(&t.ID, &t.ProjectID, &t.Name, &t.Hint, &created, &revoked, &hash); err != nil {
			return nil, err
		}
		t.CreatedAt = time.UnixMilli(created).UTC()
		if revoked.Valid {
			r := time.UnixMilli(revoked.Int64).UTC()
			t.RevokedAt = &r
		}
		copy(t.Hash[:], hash)
		out = append(out, t)
	}
	return out, rows.Err()
}

func (b *SQLiteBackend) InsertToken(ctx context.Context, t Token, hash [32]byte) error {
	return b.change(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tokens(id, project_id, name, hash, hint, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.ProjectID, t.Name, hash[:], t.Hint, t.CreatedAt.UnixMilli(), revokedMs(t.RevokedAt))
		return conflict(err)
	})
}

// revokedMs is a revocation time as stored (NULL when live).
func revokedMs(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

func (b *SQLiteBackend) RevokeToken(ctx context.Context, projectID uint32, id string, at time.Time) error {
	return b.change(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE id = ? AND project_id = ? AND revoked_at IS NULL`,
			at.UnixMilli(), id, projectID)
		return err
	})
}

func (b *SQLiteBackend) InsertEventType(ctx context.Context, et EventType) error {
	return b.change(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO event_types(project_id, slug, kind, name, description, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			et.ProjectID, et.Slug, et.Kind, et.Name, et.Description, et.CreatedAt.UnixMilli())
		return conflict(err)
	})
}

func (b *SQLiteBackend) UpdateEventType(ctx context.Context, et EventType) error {
	return b.change(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE event_types SET kind = ?, name = ?, description = ? WHERE project_id = ? AND slug = ?`,
			et.Kind, et.Name, et.Description, et.ProjectID, et.Slug)
		if err != nil {
			return err
		}
		return affected(res)
	})
}

func (b *SQLiteBackend) DeleteEventType(ctx context.Context, projectID uint32, slug string) error {
	return b.change(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM event_types WHERE project_id = ? AND slug = ?`, projectID, slug)
		if err != nil {
			return err
		}
		return affected(res)
	})
}

func (b *SQLiteBackend) InsertSchema(ctx context.Context, s StoredSchema) error {
	return b.change(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO schemas(project_id, type, body, created_at) VALUES (?, ?, ?, ?)`,
			s.ProjectID, s.Type, string(s.Body), s.CreatedAt.UnixMilli())
		return conflict(err)
	})
}

func (b *SQLiteBackend) DeleteSchema(ctx context.Context, projectID uint32, typ string) error {
	return b.change(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM schemas WHERE project_id = ? AND type = ?`, projectID, typ)
		if err != nil {
			return err
		}
		return affected(res)
	})
}

func (b *SQLiteBackend) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := b.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

func (b *SQLiteBackend) SetMeta(ctx context.Context, key, value string) error {
	_, err := b.db.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

func (b *SQLiteBackend) SetMetaOnce(ctx context.Context, key, value string) (string, error) {
	if _, err := b.db.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value WHERE meta.value = ''`,
		key, value); err != nil {
		return "", err
	}
	return b.Meta(ctx, key)
}

func (b *SQLiteBackend) AllMeta(ctx context.Context) (map[string]string, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT key, value FROM meta`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, rows.Err()
}

func (b *SQLiteBackend) AllTokens(ctx context.Context) ([]StoredToken, error) {
	return b.tokens(ctx, TokenQuery{})
}
