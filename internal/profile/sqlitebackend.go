package profile

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/sqlitefile"
)

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

// foldVersion is moved by every commit (Tx.Version).
const foldVersion = `
CREATE TABLE IF NOT EXISTS fold_version (
	id      INTEGER PRIMARY KEY CHECK (id = 0),
	version INTEGER NOT NULL
);
INSERT INTO fold_version(id, version) VALUES (0, 0) ON CONFLICT(id) DO NOTHING;
`

// SQLiteBackend is profiles.db: the Backend of one node.
type SQLiteBackend struct {
	db *sql.DB
}

var _ Backend = (*SQLiteBackend)(nil)

// OpenSQLite opens (creating when absent) profiles.db at path. A store
// of the older schema is emptied: the consumer rebuilds it from the log.
func OpenSQLite(path string) (*SQLiteBackend, error) {
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
	if _, err := db.Exec(foldVersion); err != nil {
		db.Close()
		return nil, fmt.Errorf("open profiles %s: %w", path, err)
	}
	return &SQLiteBackend{db: db}, nil
}

func (b *SQLiteBackend) Close() error { return b.db.Close() }

// runner is what the reads run on: the database, or a transaction.
type runner interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// sqliteReader implements Reader on a runner.
type sqliteReader struct{ r runner }

func (q sqliteReader) Owner(ctx context.Context, projectID uint32, idType, value string) (string, error) {
	var pid string
	err := q.r.QueryRowContext(ctx, `SELECT profile_id FROM identities WHERE project_id = ? AND type = ? AND value = ?`,
		int64(projectID), idType, value).Scan(&pid)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return pid, err
}

func (q sqliteReader) Profile(ctx context.Context, pid string) (uint32, []byte, bool, error) {
	var project int64
	var doc string
	err := q.r.QueryRowContext(ctx, `SELECT project_id, doc FROM profiles WHERE id = ?`, pid).Scan(&project, &doc)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, err
	}
	return uint32(project), []byte(doc), true, nil
}

func (q sqliteReader) AliasInto(ctx context.Context, projectID uint32, id string) (string, error) {
	var into string
	err := q.r.QueryRowContext(ctx, `SELECT into_id FROM aliases WHERE id = ? AND project_id = ?`, id, int64(projectID)).Scan(&into)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return into, err
}

