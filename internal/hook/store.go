package hook

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
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
	updated_at       INTEGER NOT NULL
);
-- A batch between "formed" and "delivered or parked": rebuilt exactly,
-- with the same id, after a restart.
CREATE TABLE IF NOT EXISTS inflight (
	hook_id  TEXT NOT NULL,
	seq      INTEGER NOT NULL,
	batch_id TEXT NOT NULL,
	ids      TEXT NOT NULL,            -- JSON array of event ids
	last_id  INTEGER NOT NULL,
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
`

// secrets is what a hook keeps sealed.
type secrets struct {
	// Values are the write-only settings of the hook's type, by the
	// names its Secrets give.
	Values map[string]string `json:"values,omitempty"`
	// Password and Token are where versions before Values kept them:
	// read (as the values "password" and "token"), never written.
	Password string   `json:"password,omitempty"`
	Token    string   `json:"token,omitempty"`
	Signing  []string `json:"signing"` // current first
	// PreviousUntil ends the rotation: after it only Signing[0] signs.
	PreviousUntil int64 `json:"previous_until,omitempty"`
}

// store is hooks.db.
type store struct {
	db   *sql.DB
	aead cipher.AEAD
}

func openStore(path, keyPath string) (*store, error) {
	key, err := loadKey(keyPath)
	if err != nil {
		return nil, err
	}
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	v := url.Values{}
	v.Set("_journal_mode", "WAL")
	v.Set("_synchronous", "FULL") // the cursor is the at-least-once promise
	v.Set("_busy_timeout", "10000")
	v.Set("_txlock", "immediate")
	// Kept -wal and -shm files let a start on a full disk open it.
	db := sqlitefile.Open("file:"+(&url.URL{Path: path}).EscapedPath()+"?"+v.Encode(), sqlitefile.DefaultWALLimit)
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(hooksSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open hooks %s: %w", path, err)
	}
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open hooks %s: %w", path, err)
	}
	return &store{db: db, aead: aead}, nil
}

// migrate brings a hooks.db of an earlier version up to date.
func migrate(db *sql.DB) error {
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pragma_table_info('hooks') WHERE name = 'scan'`).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		if _, err := db.Exec(`ALTER TABLE hooks ADD COLUMN scan INTEGER NOT NULL DEFAULT 0`); err != nil {
			return err
		}
	}
	return nil
}

// loadKey reads the 32-byte key that seals hook secrets, creating it (0600)
// on first use.
func loadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := hex.DecodeString(string(trimNL(b)))
		if err != nil || len(k) != 32 {
			return nil, fmt.Errorf("hook secret key %s is not 64 hex digits", path)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("hook secret key: %w", err)
	}
	k := make([]byte, 32)
	rand.Read(k)
	if err := os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("hook secret key: %w", err)
	}
	return k, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func (s *store) seal(sec secrets) []byte {
	plain, _ := json.Marshal(sec)
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, nil)
}

func (s *store) open(b []byte) (secrets, error) {
	var sec secrets
	n := s.aead.NonceSize()
	if len(b) < n {
		return sec, errors.New("sealed secrets too short")
	}
	plain, err := s.aead.Open(nil, b[:n], b[n:], nil)
	if err != nil {
		return sec, fmt.Errorf("open hook secrets (is hooks.key the one they were sealed with?): %w", err)
	}
	if err := json.Unmarshal(plain, &sec); err != nil {
		return sec, err
	}
	if sec.Values == nil {
		sec.Values = map[string]string{}
	}
	for name, v := range map[string]string{"password": sec.Password, "token": sec.Token} {
		if v != "" && sec.Values[name] == "" {
			sec.Values[name] = v
		}
	}
	sec.Password, sec.Token = "", ""
	return sec, nil
}

// withValues is s with given replacing the values of the same names (a
// copy: s is left as it is).
func (s secrets) withValues(given map[string]string) secrets {
	v := make(map[string]string, len(s.Values)+len(given))
	for k, x := range s.Values {
		v[k] = x
	}
	for k, x := range given {
		v[k] = x
	}
	s.Values = v
	return s
}

