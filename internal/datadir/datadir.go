// Package datadir is the layout of sluice's data directory and the lock
// that keeps one process at a time in it.
//
//	LOCK        held (flock) by the process that owns the directory
//	run.json    written by a running server: its pid and listener addresses
//	events.db   the event log (SQLite, WAL)
//	state.db    projects, tokens and other state (SQLite, WAL)
//	profiles.db profiles built from the log, and the consumer's cursor
package datadir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Files in the data directory.
const (
	LockFile    = "LOCK"
	RunFile     = "run.json"
	EventsFile  = "events.db"
	StateFile   = "state.db"
	ProfileFile = "profiles.db"
	HooksFile   = "hooks.db"
	HooksKey    = "hooks.key" // seals hook secrets; back it up with hooks.db
)

// ErrLocked means another process (normally a running server) owns the
// directory.
var ErrLocked = errors.New("data directory is in use by another sluice process")

// Lock is an exclusive hold on a data directory.
type Lock struct {
	dir string
	f   *os.File
}

// Acquire creates dir when needed and locks it without waiting.
func Acquire(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return &Lock{dir: dir, f: f}, nil
}

// Dir is the locked directory.
func (l *Lock) Dir() string { return l.dir }

// Release unlocks the directory.
func (l *Lock) Release() error {
	return l.f.Close() // closing the descriptor drops the flock
}

// RunInfo tells other processes where a running server listens.
type RunInfo struct {
	PID    int    `json:"pid"`
	Ingest string `json:"ingest"` // base URL of the ingest listener
	Admin  string `json:"admin"`  // base URL of the admin listener
}

// WriteRunInfo records info atomically (write, fsync, rename).
func (l *Lock) WriteRunInfo(info RunInfo) error {
	b, _ := json.MarshalIndent(info, "", "  ")
	tmp := filepath.Join(l.dir, RunFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write run info: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write run info: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write run info: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write run info: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(l.dir, RunFile)); err != nil {
		return fmt.Errorf("write run info: %w", err)
	}
	return nil
}

// RemoveRunInfo deletes run.json on shutdown.
func (l *Lock) RemoveRunInfo() {
	_ = os.Remove(filepath.Join(l.dir, RunFile))
}

// ReadRunInfo reads what a running server recorded in dir.
func ReadRunInfo(dir string) (RunInfo, error) {
	var info RunInfo
	b, err := os.ReadFile(filepath.Join(dir, RunFile))
	if err != nil {
		return info, fmt.Errorf("read run info: %w", err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("read run info %s: %w", filepath.Join(dir, RunFile), err)
	}
	return info, nil
}