func (q sqliteReader) Observations(ctx context.Context, pid string) ([]StoredObservation, error) {
	rows, err := q.r.QueryContext(ctx, `SELECT event_id, project_id, time, digest, key, doc FROM observations WHERE profile_id = ?`, pid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StoredObservation
	for rows.Next() {
		o := StoredObservation{ProfileID: pid}
		var id, project int64
		var doc string
		if err := rows.Scan(&id, &project, &o.Time, &o.Digest, &o.Key, &doc); err != nil {
			return nil, err
		}
		o.EventID, o.ProjectID, o.Doc = event.ID(id), uint32(project), []byte(doc)
		out = append(out, o)
	}
	return out, rows.Err()
}

func (b *SQLiteBackend) Owner(ctx context.Context, projectID uint32, idType, value string) (string, error) {
	return sqliteReader{b.db}.Owner(ctx, projectID, idType, value)
}

func (b *SQLiteBackend) Profile(ctx context.Context, pid string) (uint32, []byte, bool, error) {
	return sqliteReader{b.db}.Profile(ctx, pid)
}

func (b *SQLiteBackend) AliasInto(ctx context.Context, projectID uint32, id string) (string, error) {
	return sqliteReader{b.db}.AliasInto(ctx, projectID, id)
}

func (b *SQLiteBackend) Observations(ctx context.Context, pid string) ([]StoredObservation, error) {
	return sqliteReader{b.db}.Observations(ctx, pid)
}

func (b *SQLiteBackend) Cursor(ctx context.Context, name string) (event.ID, error) {
	var after int64
	err := b.db.QueryRowContext(ctx, `SELECT after FROM cursors WHERE name = ?`, name).Scan(&after)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return event.ID(after), nil
}

func (b *SQLiteBackend) Timeline(ctx context.Context, pid string, q TimelineQuery) ([]TimelineEntry, error) {
	stmt := `SELECT event_id, time, key FROM observations WHERE profile_id = ?`
	args := []any{pid}
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
	rows, err := b.db.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TimelineEntry
	for rows.Next() {
		var e TimelineEntry
		var eid int64
		if err := rows.Scan(&eid, &e.Time, &e.Key); err != nil {
			return nil, err
		}
		e.EventID = event.ID(eid)
		out = append(out, e)
	}
	return out, rows.Err()
}

func (b *SQLiteBackend) EventsOf(ctx context.Context, pid string) ([]event.ID, error) {
	return sqliteIDs(ctx, b.db, `SELECT event_id FROM observations WHERE profile_id = ? ORDER BY event_id`, pid)
}

func sqliteIDs(ctx context.Context, r runner, q string, args ...any) ([]event.ID, error) {
	rows, err := r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
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

func (b *SQLiteBackend) ProfileIDs(ctx context.Context, projectID uint32) ([]string, error) {
	rows, err := b.db.QueryContext(ctx, `SELECT id FROM profiles WHERE project_id = ? ORDER BY id`, int64(projectID))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

func (b *SQLiteBackend) Begin(ctx context.Context) (Tx, error) {
	tx, err := b.db.BeginTx(ctx, nil) // immediate: the one writer
	if err != nil {
		return nil, err
	}
	t := &sqliteTx{ctx: ctx, tx: tx, stmts: map[string]*sql.Stmt{}}
	if err := tx.QueryRowContext(ctx, `SELECT version FROM fold_version`).Scan(&t.version); err != nil {
		tx.Rollback()
		return nil, err
	}
	return t, nil
}

// sqliteTx is a write transaction whose statements are prepared once.
type sqliteTx struct {
	ctx     context.Context
	tx      *sql.Tx
	stmts   map[string]*sql.Stmt // prepared in tx, by query
	version int64
	pending []StoredObservation // PutObservation's, not yet written
}

var _ Tx = (*sqliteTx)(nil)

func (t *sqliteTx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := t.stmts[query]; ok {
		return st, nil
	}
	st, err := t.tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	t.stmts[query] = st
	return st, nil
}

// The runner of the Tx runs prepared statements. Their context does not
// carry ctx's cancellation: go-sqlite3 starts a goroutine for every
// statement whose context can end (to interrupt it), and the fold runs
// thousands of short statements per batch. An ended ctx still stops the
// transaction: database/sql rolls it back, and the next statement fails.
func (t *sqliteTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = context.WithoutCancel(ctx)
	st, err := t.stmt(ctx, query)
	if err != nil {
		return t.tx.QueryRowContext(ctx, query, args...) // reports err on Scan
	}
	return st.QueryRowContext(ctx, args...)
}

func (t *sqliteTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = context.WithoutCancel(ctx)
	st, err := t.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (t *sqliteTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = context.WithoutCancel(ctx)
	st, err := t.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (t *sqliteTx) exec(ctx context.Context, query string, args ...any) error {
	_, err := t.ExecContext(ctx, query, args...)
	return err
}

func (t *sqliteTx) Owner(ctx context.Context, projectID uint32, idType, value string) (string, error) {
	return sqliteReader{t}.Owner(ctx, projectID, idType, value)
}

func (t *sqliteTx) Profile(ctx context.Context, pid string) (uint32, []byte, bool, error) {
	return sqliteReader{t}.Profile(ctx, pid)
}

func (t *sqliteTx) AliasInto(ctx context.Context, projectID uint32, id string) (string, error) {
	return sqliteReader{t}.AliasInto(ctx, projectID, id)
}

func (t *sqliteTx) Observations(ctx context.Context, pid string) ([]StoredObservation, error) {
	if err := t.flushObservations(ctx); err != nil {
		return nil, err
	}
	return sqliteReader{t}.Observations(ctx, pid)
}

func (t *sqliteTx) Version() int64 { return t.version }

func (t *sqliteTx) PutProfile(ctx context.Context, pid string, projectID uint32, doc []byte) error {
	return t.exec(ctx, `INSERT INTO profiles(id, project_id, doc) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc`,
		pid, int64(projectID), string(doc))
}

func (t *sqliteTx) DeleteProfile(ctx context.Context, pid string) error {
	return t.exec(ctx, `DELETE FROM profiles WHERE id = ?`, pid)
}

func (t *sqliteTx) PutIdentity(ctx context.Context, projectID uint32, idType, value, pid string) error {
	return t.exec(ctx, `INSERT INTO identities(project_id, type, value, profile_id) VALUES (?, ?, ?, ?)
		ON CONFLICT(project_id, type, value) DO UPDATE SET profile_id = excluded.profile_id`,
		int64(projectID), idType, value, pid)
}

func (t *sqliteTx) DeleteIdentitiesOf(ctx context.Context, pid string) error {
	return t.exec(ctx, `DELETE FROM identities WHERE profile_id = ?`, pid)
}

func (t *sqliteTx) PutAlias(ctx context.Context, id string, projectID uint32, into string) error {
	return t.exec(ctx, `INSERT INTO aliases(id, project_id, into_id) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET into_id = excluded.into_id`,
		id, int64(projectID), into)
}

func (t *sqliteTx) RedirectAliases(ctx context.Context, from, into string) error {
	return t.exec(ctx, `UPDATE aliases SET into_id = ? WHERE into_id = ?`, into, from)
}

func (t *sqliteTx) DeleteAlias(ctx context.Context, id string) error {
	return t.exec(ctx, `DELETE FROM aliases WHERE id = ?`, id)
}

func (t *sqliteTx) DeleteAliasesInto(ctx context.Context, into string) error {
	return t.exec(ctx, `DELETE FROM aliases WHERE into_id = ?`, into)
}

// PutObservation queues the observation; the queue is written
// obsPerInsert rows to a statement, and before anything else in the Tx
// reads or writes observations. One statement per event was a fifth of
// the consumer's time.
func (t *sqliteTx) PutObservation(ctx context.Context, o StoredObservation) error {
	t.pending = append(t.pending, o)
	if len(t.pending) < obsPerInsert {
		return nil
	}
	return t.flushObservations(ctx)
}

// obsPerInsert is the rows of one INSERT of observations (7 parameters
// each, well under SQLite's limit).
const obsPerInsert = 64

func (t *sqliteTx) flushObservations(ctx context.Context) error {
	if len(t.pending) == 0 {
		return nil
	}
	n := len(t.pending)
	var q strings.Builder
	q.WriteString(`INSERT INTO observations(event_id, project_id, profile_id, time, digest, key, doc) VALUES `)
	for i := range n {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(`(?, ?, ?, ?, ?, ?, ?)`)
	}
	// A later row for the same event (a rebuild) moves it.
	q.WriteString(` ON CONFLICT(event_id) DO UPDATE SET profile_id = excluded.profile_id`)
	args := make([]any, 0, 7*n)
	for _, o := range t.pending {
		args = append(args, int64(o.EventID), int64(o.ProjectID), o.ProfileID, o.Time, o.Digest, o.Key, string(o.Doc))
	}
	t.pending = t.pending[:0]
	return t.exec(ctx, q.String(), args...)
}

func (t *sqliteTx) MoveObservations(ctx context.Context, from, into string) error {
	if err := t.flushObservations(ctx); err != nil {
		return err
	}
	return t.exec(ctx, `UPDATE observations SET profile_id = ? WHERE profile_id = ?`, into, from)
}

func (t *sqliteTx) DeleteObservationsOf(ctx context.Context, pid string) error {
	if err := t.flushObservations(ctx); err != nil {
		return err
	}
	return t.exec(ctx, `DELETE FROM observations WHERE profile_id = ?`, pid)
}

func (t *sqliteTx) Cursor(ctx context.Context, name string) (event.ID, error) {
	var after int64
	err := t.QueryRowContext(ctx, `SELECT after FROM cursors WHERE name = ?`, name).Scan(&after)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return event.ID(after), err
}

func (t *sqliteTx) SetCursor(ctx context.Context, name string, after event.ID) error {
	return t.exec(ctx, `INSERT INTO cursors(name, after) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET after = excluded.after`,
		name, int64(after))
}

func (t *sqliteTx) Commit() error {
	if err := t.flushObservations(t.ctx); err != nil {
		t.tx.Rollback()
		return err
	}
	if _, err := t.tx.ExecContext(t.ctx, `UPDATE fold_version SET version = version + 1`); err != nil {
		t.tx.Rollback()
		return err
	}
	return t.tx.Commit()
}

func (t *sqliteTx) Rollback() error { return t.tx.Rollback() }

func (b *SQLiteBackend) Dump(ctx context.Context, fn func(Row) error) error {
	tables := []struct {
		query string
		row   func(*sql.Rows) (Row, error)
	}{
		{`SELECT id, project_id, doc FROM profiles ORDER BY id`, func(rs *sql.Rows) (Row, error) {
			p := &StoredProfile{}
			var doc string
			err := rs.Scan(&p.ID, &p.ProjectID, &doc)
			p.Doc = []byte(doc)
			return Row{Profile: p}, err
		}},
		{`SELECT project_id, type, value, profile_id FROM identities ORDER BY project_id, type, value`, func(rs *sql.Rows) (Row, error) {
			i := &StoredIdentity{}
			err := rs.Scan(&i.ProjectID, &i.Type, &i.Value, &i.ProfileID)
			return Row{Identity: i}, err
		}},
		{`SELECT id, project_id, into_id FROM aliases ORDER BY id`, func(rs *sql.Rows) (Row, error) {
			a := &StoredAlias{}
			err := rs.Scan(&a.ID, &a.ProjectID, &a.Into)
			return Row{Alias: a}, err
		}},
		{`SELECT event_id, project_id, profile_id, time, digest, key, doc FROM observations ORDER BY event_id`, func(rs *sql.Rows) (Row, error) {
			o := &StoredObservation{}
			var id int64
			var doc string
			err := rs.Scan(&id, &o.ProjectID, &o.ProfileID, &o.Time, &o.Digest, &o.Key, &doc)
			o.EventID, o.Doc = event.ID(id), []byte(doc)
			return Row{Observation: o}, err
		}},
		{`SELECT name, after FROM cursors ORDER BY name`, func(rs *sql.Rows) (Row, error) {
			c := &StoredCursor{}
			var after int64
			err := rs.Scan(&c.Name, &after)
			c.After = event.ID(after)
			return Row{Cursor: c}, err
		}},
	}
	for _, tb := range tables {
		rows, err := b.db.QueryContext(ctx, tb.query)
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

func (b *SQLiteBackend) Load(ctx context.Context, rows []Row) error {
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

// loadRows writes rows through tx's writes.
func loadRows(ctx context.Context, tx Tx, rows []Row) error {
	for _, r := range rows {
		var err error
		switch {
		case r.Profile != nil:
			err = tx.PutProfile(ctx, r.Profile.ID, r.Profile.ProjectID, r.Profile.Doc)
		case r.Identity != nil:
			err = tx.PutIdentity(ctx, r.Identity.ProjectID, r.Identity.Type, r.Identity.Value, r.Identity.ProfileID)
		case r.Alias != nil:
			err = tx.PutAlias(ctx, r.Alias.ID, r.Alias.ProjectID, r.Alias.Into)
		case r.Observation != nil:
			err = tx.PutObservation(ctx, *r.Observation)
		case r.Cursor != nil:
			err = tx.SetCursor(ctx, r.Cursor.Name, r.Cursor.After)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sortIDs orders event ids.
func sortIDs(ids []event.ID) {
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
}
