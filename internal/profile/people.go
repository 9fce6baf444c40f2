package profile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

// PeopleLog is the part of the event log that People reads and erases.
type PeopleLog interface {
	Read(ctx context.Context, q eventlog.Query) ([]eventlog.Record, error)
	Erase(ctx context.Context, projectID uint32, ids []event.ID) (int64, error)
	Head() event.ID
}

// People answers the questions asked about persons: a profile, its
// timeline across dialects, its erasure.
type People struct {
	Store    *Store
	Log      PeopleLog
	Consumer *Consumer
	// Forget, when set, drops erased events from hook deliveries not yet
	// made.
	Forget func(ctx context.Context, projectID uint32, ids []event.ID) error
	// CatchUp bounds how long an erasure waits for the consumer to fold
	// what the log holds (default 10s).
	CatchUp time.Duration
}

// WaitFor returns once the profile consumer has folded every event up to
// id (or when ctx ends): hooks wait so, to see an event's own links.
func (p *People) WaitFor(ctx context.Context, id event.ID) error {
	if p.Consumer == nil {
		return nil
	}
	return p.Consumer.WaitFor(ctx, id)
}

// Find is Store.Find.
func (p *People) Find(ctx context.Context, projectID uint32, idType, value string) (*Profile, error) {
	return p.Store.Find(ctx, projectID, idType, value)
}

// EventsPage is a page of a person's timeline.
type EventsPage struct {
	Profile string            `json:"profile"`
	Events  []json.RawMessage `json:"events"`
	// Next continues the timeline (before=Next); empty at its end.
	Next string `json:"next,omitempty"`
}

// Events returns a page of the person's timeline, newest first: the
// canonical events of every dialect that named them. Events the log no
// longer holds (past retention) are left out.
func (p *People) Events(ctx context.Context, projectID uint32, idType, value string, q TimelineQuery) (*EventsPage, error) {
	pid, entries, err := p.Store.Timeline(ctx, projectID, idType, value, q)
	if err != nil {
		return nil, err
	}
	page := &EventsPage{Profile: pid, Events: []json.RawMessage{}}
	if len(entries) == 0 {
		return page, nil
	}
	ids := make([]event.ID, len(entries))
	for i, e := range entries {
		ids[i] = e.EventID
	}
	recs, err := p.Log.Read(ctx, eventlog.Query{Projects: []uint32{projectID}, IDs: ids, Limit: len(ids)})
	if err != nil {
		return nil, err
	}
	bodies := make(map[event.ID][]byte, len(recs))
	for _, r := range recs {
		bodies[r.ID] = r.Body
	}
	for _, e := range entries {
		if b, ok := bodies[e.EventID]; ok {
			page.Events = append(page.Events, b)
		}
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	if len(entries) == min(limit, 1000) {
		last := entries[len(entries)-1]
		page.Next = fmt.Sprintf("%d:%d", last.Time, uint64(last.EventID))
	}
	return page, nil
}

// ErasedAnswer is what an erasure removed.
type ErasedAnswer struct {
	Profile    string `json:"profile"`
	Profiles   int    `json:"profiles"`
	Identities int    `json:"identities"`
	Attributes int    `json:"attributes"`
	Events     int64  `json:"events"`
}

// Erase removes a person: first the consumer folds everything the log
// holds (so no event of theirs is left unfolded), then their events leave
// the log and the hook deliveries not yet made, then their profile, its
// identities, attributes and observations go. Run again after a failure,
// it finishes the job.
func (p *People) Erase(ctx context.Context, projectID uint32, idType, value string) (ErasedAnswer, error) {
	if p.Consumer != nil {
		wait := p.CatchUp
		if wait <= 0 {
			wait = 10 * time.Second
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := p.Consumer.WaitFor(wctx, p.Log.Head())
		cancel()
		if err != nil && ctx.Err() == nil {
			return ErasedAnswer{}, fmt.Errorf("erase: the profile consumer is behind the log: %w", err)
		}
	}
	pid, err := p.Store.resolve(ctx, p.Store.db, projectID, idType, value)
	if err != nil {
		return ErasedAnswer{}, err
	}
	ids, err := p.Store.eventsOf(ctx, pid)
	if err != nil {
		return ErasedAnswer{}, err
	}
	n, err := p.Log.Erase(ctx, projectID, ids)
	if err != nil {
		return ErasedAnswer{}, fmt.Errorf("erase events: %w", err)
	}
	if p.Forget != nil {
		if err := p.Forget(ctx, projectID, ids); err != nil {
			return ErasedAnswer{}, fmt.Errorf("erase events from hook deliveries: %w", err)
		}
	}
	er, err := p.Store.Erase(ctx, projectID, LookupProfile, pid)
	if errors.Is(err, ErrNotFound) {
		err = nil
	}
	if err != nil {
		return ErasedAnswer{}, err
	}
	return ErasedAnswer{Profile: pid, Profiles: er.Profiles, Identities: er.Identities, Attributes: er.Attributes, Events: n}, nil
}
