package project

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are the PostgreSQL schema of the projects.
var Migrations = pgmigrate.Component{Name: "projects", FS: mustSub(migrations, "migrations")}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// PostgresBackend keeps projects in PostgreSQL, shared by several nodes.
// Its schema is Migrations.
type PostgresBackend struct {
	db *pgxpool.Pool
}

var _ Backend = (*PostgresBackend)(nil)

// NewPostgres keeps projects in db (migrated). Close leaves the pool
// open: its owner closes it.
func NewPostgres(db *pgxpool.Pool) *PostgresBackend { return &PostgresBackend{db: db} }

func (b *PostgresBackend) Close() error { return nil }

// change runs fn in a transaction that moves the version.
func (b *PostgresBackend) change(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, b.db, func(tx pgx.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE state_version SET version = version + 1`)
		return err
	})
}

// pgConflict turns a uniqueness violation into ErrExists.
func pgConflict(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("%w: %s", ErrExists, pe.Message)
	}
	return err
}

func pgAffected(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

func (b *PostgresBackend) Version(ctx context.Context) (int64, error) {
	var v int64
	err := b.db.QueryRow(ctx, `SELECT version FROM state_version`).Scan(&v)
	return v, err
}

func (b *PostgresBackend) Load(ctx context.Context) (*Stored, error) {
	st := &Stored{}
	err := pgx.BeginTxFunc(ctx, b.db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT version FROM state_version`).Scan(&st.Version); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT id, name, settings, created_at FROM projects ORDER BY id`)
		var err error
		st.Projects, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (StoredProject, error) {
			var p StoredProject
			var id, created int64
			var settings string
			err := r.Scan(&id, &p.Name, &settings, &created)
			p.ID, p.Settings, p.CreatedAt = uint32(id), []byte(settings), time.UnixMilli(created).UTC()
			return p, err
		})
		if err != nil {
			return fmt.Errorf("load projects: %w", err)
		}
		rows, _ = tx.Query(ctx, `SELECT project_id, slug, kind, name, description, created_at FROM event_types`)
		st.EventTypes, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (EventType, error) {
			var et EventType
			var pid, created int64
			err := r.Scan(&pid, &et.Slug, &et.Kind, &et.Name, &et.Description, &created)
			et.ProjectID, et.CreatedAt = uint32(pid), time.UnixMilli(created).UTC()
			return et, err
		})
		if err != nil {
			return fmt.Errorf("load event types: %w", err)
		}
		rows, _ = tx.Query(ctx, `SELECT project_id, type, body, created_at FROM event_schemas`)
		st.Schemas, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (StoredSchema, error) {
			var s StoredSchema
			var pid, created int64
			var body string
			err := r.Scan(&pid, &s.Type, &body, &created)
			s.ProjectID, s.Body, s.CreatedAt = uint32(pid), []byte(body), time.UnixMilli(created).UTC()
			return s, err
		})
		if err != nil {
			return fmt.Errorf("load schemas: %w", err)
		}
		rows, _ = tx.Query(ctx, `SELECT id, project_id, hash FROM tokens WHERE revoked_at IS NULL`)
		st.Tokens, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (LiveToken, error) {
			var t LiveToken
			var pid int64
			var hash []byte
			err := r.Scan(&t.ID, &pid, &hash)
			t.ProjectID = uint32(pid)
			copy(t.Hash[:], hash)
			return t, err
		})
		if err != nil {
			return fmt.Errorf("load tokens: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (b *PostgresBackend) MaxProjectID(ctx context.Context) (int64, error) {
	var max int64
	err := b.db.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM projects`).Scan(&max)
	return max, err
}

