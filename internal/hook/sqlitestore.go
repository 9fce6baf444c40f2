package hook

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/sqlitefile"
)

const hooksSchema = `
CREATE TABLE IF NOT EXISTS hooks (
	id               TEXT PRIMARY KEY,
	spec             TEXT NOT NULL,    -- the hook as JSON, without secrets
	secrets          BLOB NOT NULL,    -- AES-GCM sealed JSON of the secrets
	active           INTEGER NOT NULL,
	cursor           INTEGER NOT NULL, -- every event up to here is delivered or parked
	scan             INTEGER NOT NULL DEFAULT 0, -- batches are formed after here
	stopped_reason   TEXT NOT NULL DEFAULT '',
	consecutive_dead INTEGER NOT NULL DEFAULT 0,
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL,
	generation       INTEGER NOT NULL DEFAULT 0 -- of the delivery loop (Claim)
);
-- A batch between "formed" and "delivered or parked": rebuilt exactly,
-- with the same id, after a restart.
CREATE TABLE IF NOT EXISTS inflight (
	hook_id  TEXT NOT NULL,
	seq      INTEGER NOT NULL,
	batch_id TEXT NOT NULL,
	ids      TEXT NOT NULL,            -- JSON array of event ids
	last_id  INTEGER NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0, -- made so far (Store.Retry)
	PRIMARY KEY (hook_id, seq)
);
CREATE TABLE IF NOT EXISTS dead_letters (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	hook_id     TEXT NOT NULL,
	batch_id    TEXT NOT NULL,
	created_at  INTEGER NOT NULL,
	events      INTEGER NOT NULL,
	first_id    INTEGER NOT NULL,
	last_id     INTEGER NOT NULL,
	first_time  INTEGER NOT NULL,      -- event time of the first event
	messages    BLOB NOT NULL,         -- JSON array of the messages as last sent
	attempts    INTEGER NOT NULL,
	last_status INTEGER NOT NULL,
	last_error  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_hook ON dead_letters(hook_id, id);
CREATE TABLE IF NOT EXISTS deliveries (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	hook_id         TEXT NOT NULL,
	batch_id        TEXT NOT NULL,
	attempt         INTEGER NOT NULL,
	events          INTEGER NOT NULL,
	started_at      INTEGER NOT NULL,  -- Unix µs
	ended_at        INTEGER NOT NULL,
	status          INTEGER NOT NULL,
	error_class     TEXT NOT NULL,
	error           TEXT NOT NULL,
	response        TEXT NOT NULL,     -- the first 1 KiB
	next_attempt_at INTEGER NOT NULL,  -- Unix ms, 0 when none
	kind            TEXT NOT NULL      -- delivery, replay
);
CREATE INDEX IF NOT EXISTS deliveries_hook ON deliveries(hook_id, id);
-- Moved by every change of a definition (Store.Version).
CREATE TABLE IF NOT EXISTS hooks_version (
	id      INTEGER PRIMARY KEY CHECK (id = 0),
	version INTEGER NOT NULL
);
INSERT INTO hooks_version(id, version) VALUES (0, 0) ON CONFLICT(id) DO NOTHING;
-- Events erased while batches holding them may be in flight.
CREATE TABLE IF NOT EXISTS forgotten (
	event_id  INTEGER PRIMARY KEY,
	erased_at INTEGER NOT NULL -- Unix ms
);
`

// SQLiteStore is hooks.db: the Store of one node.
type SQLiteStore struct {
	db *sql.DB
	// The delivery loops' writes, grouped into shared transactions.
	group *committer
}

var _ Store = (*SQLiteStore)(nil)

// OpenSQLite opens (creating when absent) hooks.db at path, bringing one
// of an earlier version up to date.
func OpenSQLite(path string) (*SQLiteStore, error) {
	v := url.Values{}
	v.Set("_journal_mode", "WAL")
	v.Set("_synchronous", "FULL") // the cursor is the at-least-once promise
	v.Set("_busy_timeout", "10000")
	v.Set("_txlock", "immediate")
	v.Set("_stmt_cache_size", "32") // the delivery loops' writes, prepared once
	// Kept -wal and -shm files let a start on a full disk open it.
	db := sqlitefile.Open("file:"+(&url.URL{Path: path}).EscapedPath()+"?"+v.Encode(), sqlitefile.DefaultWALLimit)
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(hooksSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open hooks %s: %w", path, err)
	}
	if err := migrateSQLite(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open hooks %s: %w", path, err)
	}
	return &SQLiteStore{db: db, group: newCommitter(db)}, nil
}

