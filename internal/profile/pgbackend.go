package profile

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are the PostgreSQL schema of the profiles.
var Migrations = pgmigrate.Component{Name: "profiles", FS: mustSub(migrations, "migrations")}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// PostgresBackend keeps profiles in PostgreSQL, shared by several nodes.
// Its schema is Migrations.
type PostgresBackend struct {
	db *pgxpool.Pool
}

var _ Backend = (*PostgresBackend)(nil)

// NewPostgres keeps profiles in db (migrated). Close leaves the pool
// open: its owner closes it.
func NewPostgres(db *pgxpool.Pool) *PostgresBackend { return &PostgresBackend{db: db} }

func (b *PostgresBackend) Close() error { return nil }

// pgQuerier is a pool or a transaction.
type pgQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// pgReader implements Reader on a pool or a transaction.
type pgReader struct{ q pgQuerier }

func (r pgReader) Owner(ctx context.Context, projectID uint32, idType, value string) (string, error) {
	var pid string
	err := r.q.QueryRow(ctx, `SELECT profile_id FROM profile_identities WHERE project_id = $1 AND type = $2 AND value = $3`,
		int64(projectID), idType, value).Scan(&pid)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return pid, err
}

func (r pgReader) Profile(ctx context.Context, pid string) (uint32, []byte, bool, error) {
	var project int64
	var doc string
	err := r.q.QueryRow(ctx, `SELECT project_id, doc FROM profiles WHERE id = $1`, pid).Scan(&project, &doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, err
	}
	return uint32(project), []byte(doc), true, nil
}

func (r pgReader) AliasInto(ctx context.Context, projectID uint32, id string) (string, error) {
	var into string
	err := r.q.QueryRow(ctx, `SELECT into_id FROM profile_aliases WHERE id = $1 AND project_id = $2`, id, int64(projectID)).Scan(&into)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return into, err
}

func (r pgReader) Observations(ctx context.Context, pid string) ([]StoredObservation, error) {
	rows, _ := r.q.Query(ctx, `SELECT event_id, project_id, time, digest, key, doc FROM profile_observations WHERE profile_id = $1`, pid)
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (StoredObservation, error) {
		o := StoredObservation{ProfileID: pid}
		var id, project int64
		var doc string
		err := row.Scan(&id, &project, &o.Time, &o.Digest, &o.Key, &doc)
		o.EventID, o.ProjectID, o.Doc = event.ID(id), uint32(project), []byte(doc)
		return o, err
	})
}

func (b *PostgresBackend) Owner(ctx context.Context, projectID uint32, idType, value string) (string, error) {
	return pgReader{b.db}.Owner(ctx, projectID, idType, value)
}

func (b *PostgresBackend) Profile(ctx context.Context, pid string) (uint32, []byte, bool, error) {
	return pgReader{b.db}.Profile(ctx, pid)
}

func (b *PostgresBackend) AliasInto(ctx context.Context, projectID uint32, id string) (string, error) {
	return pgReader{b.db}.AliasInto(ctx, projectID, id)
}

func (b *PostgresBackend) Observations(ctx context.Context, pid string) ([]StoredObservation, error) {
	return pgReader{b.db}.Observations(ctx, pid)
}

func (b *PostgresBackend) Cursor(ctx context.Context, name string) (event.ID, error) {
	var after int64
	err := b.db.QueryRow(ctx, `SELECT after FROM consumer_cursors WHERE name = $1`, name).Scan(&after)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return event.ID(after), nil
}

