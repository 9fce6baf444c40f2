package hook

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/pgmigrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are the PostgreSQL schema of the hooks' state.
var Migrations = pgmigrate.Component{Name: "hooks", FS: mustSub(migrations, "migrations")}

// PostgresStore is the hooks' state in PostgreSQL, shared by several
// nodes. Its schema is Migrations.
type PostgresStore struct {
	db *pgxpool.Pool
}

var _ Store = (*PostgresStore)(nil)

// NewPostgres keeps the hooks' state in db (migrated). Close leaves the
// pool open: its owner closes it.
func NewPostgres(db *pgxpool.Pool) *PostgresStore { return &PostgresStore{db: db} }

func (s *PostgresStore) Close() error { return nil }

// change runs fn in a transaction that moves the version.
func (s *PostgresStore) change(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE hook_version SET version = version + 1`)
		return err
	})
}

func (s *PostgresStore) Version(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRow(ctx, `SELECT version FROM hook_version`).Scan(&v)
	return v, err
}

const pgHookColumns = `id, spec, secrets, active, cursor, scan, stopped_reason, consecutive_dead, created_at, updated_at`

func scanHook(row pgx.Row) (StoredHook, error) {
	var h StoredHook
	var spec string
	var cursor, scan, created, updated int64
	err := row.Scan(&h.ID, &spec, &h.Secrets, &h.Active, &cursor, &scan, &h.StoppedReason, &h.DeadStreak, &created, &updated)
	h.Spec, h.Cursor, h.Scan = []byte(spec), event.ID(cursor), event.ID(scan)
	h.CreatedAt, h.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return h, err
}

func (s *PostgresStore) Hooks(ctx context.Context) ([]StoredHook, error) {
	rows, err := s.db.Query(ctx, `SELECT `+pgHookColumns+` FROM hooks ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list hooks: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (StoredHook, error) { return scanHook(r) })
	if err != nil {
		return nil, fmt.Errorf("list hooks: %w", err)
	}
	return out, nil
}