// migrateSQLite brings a hooks.db of an earlier version up to date: the
// columns added since are added (CREATE TABLE IF NOT EXISTS left the
// tables it had as they were).
func migrateSQLite(db *sql.DB) error {
	for _, c := range []struct{ table, name, def string }{
		{"hooks", "scan", "INTEGER NOT NULL DEFAULT 0"},
		{"hooks", "generation", "INTEGER NOT NULL DEFAULT 0"},
		{"inflight", "attempts", "INTEGER NOT NULL DEFAULT 0"},
	} {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM pragma_table_info(?) WHERE name = ?`, c.table, c.name).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			if _, err := db.Exec(`ALTER TABLE ` + c.table + ` ADD COLUMN ` + c.name + ` ` + c.def); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close closes hooks.db.
func (s *SQLiteStore) Close() error {
	s.group.close()
	return s.db.Close()
}

func (s *SQLiteStore) Hooks(ctx context.Context) ([]StoredHook, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, spec, secrets, active, cursor, scan, stopped_reason, consecutive_dead, created_at, updated_at FROM hooks ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list hooks: %w", err)
	}
	defer rows.Close()
	var out []StoredHook
	for rows.Next() {
		var h StoredHook
		var spec string
		var active int
		var cursor, scan, created, updated int64
		if err := rows.Scan(&h.ID, &spec, &h.Secrets, &active, &cursor, &scan, &h.StoppedReason, &h.DeadStreak, &created, &updated); err != nil {
			return nil, fmt.Errorf("list hooks: %w", err)
		}
		h.Spec, h.Active, h.Cursor, h.Scan = []byte(spec), active == 1, event.ID(cursor), event.ID(scan)
		h.CreatedAt, h.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list hooks: %w", err)
	}
	return out, nil
}

func (s *SQLiteStore) Cursors(ctx context.Context) (map[string]event.ID, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, cursor FROM hooks`)
	if err != nil {
		return nil, fmt.Errorf("read hook cursors: %w", err)
	}
	defer rows.Close()
	out := map[string]event.ID{}
	for rows.Next() {
		var id string
		var c int64
		if err := rows.Scan(&id, &c); err != nil {
			return nil, fmt.Errorf("read hook cursors: %w", err)
		}
		out[id] = event.ID(c)
	}
	return out, rows.Err()
}

func (s *SQLiteStore) Insert(ctx context.Context, h StoredHook) error {
	err := s.change(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO hooks(id, spec, secrets, active, cursor, scan, stopped_reason, consecutive_dead, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, h.ID, string(h.Spec), h.Secrets, b2i(h.Active), int64(h.Cursor), int64(h.Scan),
			h.StoppedReason, h.DeadStreak, h.CreatedAt.UnixMilli(), h.UpdatedAt.UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("insert hook %s: %w", h.ID, err)
	}
	return nil
}

// change runs fn in a transaction that moves the version.
func (s *SQLiteStore) change(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE hooks_version SET version = version + 1`); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *SQLiteStore) Version(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, `SELECT version FROM hooks_version`).Scan(&v)
	return v, err
}

func (s *SQLiteStore) Forget(ctx context.Context, ids []event.ID, at time.Time) error {
	err := s.change(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `INSERT INTO forgotten(event_id, erased_at) VALUES (?, ?) ON CONFLICT(event_id) DO UPDATE SET erased_at = excluded.erased_at`,
				int64(id), at.UnixMilli()); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM forgotten WHERE erased_at < ?`, at.Add(-forgetFor).UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("forget erased events: %w", err)
	}
	return nil
}