// likePattern translates a key glob (event.MatchGlob) into a LIKE pattern
// (backslash escapes).
func likePattern(glob string) string {
	var b strings.Builder
	for _, c := range glob {
		switch c {
		case '*':
			b.WriteByte('%')
		case '?':
			b.WriteByte('_')
		case '%', '_', '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

func (b *PostgresBackend) Timeline(ctx context.Context, pid string, q TimelineQuery) ([]TimelineEntry, error) {
	stmt := `SELECT event_id, time, key FROM profile_observations WHERE profile_id = $1`
	args := []any{pid}
	if q.BeforeTime != 0 || q.BeforeID != 0 {
		args = append(args, q.BeforeTime, int64(q.BeforeID))
		stmt += fmt.Sprintf(` AND (time < $%d OR (time = $%d AND event_id < $%d))`, len(args)-1, len(args)-1, len(args))
	}
	if q.KeyGlob != "" {
		args = append(args, likePattern(q.KeyGlob))
		stmt += fmt.Sprintf(` AND key LIKE $%d`, len(args))
	}
	args = append(args, q.Limit)
	stmt += fmt.Sprintf(` ORDER BY time DESC, event_id DESC LIMIT $%d`, len(args))
	rows, _ := b.db.Query(ctx, stmt, args...)
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (TimelineEntry, error) {
		var e TimelineEntry
		var eid int64
		err := row.Scan(&eid, &e.Time, &e.Key)
		e.EventID = event.ID(eid)
		return e, err
	})
}

func (b *PostgresBackend) EventsOf(ctx context.Context, pid string) ([]event.ID, error) {
	rows, _ := b.db.Query(ctx, `SELECT event_id FROM profile_observations WHERE profile_id = $1 ORDER BY event_id`, pid)
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (event.ID, error) {
		var id int64
		err := row.Scan(&id)
		return event.ID(id), err
	})
}

func (b *PostgresBackend) ProfileIDs(ctx context.Context, projectID uint32) ([]string, error) {
	rows, _ := b.db.Query(ctx, `SELECT id FROM profiles WHERE project_id = $1 ORDER BY id`, int64(projectID))
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Begin takes the one row of profile_version until the Tx ends: the
// writers of every node take turns.
func (b *PostgresBackend) Begin(ctx context.Context) (Tx, error) {
	tx, err := b.db.Begin(ctx)
	if err != nil {
		return nil, err
	}
	t := &pgTx{ctx: ctx, tx: tx, dirty: map[string]bool{}}
	if err := tx.QueryRow(ctx, `SELECT version FROM profile_version WHERE id = 0 FOR UPDATE`).Scan(&t.version); err != nil {
		tx.Rollback(ctx)
		return nil, err
	}
	return t, nil
}

// pgTx is a write transaction. Its writes are queued and sent together
// (one round trip), before a read of a table they write and at the
// commit: a fold writes far more than it reads back.
type pgTx struct {
	ctx     context.Context
	tx      pgx.Tx
	version int64
	queued  pgx.Batch
	dirty   map[string]bool // tables with queued writes
}

var _ Tx = (*pgTx)(nil)

// exec queues a write of table.
func (t *pgTx) exec(_ context.Context, table, sql string, args ...any) error {
	t.queued.Queue(sql, args...)
	t.dirty[table] = true
	return nil
}

// send sends the queued writes when one of them writes one of tables
// (any when none is named).
func (t *pgTx) send(ctx context.Context, tables ...string) error {
	if t.queued.Len() == 0 {
		return nil
	}
	needed := len(tables) == 0
	for _, tb := range tables {
		needed = needed || t.dirty[tb]
	}
	if !needed {
		return nil
	}
	n := t.queued.Len()
	br := t.tx.SendBatch(ctx, &t.queued)
	var err error
	for i := 0; i < n && err == nil; i++ {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	t.queued, t.dirty = pgx.Batch{}, map[string]bool{}
	return err
}

func (t *pgTx) Owner(ctx context.Context, projectID uint32, idType, value string) (string, error) {
	if err := t.send(ctx, "profile_identities"); err != nil {
		return "", err
	}
	return pgReader{t.tx}.Owner(ctx, projectID, idType, value)
}

func (t *pgTx) Profile(ctx context.Context, pid string) (uint32, []byte, bool, error) {
	if err := t.send(ctx, "profiles"); err != nil {
		return 0, nil, false, err
	}
	return pgReader{t.tx}.Profile(ctx, pid)
}

func (t *pgTx) AliasInto(ctx context.Context, projectID uint32, id string) (string, error) {
	if err := t.send(ctx, "profile_aliases"); err != nil {
		return "", err
	}
	return pgReader{t.tx}.AliasInto(ctx, projectID, id)
}

func (t *pgTx) Observations(ctx context.Context, pid string) ([]StoredObservation, error) {
	if err := t.send(ctx, "profile_observations"); err != nil {
		return nil, err
	}
	return pgReader{t.tx}.Observations(ctx, pid)
}

func (t *pgTx) Version() int64 { return t.version }

func (t *pgTx) PutProfile(ctx context.Context, pid string, projectID uint32, doc []byte) error {
	return t.exec(ctx, "profiles", `INSERT INTO profiles (id, project_id, doc) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc`,
		pid, int64(projectID), string(doc))
}

func (t *pgTx) DeleteProfile(ctx context.Context, pid string) error {
	return t.exec(ctx, "profiles", `DELETE FROM profiles WHERE id = $1`, pid)
}

func (t *pgTx) PutIdentity(ctx context.Context, projectID uint32, idType, value, pid string) error {
	return t.exec(ctx, "profile_identities", `INSERT INTO profile_identities (project_id, type, value, profile_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (project_id, type, value) DO UPDATE SET profile_id = excluded.profile_id`, int64(projectID), idType, value, pid)
}

func (t *pgTx) DeleteIdentitiesOf(ctx context.Context, pid string) error {
	return t.exec(ctx, "profile_identities", `DELETE FROM profile_identities WHERE profile_id = $1`, pid)
}

func (t *pgTx) PutAlias(ctx context.Context, id string, projectID uint32, into string) error {
	return t.exec(ctx, "profile_aliases", `INSERT INTO profile_aliases (id, project_id, into_id) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET into_id = excluded.into_id`,
		id, int64(projectID), into)
}

func (t *pgTx) RedirectAliases(ctx context.Context, from, into string) error {
	return t.exec(ctx, "profile_aliases", `UPDATE profile_aliases SET into_id = $1 WHERE into_id = $2`, into, from)
}

func (t *pgTx) DeleteAlias(ctx context.Context, id string) error {
	return t.exec(ctx, "profile_aliases", `DELETE FROM profile_aliases WHERE id = $1`, id)
}

func (t *pgTx) DeleteAliasesInto(ctx context.Context, into string) error {
	return t.exec(ctx, "profile_aliases", `DELETE FROM profile_aliases WHERE into_id = $1`, into)
}

func (t *pgTx) PutObservation(ctx context.Context, o StoredObservation) error {
	return t.exec(ctx, "profile_observations", `INSERT INTO profile_observations (event_id, project_id, profile_id, time, digest, key, doc) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (event_id) DO UPDATE SET profile_id = excluded.profile_id`,
		int64(o.EventID), int64(o.ProjectID), o.ProfileID, o.Time, o.Digest, o.Key, string(o.Doc))
}

func (t *pgTx) MoveObservations(ctx context.Context, from, into string) error {
	return t.exec(ctx, "profile_observations", `UPDATE profile_observations SET profile_id = $1 WHERE profile_id = $2`, into, from)
}

func (t *pgTx) DeleteObservationsOf(ctx context.Context, pid string) error {
	return t.exec(ctx, "profile_observations", `DELETE FROM profile_observations WHERE profile_id = $1`, pid)
}

func (t *pgTx) Cursor(ctx context.Context, name string) (event.ID, error) {
	if err := t.send(ctx, "consumer_cursors"); err != nil {
		return 0, err
	}
	var after int64
	err := t.tx.QueryRow(ctx, `SELECT after FROM consumer_cursors WHERE name = $1`, name).Scan(&after)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return event.ID(after), err
}

func (t *pgTx) SetCursor(ctx context.Context, name string, after event.ID) error {
	return t.exec(ctx, "consumer_cursors", `INSERT INTO consumer_cursors (name, after) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET after = excluded.after`,
		name, int64(after))
}

func (t *pgTx) Commit() error {
	t.queued.Queue(`UPDATE profile_version SET version = version + 1 WHERE id = 0`)
	if err := t.send(t.ctx); err != nil {
		t.tx.Rollback(t.ctx)
		return err
	}
	return t.tx.Commit(t.ctx)
}

func (t *pgTx) Rollback() error { return t.tx.Rollback(t.ctx) }

func (b *PostgresBackend) Dump(ctx context.Context, fn func(Row) error) error {
	tables := []struct {
		query string
		row   func(pgx.Rows) (Row, error)
	}{
		{`SELECT id, project_id, doc FROM profiles ORDER BY id`, func(rs pgx.Rows) (Row, error) {
			p := &StoredProfile{}
			var project int64
			var doc string
			err := rs.Scan(&p.ID, &project, &doc)
			p.ProjectID, p.Doc = uint32(project), []byte(doc)
			return Row{Profile: p}, err
		}},
		{`SELECT project_id, type, value, profile_id FROM profile_identities ORDER BY project_id, type, value`, func(rs pgx.Rows) (Row, error) {
			i := &StoredIdentity{}
			var project int64
			err := rs.Scan(&project, &i.Type, &i.Value, &i.ProfileID)
			i.ProjectID = uint32(project)
			return Row{Identity: i}, err
		}},
		{`SELECT id, project_id, into_id FROM profile_aliases ORDER BY id`, func(rs pgx.Rows) (Row, error) {
			a := &StoredAlias{}
			var project int64
			err := rs.Scan(&a.ID, &project, &a.Into)
			a.ProjectID = uint32(project)
			return Row{Alias: a}, err
		}},
		{`SELECT event_id, project_id, profile_id, time, digest, key, doc FROM profile_observations ORDER BY event_id`, func(rs pgx.Rows) (Row, error) {
			o := &StoredObservation{}
			var id, project int64
			var doc string
			err := rs.Scan(&id, &project, &o.ProfileID, &o.Time, &o.Digest, &o.Key, &doc)
			o.EventID, o.ProjectID, o.Doc = event.ID(id), uint32(project), []byte(doc)
			return Row{Observation: o}, err
		}},
		{`SELECT name, after FROM consumer_cursors ORDER BY name`, func(rs pgx.Rows) (Row, error) {
			c := &StoredCursor{}
			var after int64
			err := rs.Scan(&c.Name, &after)
			c.After = event.ID(after)
			return Row{Cursor: c}, err
		}},
	}
	for _, tb := range tables {
		rows, err := b.db.Query(ctx, tb.query)
		if err != nil {
			return fmt.Errorf("dump profiles: %w", err)
		}
		for rows.Next() {
			r, err := tb.row(rows)
			if err == nil {
				err = fn(r)
			}
			if err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("dump profiles: %w", err)
		}
	}
	return nil
}

func (b *PostgresBackend) Load(ctx context.Context, rows []Row) error {
	tx, err := b.Begin(ctx)
	if err != nil {
		return fmt.Errorf("load profiles: %w", err)
	}
	if err := loadRows(ctx, tx, rows); err != nil {
		tx.Rollback()
		return fmt.Errorf("load profiles: %w", err)
	}
	return tx.Commit()
}
