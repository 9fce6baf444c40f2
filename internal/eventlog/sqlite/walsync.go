package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"
)

// walSyncer makes the WAL durable: one fdatasync of the WAL file covers
// every frame written to it before the call began. The committing
// connection runs with synchronous=NORMAL, so SQLite writes a commit's
// frames without syncing them (it still syncs the WAL before each
// checkpoint and the WAL header whenever the WAL starts over); the leader
// that committed a group calls Sync before it answers the group or
// raises the head, after it has handed the write lock to the next group.
// So the next group's inserts overlap this group's fsync, and every
// request that is answered, or event that readers see, is on disk as
// with synchronous=FULL.
//
// Calls that arrive while a sync runs wait for the next one, which the
// first of them starts when the running one ends: syncs are grouped the
// way commits are.
type walSyncer struct {
	path string
	// sync is the system call, replaceable by tests.
	sync func(f *os.File) error
	// observe, if set, is told how long each sync took.
	observe func(time.Duration)

	mu      sync.Mutex
	cond    *sync.Cond
	f       *os.File
	started uint64 // syncs begun
	done    uint64 // syncs ended
	running bool
	waiting int // callers whose writes wait for a sync not begun yet
	// broken is the error of a failed sync, kept until reset: after a
	// failed fdatasync the kernel may have dropped the pages it could not
	// write, so a later sync that succeeds proves nothing about them.
	broken error
}

func newWALSyncer(path string) *walSyncer {
	s := &walSyncer{path: path, sync: fdatasync}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// fdatasync syncs f's data and the metadata needed to read it (its
// size), as SQLite syncs its files; os.File.Sync is an fsync, which also
// writes the file's times and costs a journal commit on ext4.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// errSync wraps the error of a failed WAL sync.
type errSync struct{ err error }

func (e *errSync) Error() string { return fmt.Sprintf("sync wal: %v", e.err) }
func (e *errSync) Unwrap() error { return e.err }

// Sync returns once every frame written to the WAL before the call is on
// disk, or with the error of the sync that should have put it there (or
// of any sync since the last Reset).
func (s *walSyncer) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The first sync to begin from now on covers this caller's writes.
	target := s.started + 1
	if s.running {
		s.waiting++
	}
	for s.done < target && s.broken == nil {
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running = true
		s.started++
		s.waiting = 0
		s.cond.Broadcast() // for waitRoom
		n := s.started
		s.mu.Unlock()
		start := time.Now()
		err := s.syncOnce()
		if s.observe != nil {
			s.observe(time.Since(start))
		}
		s.mu.Lock()
		s.running = false
		s.done = n
		if err != nil && s.broken == nil {
			s.broken = &errSync{err: err}
		}
		s.cond.Broadcast()
	}
	return s.broken
}

// waitRoom returns once no caller waits for a sync that has not begun:
// a leader calls it before it takes its group, so that one group at most
// commits ahead of the running sync. Without it the groups that commit
// during a sync would stay as small as the requests that arrive during
// one commit, and the CPU each commit costs would be paid for a few
// events; with it the rest of the queue gathers into the group that
// follows, as it gathers during a commit's own fsync.
func (s *walSyncer) waitRoom() {
	s.mu.Lock()
	for s.running && s.waiting > 0 && s.broken == nil {
		s.cond.Wait()
	}
	s.mu.Unlock()
}

// syncOnce opens the WAL on first use (SQLite creates it at the first
// write) and syncs it. No WAL, nothing to sync: SQLite deletes it only
// when the last connection closes, after a checkpoint.
func (s *walSyncer) syncOnce() error {
	if s.f == nil {
		f, err := os.Open(s.path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		s.f = f
	}
	return s.sync(s.f)
}

// Reset forgets a failed sync, once the WAL has been checkpointed into
// the synced database file (recovery).
func (s *walSyncer) Reset() {
	s.mu.Lock()
	s.broken = nil
	s.mu.Unlock()
}

// Close closes the WAL file (after the last Sync).
func (s *walSyncer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}