// NewSecret makes a whsec_ signing secret (32 random bytes).
func NewSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// row is a stored hook with its secrets.
type row struct {
	hook    Hook
	secrets secrets
	dead    int // consecutive dead letters
}

func (s *store) list(ctx context.Context) ([]*row, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, spec, secrets, active, cursor, scan, stopped_reason, consecutive_dead, created_at, updated_at FROM hooks ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list hooks: %w", err)
	}
	defer rows.Close()
	var out []*row
	for rows.Next() {
		var r row
		var spec string
		var sealed []byte
		var active int
		var cursor, scan, created, updated int64
		if err := rows.Scan(&r.hook.ID, &spec, &sealed, &active, &cursor, &scan, &r.hook.StoppedReason, &r.dead, &created, &updated); err != nil {
			return nil, err
		}
		id, reason := r.hook.ID, r.hook.StoppedReason
		if err := json.Unmarshal([]byte(spec), &r.hook); err != nil {
			return nil, fmt.Errorf("hook %s: %w", id, err)
		}
		r.hook.ID, r.hook.StoppedReason = id, reason
		r.hook.Active, r.hook.Cursor, r.hook.scan = active == 1, event.ID(cursor), event.ID(scan)
		r.hook.CreatedAt, r.hook.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		if r.secrets, err = s.open(sealed); err != nil {
			return nil, fmt.Errorf("hook %s: %w", id, err)
		}
		out = append(out, &r)
	}
	return out, rows.Err()
}

// specJSON is the hook without state and secrets.
func specJSON(h Hook) (string, error) {
	h = h.withoutSecrets()
	h.Cursor, h.StoppedReason, h.CreatedAt, h.UpdatedAt, h.SigningSecret, h.Active = 0, "", time.Time{}, time.Time{}, "", false
	b, err := json.Marshal(h)
	return string(b), err
}

func (s *store) insert(ctx context.Context, r *row) error {
	spec, err := specJSON(r.hook)
	if err != nil {
		return fmt.Errorf("insert hook: %w", err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO hooks(id, spec, secrets, active, cursor, scan, stopped_reason, consecutive_dead, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, '', 0, ?, ?)`, r.hook.ID, spec, s.seal(r.secrets), b2i(r.hook.Active), int64(r.hook.Cursor), int64(r.hook.Cursor),
		r.hook.CreatedAt.UnixMilli(), r.hook.UpdatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("insert hook: %w", err)
	}
	return nil
}

// update writes the spec, secrets and switch of a hook (not its cursor,
// which only the delivery loop moves, unless cursor is set).
func (s *store) update(ctx context.Context, r *row, cursor *event.ID) error {
	spec, err := specJSON(r.hook)
	if err != nil {
		return fmt.Errorf("update hook: %w", err)
	}
	q := `UPDATE hooks SET spec = ?, secrets = ?, active = ?, stopped_reason = ?, updated_at = ?`
	args := []any{spec, s.seal(r.secrets), b2i(r.hook.Active), r.hook.StoppedReason, r.hook.UpdatedAt.UnixMilli()}
	if cursor != nil {
		q += `, cursor = ?, scan = ?`
		args = append(args, int64(*cursor), int64(*cursor))
	}
	if r.hook.Active {
		q += `, consecutive_dead = 0`
	}
	res, err := s.db.ExecContext(ctx, q+` WHERE id = ?`, append(args, r.hook.ID)...)
	if err != nil {
		return fmt.Errorf("update hook: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *store) delete(ctx context.Context, id string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.Exec(`DELETE FROM hooks WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	for _, t := range []string{"inflight", "dead_letters", "deliveries"} {
		if _, err := tx.Exec(`DELETE FROM `+t+` WHERE hook_id = ?`, id); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ErrNotFound is an unknown hook or dead letter.
var ErrNotFound = errors.New("not found")
