// Package eventlog declares the durable log every accepted event is
// committed to before sluice answers 2xx. Backends live in sub-packages
// (eventlog/sqlite, the embedded default; eventlog/postgres, shared by
// several nodes) and pass the conformance suite in eventlog/logtest.
package eventlog

import (
	"context"
	"errors"
	"time"

	"github.com/sluicehq/sluice/internal/event"
)

// Log is one handle on the durable, ordered event log. Several handles
// may be open on one store (the nodes of a cluster share one PostgreSQL
// database); each sees what the others commit.
//
// The backend mints the ids, at commit time, and they grow in commit order
// across every handle of the store: a reader that has seen every event up
// to id X and asks for "after X" never misses an event committed later,
// by whichever handle.
type Log interface {
	// Append commits events durably (fsync) and returns one result per
	// event, in order. It returns only after the commit, or with an error
	// and nothing stored. An event whose DedupKey is already stored in its
	// project is not stored again: its result carries the original id and
	// Duplicate.
	Append(ctx context.Context, events []*event.Event) ([]Result, error)
	// Read returns stored events in id order.
	Read(ctx context.Context, q Query) ([]Record, error)
	// Count is how many events Read would return without a limit.
	Count(ctx context.Context, q Query) (int64, error)
	// Head is the highest committed id this handle knows of (0 for an
	// empty log). Every event at or below it is committed and visible to
	// Read, and no event committed later gets an id at or below it, so a
	// follower that found nothing up to Head may move its cursor there.
	// Another handle's commits raise it shortly after they commit.
	Head() event.ID
	// Changed returns a channel that is closed when Head next moves: at
	// the next commit of this handle, or when it hears of another's.
	Changed() <-chan struct{}
	// DeleteBefore deletes the events stored before t and reports how many.
	DeleteBefore(ctx context.Context, t time.Time) (int64, error)
	// Contents returns the raw requests of these content ids (see
	// Record.ContentID); ids whose content is gone are absent.
	Contents(ctx context.Context, ids []int64) (map[int64]event.Content, error)
	// DeleteContentsBefore deletes raw requests received before t.
	DeleteContentsBefore(ctx context.Context, t time.Time) (int64, error)
	// Erase deletes these events of a project, and their raw requests,
	// and reports how many events it deleted (for a person's erasure).
	Erase(ctx context.Context, projectID uint32, ids []event.ID) (int64, error)
	// Health is nil while Append takes events. Otherwise it is the error
	// that appends fail with at once (errors.Is ErrUnavailable), saying why
	// and since when: after a commit failed for lack of space or with an
	// I/O error, the log refuses appends, nothing stored, until it has
	// recovered by itself; reads go on meanwhile.
	Health() error
	// Close commits what is queued and releases the log.
	Close() error
}

// Result is the outcome of one appended event.
type Result struct {
	ID        event.ID
	Duplicate bool
}

// Record is one stored event: its index columns and its canonical JSON.
type Record struct {
	ID        event.ID
	ProjectID uint32
	Key       string
	Time      int64
	Body      []byte
	// ContentID names the raw request kept with the event, 0 when none.
	ContentID int64
}

// Query selects stored events. Zero values mean "no condition".
type Query struct {
	// Projects restricts to these projects.
	Projects []uint32
	// KeyGlob selects keys, see event.MatchGlob.
	KeyGlob string
	// Since and Until bound the event time (Unix ms): Since <= time < Until.
	Since, Until int64
	// After is the cursor: only ids greater than After.
	After event.ID
	// Limit caps the number of records; 0 means DefaultLimit.
	Limit int
	// Newest reads the Limit newest matching records instead of the
	// oldest (what `tail` shows); they still come in id order.
	Newest bool
	// IDs selects these events (at most MaxLimit).
	IDs []event.ID
	// WithIdentities selects the events that carry identities (the
	// profile consumer's); backends index it, so a reader of them never
	// pays for the others.
	WithIdentities bool
}

// Limits of Query.Limit.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// Normalize applies the default limit and validates q.
func (q *Query) Normalize() error {
	if q.Limit == 0 {
		q.Limit = DefaultLimit
	}
	if q.Limit < 0 || q.Limit > MaxLimit {
		return errors.New("limit must be between 1 and 10000")
	}
	if q.KeyGlob != "" {
		if err := event.ValidateGlob(q.KeyGlob); err != nil {
			return err
		}
	}
	if len(q.IDs) > MaxLimit {
		return errors.New("at most 10000 ids")
	}
	if q.Since != 0 && q.Until != 0 && q.Until <= q.Since {
		return errors.New("until must be after since")
	}
	return nil
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("event log closed")

// ErrUnavailable is wrapped by the errors of Append and Health while the
// log refuses appends (see Log.Health).
var ErrUnavailable = errors.New("event log unavailable")