func (s *PostgresStore) Cursors(ctx context.Context) (map[string]event.ID, error) {
	rows, err := s.db.Query(ctx, `SELECT id, cursor FROM hooks`)
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

func insertHookPG(ctx context.Context, tx pgx.Tx, h StoredHook) error {
	_, err := tx.Exec(ctx, `INSERT INTO hooks (`+pgHookColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		h.ID, string(h.Spec), h.Secrets, h.Active, int64(h.Cursor), int64(h.Scan), h.StoppedReason, h.DeadStreak,
		h.CreatedAt.UnixMilli(), h.UpdatedAt.UnixMilli())
	return err
}

func (s *PostgresStore) Insert(ctx context.Context, h StoredHook) error {
	if err := s.change(ctx, func(tx pgx.Tx) error { return insertHookPG(ctx, tx, h) }); err != nil {
		return fmt.Errorf("insert hook %s: %w", h.ID, err)
	}
	return nil
}

func (s *PostgresStore) Update(ctx context.Context, h StoredHook, cursor *event.ID) error {
	err := s.change(ctx, func(tx pgx.Tx) error {
		q := `UPDATE hooks SET spec = $2, secrets = $3, active = $4, stopped_reason = $5, updated_at = $6`
		args := []any{h.ID, string(h.Spec), h.Secrets, h.Active, h.StoppedReason, h.UpdatedAt.UnixMilli()}
		if cursor != nil {
			// A new place: batches formed at the old one are dropped.
			if _, err := tx.Exec(ctx, `DELETE FROM hook_inflight WHERE hook_id = $1`, h.ID); err != nil {
				return err
			}
			q += `, cursor = $7, scan = $7, generation = generation + 1`
			args = append(args, int64(*cursor))
		}
		if h.Active {
			q += `, consecutive_dead = 0`
		}
		tag, err := tx.Exec(ctx, q+` WHERE id = $1`, args...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
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

func (s *PostgresStore) Delete(ctx context.Context, id string) error {
	err := s.change(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM hooks WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		for _, t := range []string{"hook_inflight", "hook_dead_letters", "hook_attempts"} {
			if _, err := tx.Exec(ctx, `DELETE FROM `+t+` WHERE hook_id = $1`, id); err != nil {
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

func (s *PostgresStore) Forget(ctx context.Context, ids []event.ID, at time.Time) error {
	err := s.change(ctx, func(tx pgx.Tx) error {
		arr := make([]int64, len(ids))
		for i, id := range ids {
			arr[i] = int64(id)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO hook_forgotten (event_id, erased_at) SELECT unnest($1::bigint[]), $2
			ON CONFLICT (event_id) DO UPDATE SET erased_at = excluded.erased_at`, arr, at.UnixMilli()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM hook_forgotten WHERE erased_at < $1`, at.Add(-forgetFor).UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("forget erased events: %w", err)
	}
	return nil
}

func (s *PostgresStore) Forgotten(ctx context.Context, since time.Time) ([]event.ID, error) {
	rows, err := s.db.Query(ctx, `SELECT event_id FROM hook_forgotten WHERE erased_at >= $1 ORDER BY event_id`, since.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("read erased events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (event.ID, error) {
		var id int64
		err := r.Scan(&id)
		return event.ID(id), err
	})
	if err != nil {
		return nil, fmt.Errorf("read erased events: %w", err)
	}
	return out, nil
}

func (s *PostgresStore) Claim(ctx context.Context, hookID string) (Claim, error) {
	var c Claim
	var cursor, scan int64
	err := s.db.QueryRow(ctx, `UPDATE hooks SET generation = generation + 1 WHERE id = $1 RETURNING generation, cursor, scan`, hookID).
		Scan(&c.Generation, &cursor, &scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, ErrNotFound
	}
	if err != nil {
		return c, fmt.Errorf("claim hook %s: %w", hookID, err)
	}
	c.Cursor, c.Scan = event.ID(cursor), event.ID(scan)
	return c, nil
}

// fencePG locks the hook's row until the transaction ends and fails with
// ErrFenced unless gen is its generation.
func fencePG(ctx context.Context, tx pgx.Tx, hookID string, gen int64) error {
	var g int64
	err := tx.QueryRow(ctx, `SELECT generation FROM hooks WHERE id = $1 FOR UPDATE`, hookID).Scan(&g)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && g != gen {
		return ErrFenced
	}
	return err
}

func (s *PostgresStore) Inflight(ctx context.Context, hookID string) ([]InflightBatch, error) {
	rows, err := s.db.Query(ctx, `SELECT seq, batch_id, ids, last_id, attempts FROM hook_inflight WHERE hook_id = $1 ORDER BY seq`, hookID)
	if err != nil {
		return nil, fmt.Errorf("read in-flight batches: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (InflightBatch, error) {
		var b InflightBatch
		var ids []int64
		var last int64
		err := r.Scan(&b.Seq, &b.BatchID, &ids, &last, &b.Attempts)
		b.UpTo = event.ID(last)
		b.IDs = make([]event.ID, len(ids))
		for i, id := range ids {
			b.IDs[i] = event.ID(id)
		}
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("read in-flight batches: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func int64s(ids []event.ID) []int64 {
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = int64(id)
	}
	return out
}

func (s *PostgresStore) SaveInflight(ctx context.Context, hookID string, gen int64, bs ...InflightBatch) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if err := fencePG(ctx, tx, hookID, gen); err != nil {
			return err
		}
		var upTo event.ID
		for _, b := range bs {
			if _, err := tx.Exec(ctx, `INSERT INTO hook_inflight (hook_id, seq, batch_id, ids, last_id, attempts) VALUES ($1, $2, $3, $4, $5, $6)`,
				hookID, b.Seq, b.BatchID, int64s(b.IDs), int64(b.UpTo), b.Attempts); err != nil {
				return err
			}
			upTo = max(upTo, b.UpTo)
		}
		_, err := tx.Exec(ctx, `UPDATE hooks SET scan = greatest(scan, $2) WHERE id = $1`, hookID, int64(upTo))
		return err
	})
}

func (s *PostgresStore) SaveCursor(ctx context.Context, hookID string, gen int64, c event.ID) error {
	tag, err := s.db.Exec(ctx, `UPDATE hooks SET cursor = $2 WHERE id = $1 AND cursor < $2 AND generation = $3`, hookID, int64(c), gen)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		// Nothing to move, or not this loop's to move.
		var g int64
		err := s.db.QueryRow(ctx, `SELECT generation FROM hooks WHERE id = $1`, hookID).Scan(&g)
		if errors.Is(err, pgx.ErrNoRows) || err == nil && g != gen {
			return ErrFenced
		}
		return err
	}
	return nil
}

// Retry writes the attempt log, as AddAttempt did, and the attempt's
// number with the batch in flight in the same transaction.
func (s *PostgresStore) Retry(ctx context.Context, hookID string, gen int64, seq int64, a Attempt) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if err := fencePG(ctx, tx, hookID, gen); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE hook_inflight SET attempts = greatest(attempts, $3) WHERE hook_id = $1 AND seq = $2`, hookID, seq, a.N); err != nil {
			return err
		}
		return insertAttemptPG(ctx, tx, &a)
	})
}

func (s *PostgresStore) Finish(ctx context.Context, hookID string, gen int64, f Finish) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if err := fencePG(ctx, tx, hookID, gen); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM hook_inflight WHERE hook_id = $1 AND seq = $2`, hookID, f.Seq); err != nil {
			return err
		}
		if f.Cursor > 0 {
			if _, err := tx.Exec(ctx, `UPDATE hooks SET cursor = greatest(cursor, $2) WHERE id = $1`, hookID, int64(f.Cursor)); err != nil {
				return err
			}
		}
		if f.Attempt != nil {
			if err := insertAttemptPG(ctx, tx, f.Attempt); err != nil {
				return err
			}
		}
		if dl := f.DeadLetter; dl != nil {
			if _, err := tx.Exec(ctx, `INSERT INTO hook_dead_letters (hook_id, batch_id, created_at, events, first_id, last_id, first_time, messages, attempts, last_status, last_error)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`, hookID, dl.BatchID, dl.CreatedAt.UnixMilli(), dl.Events, int64(dl.FirstID), int64(dl.LastID),
				dl.FirstTime, jsonArray(dl.messages), dl.Attempts, dl.LastStatus, dl.LastError); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE hooks SET consecutive_dead = consecutive_dead + 1 WHERE id = $1`, hookID)
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE hooks SET consecutive_dead = 0 WHERE id = $1 AND consecutive_dead <> 0`, hookID)
		return err
	})
}

func (s *PostgresStore) DeadStreak(ctx context.Context, hookID string) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT consecutive_dead FROM hooks WHERE id = $1`, hookID).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrNotFound
	}
	return n, err
}

func (s *PostgresStore) AddAttempt(ctx context.Context, a Attempt) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error { return insertAttemptPG(ctx, tx, &a) })
}

func insertAttemptPG(ctx context.Context, tx pgx.Tx, a *Attempt) error {
	var nextMs int64
	if !a.Next.IsZero() {
		nextMs = a.Next.UnixMilli()
	}
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO hook_attempts (hook_id, batch_id, attempt, events, started_at, ended_at, status, error_class, error, response, next_attempt_at, kind)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id`, a.HookID, a.BatchID, a.N, a.Events, a.Start.UnixMicro(), a.End.UnixMicro(),
		a.Status, a.ErrorClass, a.Error, a.Response, nextMs, a.Kind).Scan(&id); err != nil {
		return err
	}
	if id%100 == 0 {
		_, err := tx.Exec(ctx, `DELETE FROM hook_attempts WHERE hook_id = $1 AND id <= (SELECT id FROM hook_attempts WHERE hook_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)`,
			a.HookID, AttemptLogKeep)
		return err
	}
	return nil
}

func (s *PostgresStore) Attempts(ctx context.Context, hookID string, limit int) ([]Delivery, error) {
	return s.attempts(ctx, `SELECT id, batch_id, kind, attempt, events, started_at, ended_at, status, error_class, error, response, next_attempt_at
		FROM hook_attempts WHERE hook_id = $1 ORDER BY id DESC LIMIT $2`, hookID, limit)
}

func (s *PostgresStore) attempts(ctx context.Context, q string, args ...any) ([]Delivery, error) {
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read attempts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) {
		var d Delivery
		var st, e, next int64
		err := r.Scan(&d.ID, &d.BatchID, &d.Kind, &d.Attempt, &d.Events, &st, &e, &d.Status, &d.ErrorClass, &d.Error, &d.Response, &next)
		d.StartedAt, d.EndedAt = time.UnixMicro(st).UTC(), time.UnixMicro(e).UTC()
		if next > 0 {
			t := time.UnixMilli(next).UTC()
			d.NextAttemptAt = &t
		}
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("read attempts: %w", err)
	}
	if out == nil {
		out = []Delivery{}
	}
	return out, nil
}

func (s *PostgresStore) DeadLetters(ctx context.Context, hookID string, q DeadLetterQuery) ([]DeadLetter, error) {
	w, args := ` WHERE hook_id = $1`, []any{hookID}
	if q.ID != 0 {
		args = append(args, q.ID)
		w += fmt.Sprintf(" AND id = $%d", len(args))
	}
	if !q.Since.IsZero() {
		args = append(args, q.Since.UnixMilli())
		w += fmt.Sprintf(" AND created_at >= $%d", len(args))
	}
	if !q.Until.IsZero() {
		args = append(args, q.Until.UnixMilli())
		w += fmt.Sprintf(" AND created_at < $%d", len(args))
	}
	rows, err := s.db.Query(ctx, `SELECT id, batch_id, created_at, events, first_id, last_id, first_time, attempts, last_status, last_error, messages
		FROM hook_dead_letters`+w+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetter, error) {
		var d DeadLetter
		var created, first, last int64
		var body []byte
		err := r.Scan(&d.ID, &d.BatchID, &created, &d.Events, &first, &last, &d.FirstTime, &d.Attempts, &d.LastStatus, &d.LastError, &body)
		d.HookID, d.CreatedAt, d.FirstID, d.LastID = hookID, time.UnixMilli(created).UTC(), event.ID(first), event.ID(last)
		d.messages = splitArray(body)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	if out == nil {
		out = []DeadLetter{}
	}
	return out, nil
}

func (s *PostgresStore) RemoveDeadLetter(ctx context.Context, id int64) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM hook_dead_letters WHERE id = $1`, id); err != nil {
		return fmt.Errorf("remove dead letter %d: %w", id, err)
	}
	return nil
}

func (s *PostgresStore) DeadLetterFailed(ctx context.Context, id int64, status int, msg string) error {
	if _, err := s.db.Exec(ctx, `UPDATE hook_dead_letters SET attempts = attempts + 1, last_status = $2, last_error = $3 WHERE id = $1`,
		id, status, msg); err != nil {
		return fmt.Errorf("update dead letter %d: %w", id, err)
	}
	return nil
}

func (s *PostgresStore) EachDeadLetter(ctx context.Context, fn func(id int64, messages []byte) error) error {
	rows, err := s.db.Query(ctx, `SELECT id, messages FROM hook_dead_letters ORDER BY id`)
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	type dl struct {
		id   int64
		msgs []byte
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (dl, error) {
		var d dl
		err := r.Scan(&d.id, &d.msgs)
		return d, err
	})
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	for _, d := range all {
		if err := fn(d.id, d.msgs); err != nil {
			return err
		}
	}
	return nil
}

func (s *PostgresStore) RewriteDeadLetter(ctx context.Context, id int64, messages []byte, events int) error {
	var err error
	if events == 0 {
		_, err = s.db.Exec(ctx, `DELETE FROM hook_dead_letters WHERE id = $1`, id)
	} else {
		_, err = s.db.Exec(ctx, `UPDATE hook_dead_letters SET messages = $2, events = $3 WHERE id = $1`, id, messages, events)
	}
	if err != nil {
		return fmt.Errorf("erase from dead letter %d: %w", id, err)
	}
	return nil
}

func (s *PostgresStore) Export(ctx context.Context, hookID string) (*HookState, error) {
	h, err := scanHook(s.db.QueryRow(ctx, `SELECT `+pgHookColumns+` FROM hooks WHERE id = $1`, hookID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("export hook %s: %w", hookID, err)
	}
	out := &HookState{Hook: h}
	if out.Inflight, err = s.Inflight(ctx, hookID); err != nil {
		return nil, err
	}
	if out.Attempts, err = s.attempts(ctx, `SELECT id, batch_id, kind, attempt, events, started_at, ended_at, status, error_class, error, response, next_attempt_at
		FROM hook_attempts WHERE hook_id = $1 ORDER BY id`, hookID); err != nil {
		return nil, err
	}
	if out.DeadLetters, err = s.DeadLetters(ctx, hookID, DeadLetterQuery{}); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *PostgresStore) Import(ctx context.Context, st *HookState) error {
	h := st.Hook
	err := s.change(ctx, func(tx pgx.Tx) error {
		if err := insertHookPG(ctx, tx, h); err != nil {
			return err
		}
		for _, b := range st.Inflight {
			if _, err := tx.Exec(ctx, `INSERT INTO hook_inflight (hook_id, seq, batch_id, ids, last_id, attempts) VALUES ($1, $2, $3, $4, $5, $6)`,
				h.ID, b.Seq, b.BatchID, int64s(b.IDs), int64(b.UpTo), b.Attempts); err != nil {
				return err
			}
		}
		for _, d := range st.Attempts {
			if err := insertAttemptPG(ctx, tx, d.attempt(h.ID)); err != nil {
				return err
			}
		}
		for _, d := range st.DeadLetters {
			if _, err := tx.Exec(ctx, `INSERT INTO hook_dead_letters (id, hook_id, batch_id, created_at, events, first_id, last_id, first_time, messages, attempts, last_status, last_error)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`, d.ID, h.ID, d.BatchID, d.CreatedAt.UnixMilli(), d.Events, int64(d.FirstID), int64(d.LastID),
				d.FirstTime, jsonArray(d.messages), d.Attempts, d.LastStatus, d.LastError); err != nil {
				return err
			}
		}
		// Dead letters made after go on above the ids kept.
		_, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence('hook_dead_letters', 'id'), coalesce((SELECT max(id) FROM hook_dead_letters), 0) + 1, false)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("import hook %s: %w", h.ID, err)
	}
	return nil
}

// mustSub is the sub-tree dir of fsys, which is there (embedded).
func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
