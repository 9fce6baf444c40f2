package hook

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sluicehq/sluice/internal/event"
)

// Store keeps the state of the hooks: their definitions with their sealed
// secrets, cursors and scan positions, the batches in flight, the attempt
// log and the dead letters. hooks.db (SQLiteStore) and PostgreSQL
// (PostgresStore) implement it and pass one conformance suite
// (store_test.go).
//
// The delivery loop of a hook writes its state with the generation its
// Claim returned: a write of an older generation (the hook was claimed
// again, by another node or after a repositioning) changes nothing and
// fails with ErrFenced, so a loop that lost its hook cannot move the
// state of the one that took it over.
type Store interface {
	// Hooks returns every stored hook, oldest first.
	Hooks(ctx context.Context) ([]StoredHook, error)
	// Insert stores a new hook with its state as given.
	Insert(ctx context.Context, h StoredHook) error
	// Update writes the definition, secrets and switch of a hook (not its
	// cursor, which only the delivery loop moves). A hook switched on
	// loses its streak of dead letters. With cursor set, the hook starts
	// again there: cursor and scan position move to it, its batches in
	// flight are dropped and its generation moves on, in one
	// transaction. ErrNotFound when there is no such hook.
	Update(ctx context.Context, h StoredHook, cursor *event.ID) error
	// Delete removes a hook with its batches in flight, dead letters and
	// attempts. ErrNotFound when there is no such hook.
	Delete(ctx context.Context, id string) error
	// Cursors returns every hook's cursor, for the hooks delivered
	// elsewhere.
	Cursors(ctx context.Context) (map[string]event.ID, error)
	// Version is moved by every change of a definition (Insert, Update,
	// Delete) and by Forget, not by the delivery loops' writes: a node
	// that sees it move reloads.
	Version(ctx context.Context) (int64, error)
	// Forget records erased events for the delivery loops of every node;
	// Forgotten returns those erased at or after since.
	Forget(ctx context.Context, ids []event.ID, at time.Time) error
	Forgotten(ctx context.Context, since time.Time) ([]event.ID, error)

	// Claim starts a new generation of the hook's delivery loop: it
	// returns the generation with the cursor and scan position as stored
	// (those of the loop before, on this node or another).
	Claim(ctx context.Context, hookID string) (Claim, error)
	// Inflight returns the hook's batches in flight, in order.
	Inflight(ctx context.Context, hookID string) ([]InflightBatch, error)
	// SaveInflight records batches before their first attempt, and moves
	// the scan position to the end of the last, in one transaction.
	SaveInflight(ctx context.Context, hookID string, gen int64, bs ...InflightBatch) error
	// SaveCursor moves the cursor forward to c (never back).
	SaveCursor(ctx context.Context, hookID string, gen int64, c event.ID) error
	// Retry logs a failed attempt of batch seq that is not its last (it
	// goes again, or waits for the hook's activation after a 410) and
	// records its number with the batch in flight, in one transaction:
	// the loop that sends the batch next, after a restart or on the node
	// that takes the hook over, goes on with attempt a.N+1 and counts the
	// attempts made against the retry budget. The number never goes back.
	Retry(ctx context.Context, hookID string, gen int64, seq int64, a Attempt) error
	// Finish ends a batch in one transaction (see Finish).
	Finish(ctx context.Context, hookID string, gen int64, f Finish) error
	// DeadStreak is the hook's run of dead letters since its last
	// delivered batch.
	DeadStreak(ctx context.Context, hookID string) (int, error)

	// AddAttempt logs an attempt; the newest AttemptLogKeep of a hook are
	// kept.
	AddAttempt(ctx context.Context, a Attempt) error
	// Attempts returns the newest limit attempts of a hook, newest first.
	Attempts(ctx context.Context, hookID string, limit int) ([]Delivery, error)

	// DeadLetters returns the hook's dead letters that q selects, oldest
	// first, with their messages.
	DeadLetters(ctx context.Context, hookID string, q DeadLetterQuery) ([]DeadLetter, error)
	// RemoveDeadLetter removes a dead letter (replayed).
	RemoveDeadLetter(ctx context.Context, id int64) error
	// DeadLetterFailed counts one more attempt of a dead letter, with its
	// outcome.
	DeadLetterFailed(ctx context.Context, id int64, status int, msg string) error
	// EachDeadLetter calls fn with every dead letter of every hook and
	// its messages (a JSON array), for an erasure.
	EachDeadLetter(ctx context.Context, fn func(id int64, messages []byte) error) error
	// RewriteDeadLetter replaces a dead letter's messages; with events 0
	// it removes it.
	RewriteDeadLetter(ctx context.Context, id int64, messages []byte, events int) error

	// Export returns the whole state of one hook, Import stores it as it
	// was (dead letter ids kept), for moving an installation from one
	// store to another.
	Export(ctx context.Context, hookID string) (*HookState, error)
	Import(ctx context.Context, s *HookState) error

	Close() error
}