func (s *SQLiteStore) Forgotten(ctx context.Context, since time.Time) ([]event.ID, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT event_id FROM forgotten WHERE erased_at >= ? ORDER BY event_id`, since.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("read erased events: %w", err)
	}
	defer rows.Close()
	var out []event.ID
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read erased events: %w", err)
		}
		out = append(out, event.ID(id))
	}
	return out, rows.Err()
}

func (s *SQLiteStore) Update(ctx context.Context, h StoredHook, cursor *event.ID) error {
	err := s.change(ctx, func(tx *sql.Tx) error {
		q := `UPDATE hooks SET spec = ?, secrets = ?, active = ?, stopped_reason = ?, updated_at = ?`
		args := []any{string(h.Spec), h.Secrets, b2i(h.Active), h.StoppedReason, h.UpdatedAt.UnixMilli()}
		if cursor != nil {
			// A new place: batches formed at the old one are dropped.
			if _, err := tx.ExecContext(ctx, `DELETE FROM inflight WHERE hook_id = ?`, h.ID); err != nil {
				return err
			}
			q += `, cursor = ?, scan = ?, generation = generation + 1`
			args = append(args, int64(*cursor), int64(*cursor))
		}
		if h.Active {
			q += `, consecutive_dead = 0`
		}
		res, err := tx.ExecContext(ctx, q+` WHERE id = ?`, append(args, h.ID)...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("update hook %s: %w", h.ID, err)
	}
	return nil
}

func (s *SQLiteStore) Delete(ctx context.Context, id string) error {
	err := s.change(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM hooks WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		for _, t := range []string{"inflight", "dead_letters", "deliveries"} {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+t+` WHERE hook_id = ?`, id); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("delete hook %s: %w", id, err)
	}
	return nil
}

func (s *SQLiteStore) Claim(ctx context.Context, hookID string) (Claim, error) {
	var c Claim
	var cursor, scan int64
	err := s.db.QueryRowContext(ctx, `UPDATE hooks SET generation = generation + 1 WHERE id = ? RETURNING generation, cursor, scan`, hookID).
		Scan(&c.Generation, &cursor, &scan)
	if errors.Is(err, sql.ErrNoRows) {
		return c, ErrNotFound
	}
	if err != nil {
		return c, fmt.Errorf("claim hook %s: %w", hookID, err)
	}
	c.Cursor, c.Scan = event.ID(cursor), event.ID(scan)
	return c, nil
}

// fence fails with ErrFenced unless gen is the hook's generation.
func fenceSQLite(tx *sql.Tx, hookID string, gen int64) error {
	var g int64
	err := tx.QueryRow(`SELECT generation FROM hooks WHERE id = ?`, hookID).Scan(&g)
	if errors.Is(err, sql.ErrNoRows) || err == nil && g != gen {
		return ErrFenced
	}
	return err
}

func (s *SQLiteStore) Inflight(ctx context.Context, hookID string) ([]InflightBatch, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, batch_id, ids, last_id, attempts FROM inflight WHERE hook_id = ? ORDER BY seq`, hookID)
	if err != nil {
		return nil, fmt.Errorf("read in-flight batches: %w", err)
	}
	defer rows.Close()
	var out []InflightBatch
	for rows.Next() {
		var b InflightBatch
		var ids string
		var last int64
		if err := rows.Scan(&b.Seq, &b.BatchID, &ids, &last, &b.Attempts); err != nil {
			return nil, fmt.Errorf("read in-flight batches: %w", err)
		}
		b.UpTo = event.ID(last)
		if err := json.Unmarshal([]byte(ids), &b.IDs); err != nil {
			return nil, fmt.Errorf("read in-flight batch %s: %w", b.BatchID, err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

func (s *SQLiteStore) SaveInflight(ctx context.Context, hookID string, gen int64, bs ...InflightBatch) error {
	var upTo event.ID
	for _, b := range bs {
		upTo = max(upTo, b.UpTo)
	}
	return s.group.write(ctx, func(tx *sql.Tx) error {
		if err := fencedExec(tx, `UPDATE hooks SET scan = max(scan, ?) WHERE id = ? AND generation = ?`, int64(upTo), hookID, gen); err != nil {
			return err
		}
		for _, b := range bs {
			ids, _ := json.Marshal(b.IDs)
			if _, err := tx.Exec(`INSERT INTO inflight(hook_id, seq, batch_id, ids, last_id, attempts) VALUES (?, ?, ?, ?, ?, ?)`,
				hookID, b.Seq, b.BatchID, string(ids), int64(b.UpTo), b.Attempts); err != nil {
				return err
			}
		}
		return nil
	})
}

// fencedExec runs an UPDATE of one hook's row that names its generation:
// ErrFenced when it changed nothing (the hook is gone or was claimed by
// a newer loop).
func fencedExec(tx *sql.Tx, q string, args ...any) error {
	res, err := tx.Exec(q, args...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrFenced
	}
	return nil
}

func (s *SQLiteStore) SaveCursor(ctx context.Context, hookID string, gen int64, c event.ID) error {
	return s.group.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE hooks SET cursor = ? WHERE id = ? AND cursor < ? AND generation = ?`, int64(c), hookID, int64(c), gen)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			// Nothing to move, or not this loop's to move.
			return fenceSQLite(tx, hookID, gen)
		}
		return nil
	})
}

// Retry shares the group commit of the other writes of the delivery
// loops: the attempt log was written there before, and the number of the
// attempt rides in the same transaction (no commit of its own).
func (s *SQLiteStore) Retry(ctx context.Context, hookID string, gen int64, seq int64, a Attempt) error {
	return s.group.write(ctx, func(tx *sql.Tx) error {
		if err := fenceSQLite(tx, hookID, gen); err != nil {
			return err
		}
		if _, err := tx.Exec(`UPDATE inflight SET attempts = max(attempts, ?) WHERE hook_id = ? AND seq = ?`, a.N, hookID, seq); err != nil {
			return err
		}
		return insertAttemptSQLite(tx, &a)
	})
}

func (s *SQLiteStore) Finish(ctx context.Context, hookID string, gen int64, f Finish) error {
	return s.group.write(ctx, func(tx *sql.Tx) error { return finishSQLite(tx, hookID, gen, f) })
}

func finishSQLite(tx *sql.Tx, hookID string, gen int64, f Finish) error {
	// The hook's row first: it fences the loop, moves the cursor and the
	// streak of dead letters in one statement.
	if err := fencedExec(tx, `UPDATE hooks SET cursor = max(cursor, ?), consecutive_dead = CASE WHEN ? THEN consecutive_dead + 1 ELSE 0 END
		WHERE id = ? AND generation = ?`, int64(f.Cursor), f.DeadLetter != nil, hookID, gen); err != nil {
		return err
	}
	if _, err := tx.Exec(`DELETE FROM inflight WHERE hook_id = ? AND seq = ?`, hookID, f.Seq); err != nil {
		return err
	}
	if f.Attempt != nil {
		if err := insertAttemptSQLite(tx, f.Attempt); err != nil {
			return err
		}
	}
	if dl := f.DeadLetter; dl != nil {
		if _, err := tx.Exec(`INSERT INTO dead_letters(hook_id, batch_id, created_at, events, first_id, last_id, first_time, messages, attempts, last_status, last_error)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, hookID, dl.BatchID, dl.CreatedAt.UnixMilli(), dl.Events, int64(dl.FirstID), int64(dl.LastID),
			dl.FirstTime, jsonArray(dl.messages), dl.Attempts, dl.LastStatus, dl.LastError); err != nil {
			return err
		}
	}
	return nil
}

func (s *SQLiteStore) DeadStreak(ctx context.Context, hookID string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT consecutive_dead FROM hooks WHERE id = ?`, hookID).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return n, err
}

type execer interface {
	Exec(query string, args ...any) (sql.Result, error)
}

func (s *SQLiteStore) AddAttempt(ctx context.Context, a Attempt) error {
	return s.group.write(ctx, func(tx *sql.Tx) error { return insertAttemptSQLite(tx, &a) })
}

func insertAttemptSQLite(db execer, a *Attempt) error {
	var nextMs int64
	if !a.Next.IsZero() {
		nextMs = a.Next.UnixMilli()
	}
	res, err := db.Exec(`INSERT INTO deliveries(hook_id, batch_id, attempt, events, started_at, ended_at, status, error_class, error, response, next_attempt_at, kind)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, a.HookID, a.BatchID, a.N, a.Events, a.Start.UnixMicro(), a.End.UnixMicro(), a.Status, a.ErrorClass, a.Error, a.Response, nextMs, a.Kind)
	if err != nil {
		return err
	}
	if id, _ := res.LastInsertId(); id%100 == 0 {
		_, err = db.Exec(`DELETE FROM deliveries WHERE hook_id = ? AND id <= (SELECT id FROM deliveries WHERE hook_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`,
			a.HookID, a.HookID, AttemptLogKeep)
	}
	return err
}

