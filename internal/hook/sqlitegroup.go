package hook

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// The delivery loops' writes to hooks.db go through one committer that
// runs the writes waiting at the same moment in one transaction: one
// fsync of the WAL (synchronous=FULL) makes a whole group durable,
// instead of one fsync per batch recorded or finished. Every write is
// answered only after the commit of its group, so a batch counts as
// recorded, delivered or parked only once that is durable. When a write
// fails, the group runs again with a savepoint per write: the failing
// one is rolled back alone and the others commit without it.

// maxGroup bounds the writes of one transaction.
const maxGroup = 256

var errStoreClosed = errors.New("hooks.db is closed")

type groupWrite struct {
	fn  func(tx *sql.Tx) error
	err chan error
}

type committer struct {
	db     *sql.DB
	mu     sync.Mutex
	queue  []*groupWrite
	closed bool
	wake   chan struct{}
	done   chan struct{}
}

func newCommitter(db *sql.DB) *committer {
	c := &committer{db: db, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go c.run()
	return c
}

// write runs fn in the transaction of the next group and returns its
// error, or the group's commit error, once that commit returned. ctx is
// looked at only before the write is queued: fn runs its statements
// without it (an interrupted statement would make SQLite roll back the
// whole group's transaction), and once queued the write is answered.
func (c *committer) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w := &groupWrite{fn: fn, err: make(chan error, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errStoreClosed
	}
	c.queue = append(c.queue, w)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return <-w.err
}

// close commits what is queued and stops the committer.
func (c *committer) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	<-c.done
}

func (c *committer) run() {
	defer close(c.done)
	for range c.wake {
		for {
			c.mu.Lock()
			n := min(len(c.queue), maxGroup)
			group := c.queue[:n:n]
			c.queue = c.queue[n:]
			closed := c.closed
			c.mu.Unlock()
			if n == 0 {
				if closed {
					return
				}
				break
			}
			c.commit(group)
		}
	}
}

// commit runs one group: all its writes in one transaction; when one of
// them fails, the transaction is rolled back and the group runs again
// with a savepoint per write, so only the failing ones are left out.
func (c *committer) commit(group []*groupWrite) {
	errs := make([]error, len(group))
	answer := func(fallback error) {
		for i, w := range group {
			if errs[i] == nil {
				errs[i] = fallback
			}
			w.err <- errs[i]
		}
	}
	tx, err := c.db.Begin()
	if err != nil {
		answer(err)
		return
	}
	failed := false
	for i, w := range group {
		if errs[i] = w.fn(tx); errs[i] != nil {
			failed = true
			break
		}
	}
	if !failed {
		answer(tx.Commit())
		return
	}
	tx.Rollback()
	if len(group) == 1 {
		answer(nil)
		return
	}
	clear(errs)
	if tx, err = c.db.Begin(); err != nil {
		answer(err)
		return
	}
	for i, w := range group {
		if _, err := tx.Exec(`SAVEPOINT write`); err != nil {
			tx.Rollback()
			answer(err)
			return
		}
		if errs[i] = w.fn(tx); errs[i] != nil {
			// A write that failed leaves nothing; when SQLite has rolled
			// the whole transaction back (a full disk may), nothing of the
			// group stands and every write fails.
			if _, err := tx.Exec(`ROLLBACK TO write`); err != nil {
				tx.Rollback()
				answer(fmt.Errorf("hooks.db: a write of the same transaction failed (%v) and took it back: %v", errs[i], err))
				return
			}
		}
		if _, err := tx.Exec(`RELEASE write`); err != nil {
			tx.Rollback()
			answer(err)
			return
		}
	}
	answer(tx.Commit())
}