func (b *PostgresBackend) InsertProject(ctx context.Context, p StoredProject) error {
	return b.change(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO projects (id, name, settings, created_at) VALUES ($1, $2, $3, $4)`,
			int64(p.ID), p.Name, string(p.Settings), p.CreatedAt.UnixMilli())
		return pgConflict(err)
	})
}

func (b *PostgresBackend) UpdateProject(ctx context.Context, id uint32, name string, settings []byte) error {
	return b.change(ctx, func(tx pgx.Tx) error {
		return pgAffected(tx.Exec(ctx, `UPDATE projects SET name = $2, settings = $3 WHERE id = $1`, int64(id), name, string(settings)))
	})
}

func (b *PostgresBackend) DeleteProject(ctx context.Context, id uint32) error {
	return b.change(ctx, func(tx pgx.Tx) error {
		return pgAffected(tx.Exec(ctx, `DELETE FROM projects WHERE id = $1`, int64(id)))
	})
}

func (b *PostgresBackend) Tokens(ctx context.Context, q TokenQuery) ([]Token, error) {
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

func (b *PostgresBackend) AllTokens(ctx context.Context) ([]StoredToken, error) {
	return b.tokens(ctx, TokenQuery{})
}

func (b *PostgresBackend) tokens(ctx context.Context, q TokenQuery) ([]StoredToken, error) {
	where, args := []string{"true"}, []any{}
	if q.ProjectID != nil {
		args = append(args, int64(*q.ProjectID))
		where = append(where, fmt.Sprintf("project_id = $%d", len(args)))
	}
	if q.ID != "" {
		args = append(args, q.ID)
		where = append(where, fmt.Sprintf("id = $%d", len(args)))
	}
	if q.Hash != nil {
		args = append(args, q.Hash[:])
		where = append(where, fmt.Sprintf("hash = $%d", len(args)))
	}
	rows, _ := b.db.Query(ctx, `SELECT id, project_id, name, hint, created_at, revoked_at, hash FROM tokens WHERE `+
		strings.Join(where, " AND ")+` ORDER BY created_at, id`, args...)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (StoredToken, error) {
		var t StoredToken
		var pid, created int64
		var revoked *int64
		var hash []byte
		err := r.Scan(&t.ID, &pid, &t.Name, &t.Hint, &created, &revoked, &hash)
		t.ProjectID, t.CreatedAt = uint32(pid), time.UnixMilli(created).UTC()
		if revoked != nil {
			r := time.UnixMilli(*revoked).UTC()
			t.RevokedAt = &r
		}
		copy(t.Hash[:], hash)
		return t, err
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []StoredToken{}
	}
	return out, nil
}

func (b *PostgresBackend) InsertToken(ctx context.Context, t Token, hash [32]byte) error {
	var revoked *int64
	if t.RevokedAt != nil {
		ms := t.RevokedAt.UnixMilli()
		revoked = &ms
	}
	return b.change(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO tokens (id, project_id, name, hash, hint, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			t.ID, int64(t.ProjectID), t.Name, hash[:], t.Hint, t.CreatedAt.UnixMilli(), revoked)
		return pgConflict(err)
	})
}

func (b *PostgresBackend) RevokeToken(ctx context.Context, projectID uint32, id string, at time.Time) error {
	return b.change(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE tokens SET revoked_at = $3 WHERE id = $1 AND project_id = $2 AND revoked_at IS NULL`,
			id, int64(projectID), at.UnixMilli())
		return err
	})
}

func (b *PostgresBackend) InsertEventType(ctx context.Context, et EventType) error {
	return b.change(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO event_types (project_id, slug, kind, name, description, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			int64(et.ProjectID), et.Slug, et.Kind, et.Name, et.Description, et.CreatedAt.UnixMilli())
		return pgConflict(err)
	})
}

func (b *PostgresBackend) UpdateEventType(ctx context.Context, et EventType) error {
	return b.change(ctx, func(tx pgx.Tx) error {
		return pgAffected(tx.Exec(ctx, `UPDATE event_types SET kind = $3, name = $4, description = $5 WHERE project_id = $1 AND slug = $2`,
			int64(et.ProjectID), et.Slug, et.Kind, et.Name, et.Description))
	})
}

func (b *PostgresBackend) DeleteEventType(ctx context.Context, projectID uint32, slug string) error {
	return b.change(ctx, func(tx pgx.Tx) error {
		return pgAffected(tx.Exec(ctx, `DELETE FROM event_types WHERE project_id = $1 AND slug = $2`, int64(projectID), slug))
	})
}

func (b *PostgresBackend) InsertSchema(ctx context.Context, s StoredSchema) error {
	return b.change(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO event_schemas (project_id, type, body, created_at) VALUES ($1, $2, $3, $4)`,
			int64(s.ProjectID), s.Type, string(s.Body), s.CreatedAt.UnixMilli())
		return pgConflict(err)
	})
}

func (b *PostgresBackend) DeleteSchema(ctx context.Context, projectID uint32, typ string) error {
	return b.change(ctx, func(tx pgx.Tx) error {
		return pgAffected(tx.Exec(ctx, `DELETE FROM event_schemas WHERE project_id = $1 AND type = $2`, int64(projectID), typ))
	})
}

func (b *PostgresBackend) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := b.db.QueryRow(ctx, `SELECT value FROM meta WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return v, err
}

func (b *PostgresBackend) SetMeta(ctx context.Context, key, value string) error {
	_, err := b.db.Exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}

func (b *PostgresBackend) SetMetaOnce(ctx context.Context, key, value string) (string, error) {
	if _, err := b.db.Exec(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE meta.value = ''`,
		key, value); err != nil {
		return "", err
	}
	return b.Meta(ctx, key)
}

func (b *PostgresBackend) AllMeta(ctx context.Context) (map[string]string, error) {
	rows, _ := b.db.Query(ctx, `SELECT key, value FROM meta`)
	out := map[string]string{}
	var k, v string
	_, err := pgx.ForEachRow(rows, []any{&k, &v}, func() error {
		out[k] = v
		return nil
	})
	return out, err
}