func (s *SQLiteStore) Attempts(ctx context.Context, hookID string, limit int) ([]Delivery, error) {
	return s.attempts(ctx, `SELECT id, batch_id, kind, attempt, events, started_at, ended_at, status, error_class, error, response, next_attempt_at
		FROM deliveries WHERE hook_id = ? ORDER BY id DESC LIMIT ?`, hookID, limit)
}

func (s *SQLiteStore) attempts(ctx context.Context, q string, args ...any) ([]Delivery, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read attempts: %w", err)
	}
	defer rows.Close()
	out := []Delivery{}
	for rows.Next() {
		var d Delivery
		var st, e, next int64
		if err := rows.Scan(&d.ID, &d.BatchID, &d.Kind, &d.Attempt, &d.Events, &st, &e, &d.Status, &d.ErrorClass, &d.Error, &d.Response, &next); err != nil {
			return nil, fmt.Errorf("read attempts: %w", err)
		}
		d.StartedAt, d.EndedAt = time.UnixMicro(st).UTC(), time.UnixMicro(e).UTC()
		if next > 0 {
			t := time.UnixMilli(next).UTC()
			d.NextAttemptAt = &t
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (q DeadLetterQuery) where() (string, []any) {
	w, args := "", []any{}
	if q.ID != 0 {
		w += " AND id = ?"
		args = append(args, q.ID)
	}
	if !q.Since.IsZero() {
		w += " AND created_at >= ?"
		args = append(args, q.Since.UnixMilli())
	}
	if !q.Until.IsZero() {
		w += " AND created_at < ?"
		args = append(args, q.Until.UnixMilli())
	}
	return w, args
}

func (s *SQLiteStore) DeadLetters(ctx context.Context, hookID string, q DeadLetterQuery) ([]DeadLetter, error) {
	w, args := q.where()
	rows, err := s.db.QueryContext(ctx, `SELECT id, batch_id, created_at, events, first_id, last_id, first_time, attempts, last_status, last_error, messages
		FROM dead_letters WHERE hook_id = ?`+w+` ORDER BY id`, append([]any{hookID}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	defer rows.Close()
	out := []DeadLetter{}
	for rows.Next() {
		var d DeadLetter
		var created, first, last int64
		var body []byte
		if err := rows.Scan(&d.ID, &d.BatchID, &created, &d.Events, &first, &last, &d.FirstTime, &d.Attempts, &d.LastStatus, &d.LastError, &body); err != nil {
			return nil, fmt.Errorf("read dead letters: %w", err)
		}
		d.HookID, d.CreatedAt, d.FirstID, d.LastID = hookID, time.UnixMilli(created).UTC(), event.ID(first), event.ID(last)
		d.messages = splitArray(body)
		out = append(out, d)
	}
	return out, rows.Err()
}

// splitArray is the elements of a JSON array of messages.
func splitArray(body []byte) [][]byte {
	var msgs []json.RawMessage
	_ = json.Unmarshal(body, &msgs)
	out := make([][]byte, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, m)
	}
	return out
}

func (s *SQLiteStore) RemoveDeadLetter(ctx context.Context, id int64) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM dead_letters WHERE id = ?`, id); err != nil {
		return fmt.Errorf("remove dead letter %d: %w", id, err)
	}
	return nil
}

func (s *SQLiteStore) DeadLetterFailed(ctx context.Context, id int64, status int, msg string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE dead_letters SET attempts = attempts + 1, last_status = ?, last_error = ? WHERE id = ?`,
		status, msg, id); err != nil {
		return fmt.Errorf("update dead letter %d: %w", id, err)
	}
	return nil
}

func (s *SQLiteStore) EachDeadLetter(ctx context.Context, fn func(id int64, messages []byte) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT id, messages FROM dead_letters`)
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	type dl struct {
		id   int64
		msgs []byte
	}
	var all []dl
	for rows.Next() {
		var d dl
		if err := rows.Scan(&d.id, &d.msgs); err != nil {
			rows.Close()
			return fmt.Errorf("read dead letters: %w", err)
		}
		all = append(all, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	// fn may write: the one connection is free again.
	for _, d := range all {
		if err := fn(d.id, d.msgs); err != nil {
			return err
		}
	}
	return nil
}

func (s *SQLiteStore) RewriteDeadLetter(ctx context.Context, id int64, messages []byte, events int) error {
	var err error
	if events == 0 {
		_, err = s.db.ExecContext(ctx, `DELETE FROM dead_letters WHERE id = ?`, id)
	} else {
		_, err = s.db.ExecContext(ctx, `UPDATE dead_letters SET messages = ?, events = ? WHERE id = ?`, messages, events, id)
	}
	if err != nil {
		return fmt.Errorf("erase from dead letter %d: %w", id, err)
	}
	return nil
}

func (s *SQLiteStore) Export(ctx context.Context, hookID string) (*HookState, error) {
	hs, err := s.Hooks(ctx)
	if err != nil {
		return nil, err
	}
	out := &HookState{}
	found := false
	for _, h := range hs {
		if h.ID == hookID {
			out.Hook, found = h, true
		}
	}
	if !found {
		return nil, ErrNotFound
	}
	if out.Inflight, err = s.Inflight(ctx, hookID); err != nil {
		return nil, err
	}
	if out.Attempts, err = s.attempts(ctx, `SELECT id, batch_id, kind, attempt, events, started_at, ended_at, status, error_class, error, response, next_attempt_at
		FROM deliveries WHERE hook_id = ? ORDER BY id`, hookID); err != nil {
		return nil, err
	}
	if out.DeadLetters, err = s.DeadLetters(ctx, hookID, DeadLetterQuery{}); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *SQLiteStore) Import(ctx context.Context, st *HookState) error {
	h := st.Hook
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("import hook %s: %w", h.ID, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO hooks(id, spec, secrets, active, cursor, scan, stopped_reason, consecutive_dead, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, h.ID, string(h.Spec), h.Secrets, b2i(h.Active), int64(h.Cursor), int64(h.Scan),
		h.StoppedReason, h.DeadStreak, h.CreatedAt.UnixMilli(), h.UpdatedAt.UnixMilli()); err != nil {
		return fmt.Errorf("import hook %s: %w", h.ID, err)
	}
	for _, b := range st.Inflight {
		ids, _ := json.Marshal(b.IDs)
		if _, err := tx.ExecContext(ctx, `INSERT INTO inflight(hook_id, seq, batch_id, ids, last_id, attempts) VALUES (?, ?, ?, ?, ?, ?)`,
			h.ID, b.Seq, b.BatchID, string(ids), int64(b.UpTo), b.Attempts); err != nil {
			return fmt.Errorf("import hook %s: %w", h.ID, err)
		}
	}
	for _, d := range st.Attempts {
		if err := insertAttemptSQLite(tx, d.attempt(h.ID)); err != nil {
			return fmt.Errorf("import hook %s: %w", h.ID, err)
		}
	}
	for _, d := range st.DeadLetters {
		if _, err := tx.ExecContext(ctx, `INSERT INTO dead_letters(id, hook_id, batch_id, created_at, events, first_id, last_id, first_time, messages, attempts, last_status, last_error)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, d.ID, h.ID, d.BatchID, d.CreatedAt.UnixMilli(), d.Events, int64(d.FirstID), int64(d.LastID),
			d.FirstTime, jsonArray(d.messages), d.Attempts, d.LastStatus, d.LastError); err != nil {
			return fmt.Errorf("import hook %s: %w", h.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("import hook %s: %w", h.ID, err)
	}
	return nil
}

// attempt is d as written again, for hook hookID.
func (d Delivery) attempt(hookID string) *Attempt {
	a := &Attempt{HookID: hookID, BatchID: d.BatchID, N: d.Attempt, Events: d.Events, Start: d.StartedAt, End: d.EndedAt, Status: d.Status,
		ErrorClass: d.ErrorClass, Error: d.Error, Response: d.Response, Kind: d.Kind}
	if d.NextAttemptAt != nil {
		a.Next = *d.NextAttemptAt
	}
	return a
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