// StoredHook is a hook as stored: its definition as JSON (without state
// and secrets), its secrets sealed, and its state.
type StoredHook struct {
	ID            string
	Spec          []byte
	Secrets       []byte
	Active        bool
	Cursor, Scan  event.ID
	StoppedReason string
	DeadStreak    int
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Claim is a delivery loop's generation and where it starts.
type Claim struct {
	Generation   int64
	Cursor, Scan event.ID
}

// InflightBatch is a batch between "formed" and "delivered or parked":
// rebuilt exactly, with the same id, after a restart or by the node that
// takes the hook over.
type InflightBatch struct {
	Seq      int64
	BatchID  string
	IDs      []event.ID
	UpTo     event.ID // the scan position after it
	Attempts int      // attempts made and recorded by Retry (0 before the first)
}

// Finish is how a batch ends: its in-flight record goes, its last attempt
// is logged (when Attempt is set), it is parked (when DeadLetter is set;
// else the dead streak ends), and the cursor moves to Cursor when that is
// not 0.
type Finish struct {
	Seq        int64
	Cursor     event.ID
	Attempt    *Attempt
	DeadLetter *DeadLetter
}

// Attempt is one row of the attempt log, as written.
type Attempt struct {
	HookID, BatchID   string
	N, Events         int
	Start, End        time.Time
	Status            int
	ErrorClass, Error string
	Response          string
	Next              time.Time // zero when none
	Kind              string    // delivery, replay
}

// HookState is everything stored of one hook.
type HookState struct {
	Hook        StoredHook
	Inflight    []InflightBatch
	Attempts    []Delivery // oldest first
	DeadLetters []DeadLetter
}

// AttemptLogKeep is how many attempts are kept per hook.
const AttemptLogKeep = 1000

// ErrFenced is a write of a delivery loop whose generation is over.
var ErrFenced = errors.New("the hook was claimed by a newer delivery loop")

// ErrNotFound is an unknown hook or dead letter.
var ErrNotFound = errors.New("not found")

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

// sealer seals hook secrets with the key of hooks.key (AES-256-GCM).
type sealer struct{ aead cipher.AEAD }

func newSealer(keyPath string) (*sealer, error) {
	key, err := loadKey(keyPath)
	if err != nil {
		return nil, err
	}
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	return &sealer{aead: aead}, nil
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

func (s *sealer) seal(sec secrets) []byte {
	plain, _ := json.Marshal(sec)
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plain, nil)
}

func (s *sealer) open(b []byte) (secrets, error) {
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

// specJSON is the hook without state and secrets.
func specJSON(h Hook) ([]byte, error) {
	h = h.withoutSecrets()
	h.Cursor, h.StoppedReason, h.CreatedAt, h.UpdatedAt, h.SigningSecret, h.Active = 0, "", time.Time{}, time.Time{}, "", false
	return json.Marshal(h)
}

// stored is r as the store keeps it.
func (s *sealer) stored(r *row) (StoredHook, error) {
	spec, err := specJSON(r.hook)
	if err != nil {
		return StoredHook{}, err
	}
	return StoredHook{ID: r.hook.ID, Spec: spec, Secrets: s.seal(r.secrets), Active: r.hook.Active, Cursor: r.hook.Cursor,
		Scan: r.hook.scan, StoppedReason: r.hook.StoppedReason, DeadStreak: r.dead, CreatedAt: r.hook.CreatedAt, UpdatedAt: r.hook.UpdatedAt}, nil
}

// row reads a stored hook.
func (s *sealer) row(sh StoredHook) (*row, error) {
	r := &row{dead: sh.DeadStreak}
	if err := json.Unmarshal(sh.Spec, &r.hook); err != nil {
		return nil, fmt.Errorf("hook %s: %w", sh.ID, err)
	}
	r.hook.ID, r.hook.StoppedReason = sh.ID, sh.StoppedReason
	r.hook.Active, r.hook.Cursor, r.hook.scan = sh.Active, sh.Cursor, sh.Scan
	r.hook.CreatedAt, r.hook.UpdatedAt = sh.CreatedAt.UTC(), sh.UpdatedAt.UTC()
	var err error
	if r.secrets, err = s.open(sh.Secrets); err != nil {
		return nil, fmt.Errorf("hook %s: %w", sh.ID, err)
	}
	return r, nil
}

// KeyFingerprint is a digest that tells hook secret keys apart without
// showing them (the key at path is created when absent).
func KeyFingerprint(path string) (string, error) {
	key, err := loadKey(path)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("sluice hooks.key fingerprint"))
	return hex.EncodeToString(m.Sum(nil)[:16]), nil
}
