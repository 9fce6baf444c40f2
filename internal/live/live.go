// Package live follows the event log once and fans what it reads out to
// every subscriber: the console's live view, SSE clients of
// GET /api/v1/live and the long-polls of GET /api/v1/events?wait=. It
// also keeps the last few thousand refused ingest requests in memory (they
// are never stored) and hands them out the same way.
//
// The invariant: one reader of the log, whatever the number of clients. A
// subscriber never slows the follower or another subscriber: its queue is
// bounded, and what does not fit is counted as missed, and said so, rather
// than waited for. Events reach subscribers in log order.
package live

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

// Source is the part of the event log the hub follows.
type Source interface {
	Read(ctx context.Context, q eventlog.Query) ([]eventlog.Record, error)
	Head() event.ID
	Changed() <-chan struct{}
}

// Config configures the hub. Zero values take the defaults.
type Config struct {
	// Page is how many records one read of the log takes (default 1000).
	Page int
	// Recent is how many of the newest events are kept in memory for the
	// backlog of a new subscriber (default 1000).
	Recent int
	// Refusals is how many of the newest refusals are kept (default 4096).
	Refusals int
	// Queue is how many items may wait for one subscriber before it
	// misses some (default 4096).
	Queue int
	// Erased reports an event erased through any node (a profile's
	// erasure): the backlog leaves it out. Nil is none.
	Erased func(event.ID) bool
}

// Defaults of Config.
const (
	DefaultPage     = 1000
	DefaultRecent   = 1000
	DefaultRefusals = 4096
	DefaultQueue    = 4096
)

// Event is one committed event as the follower read it, with the fields
// filters look at decoded once for every subscriber.
type Event struct {
	eventlog.Record
	Dialect    string
	Identities []event.Identity

	seq       uint64
	lowerOnce sync.Once
	lower     []byte
}

// lowerBody is the canonical JSON in lower case, for text filters.
func (e *Event) lowerBody() []byte {
	e.lowerOnce.Do(func() { e.lower = bytes.ToLower(e.Body) })
	return e.lower
}

// Refusal is one refused ingest request: what the sender was told, and
// where it came from. Refusals live in memory only.
type Refusal struct {
	// Seq numbers refusals in the order they happened, from 1.
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Status  int       `json:"status"`
	Code    string    `json:"code,omitempty"`
	Dialect string    `json:"dialect"`
	// ProjectID is the project the request was authenticated to, when it
	// got that far.
	ProjectID *uint32 `json:"projectId,omitempty"`
	// Source is the sender's address (the socket peer, or what a trusted
	// proxy reported).
	Source string `json:"source"`
	Method string `json:"method"`
	// Path is the request path, without the query (which may carry a
	// token).
	Path    string            `json:"path"`
	Message string            `json:"message"`
	Errors  event.FieldErrors `json:"errors,omitempty"`

	seq uint64 // arrival order among events and refusals
}

// Item is one thing a subscriber receives: an event or a refusal.
type Item struct {
	Event   *Event
	Refusal *Refusal
}

func (it Item) seq() uint64 {
	if it.Event != nil {
		return it.Event.seq
	}
	return it.Refusal.seq
}

// at is when the item happened, Unix ms: an event's commit (its id's
// time), a refusal's time.
func (it Item) at() int64 {
	if it.Event != nil {
		return it.Event.ID.Millis()
	}
	return it.Refusal.Time.UnixMilli()
}

// Filter selects what a subscriber receives. Zero values mean "no
// condition"; an item passes every condition that is set.
type Filter struct {
	// Projects restricts to these projects. A refusal whose project is
	// not known does not pass.
	Projects []uint32
	// KeyGlob selects events by key (event.MatchGlob). Refusals have no
	// key: with a glob set, none passes.
	KeyGlob string
	// Identity selects events that carry an identity of this value, and
	// of IdentityType when that is set. Refusals carry none.
	Identity     string
	IdentityType string
	// Text selects events whose canonical JSON contains it, and refusals
	// whose message, field errors, path or source contain it; case is
	// ignored.
	Text string
	// NoEvents and NoRefusals leave one kind out.
	NoEvents, NoRefusals bool
}

// MaxTextFilter bounds Filter.Text and Filter.Identity.
const MaxTextFilter = 256

// Validate reports what makes f unusable, as field errors named after the
// query parameters of GET /api/v1/live.
func (f *Filter) Validate() event.FieldErrors {
	var errs event.FieldErrors
	if f.KeyGlob != "" {
		if err := event.ValidateGlob(f.KeyGlob); err != nil {
			errs.Add("key", err.Error())
		}
	}
	if len(f.Text) > MaxTextFilter {
		errs.Add("text", "longer than "+strconv.Itoa(MaxTextFilter)+" bytes")
	}
	if len(f.Identity) > MaxTextFilter {
		errs.Add("identity", "longer than "+strconv.Itoa(MaxTextFilter)+" bytes")
	}
	if f.IdentityType != "" && f.Identity == "" {
		errs.Add("identity_type", "needs identity (the value) too")
	}
	return errs
}

func (f *Filter) matchProject(p uint32) bool {
	if len(f.Projects) == 0 {
		return true
	}
	for _, q := range f.Projects {
		if q == p {
			return true
		}
	}
	return false
}

// MatchEvent reports whether e passes f.
func (f *Filter) MatchEvent(e *Event) bool {
	if f.NoEvents || !f.matchProject(e.ProjectID) {
		return false
	}
	if f.KeyGlob != "" && !event.MatchGlob(f.KeyGlob, e.Key) {
		return false
	}
	if f.Identity != "" {
		found := false
		for _, id := range e.Identities {
			if id.Value == f.Identity && (f.IdentityType == "" || id.Type == f.IdentityType) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if f.Text != "" && !bytes.Contains(e.lowerBody(), f.lowerText()) {
		return false
	}
	return true
}

// MatchRefusal reports whether r passes f.
func (f *Filter) MatchRefusal(r *Refusal) bool {
	if f.NoRefusals || f.KeyGlob != "" || f.Identity != "" {
		return false
	}
	if len(f.Projects) > 0 && (r.ProjectID == nil || !f.matchProject(*r.ProjectID)) {
		return false
	}
	if f.Text != "" {
		t := f.lowerText()
		in := func(s string) bool { return bytes.Contains(bytes.ToLower([]byte(s)), t) }
		found := in(r.Message) || in(r.Path) || in(r.Source) || in(r.Dialect) || in(r.Code)
		for _, fe := range r.Errors {
			found = found || in(fe.Path) || in(fe.Message)
		}
		if !found {
			return false
		}
	}
	return true
}

func (f *Filter) lowerText() []byte { return bytes.ToLower([]byte(f.Text)) }

func (f *Filter) match(it Item) bool {
	if it.Event != nil {
		return f.MatchEvent(it.Event)
	}
	return f.MatchRefusal(it.Refusal)
}

// Hub is the one follower of the log and its subscribers.
type Hub struct {
	cfg    Config
	src    Source
	logger *slog.Logger

	mu       sync.Mutex
	subs     map[*Subscription]struct{}
	recent   ring[*Event]
	refusals ring[*Refusal]
	seq      uint64   // arrival order of events and refusals
	refSeq   uint64   // Refusal.Seq
	pos      event.ID // every event up to pos has been published
	started  chan struct{}
	// cold: no subscriber, so the hub does not follow the log (an event
	// nobody watches costs it nothing); the first subscriber warms it: the
	// newest events are read for the backlog, and following resumes there.
	cold bool
	wake chan struct{}
	ctx  context.Context

	m metrics
}

type metrics struct {
	subscribers prometheus.GaugeFunc
	missed      prometheus.Counter
}

// New returns a hub over src; Run follows the log. reg may be nil.
func New(cfg Config, src Source, reg prometheus.Registerer, logger *slog.Logger) *Hub {
	if cfg.Page <= 0 {
		cfg.Page = DefaultPage
	}
	if cfg.Recent <= 0 {
		cfg.Recent = DefaultRecent
	}
	if cfg.Refusals <= 0 {
		cfg.Refusals = DefaultRefusals
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Hub{
		cfg: cfg, src: src, logger: logger, subs: map[*Subscription]struct{}{},
		recent: newRing[*Event](cfg.Recent), refusals: newRing[*Refusal](cfg.Refusals),
		started: make(chan struct{}), cold: true, wake: make(chan struct{}, 1), ctx: context.Background(),
	}
	h.m.subscribers = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sluice_live_subscribers", Help: "Live subscribers (SSE streams and waiting long-polls).",
	}, func() float64 {
		h.mu.Lock()
		defer h.mu.Unlock()
		return float64(len(h.subs))
	})
	h.m.missed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_live_missed_total", Help: "Items not handed to a subscriber whose queue was full.",
	})
	if reg != nil {
		reg.MustRegister(h.m.subscribers, h.m.missed)
	}
	return h
}

// Run follows the log until ctx ends, publishing every event committed
// while anyone subscribes. Without subscribers it only waits.
func (h *Hub) Run(ctx context.Context) {
	h.mu.Lock()
	h.ctx = ctx
	h.mu.Unlock()
	close(h.started)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		changed := h.src.Changed()
		h.mu.Lock()
		if len(h.subs) == 0 {
			h.cold = true
		}
		cold, pos := h.cold, h.pos
		h.mu.Unlock()
		if cold {
			select {
			case <-ctx.Done():
				return
			case <-h.wake:
			}
			continue
		}
		recs, err := h.src.Read(ctx, eventlog.Query{After: pos, Limit: h.cfg.Page})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.logger.Error("follow the event log; retrying", "err", err, "after", pos.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if len(recs) > 0 {
			h.publish(pos, recs)
		}
		if len(recs) == h.cfg.Page {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-h.wake:
		}
	}
}

// warmLocked makes a cold hub follow again: it keeps the newest Recent
// events for the backlog and resumes after the log's head. h.mu is held.
func (h *Hub) warmLocked() {
	head := h.src.Head()
	h.recent = newRing[*Event](h.cfg.Recent)
	if recs, err := h.src.Read(h.ctx, eventlog.Query{Newest: true, Limit: h.cfg.Recent}); err == nil {
		for _, r := range recs {
			if r.ID <= head {
				// seq 0: before every refusal of the same millisecond.
				h.recent.add(decode(r))
			}
		}
	} else {
		h.logger.Warn("read the newest events for the live backlog", "err", err)
	}
	h.pos, h.cold = head, false
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Started is closed once Run has taken its place in the log: events
// committed after that reach subscribers.
func (h *Hub) Started() <-chan struct{} { return h.started }

// decode reads the fields filters need from the canonical JSON.
func decode(r eventlog.Record) *Event {
	e := &Event{Record: r}
	res := gjson.GetManyBytes(r.Body, "dialect", "identities")
	e.Dialect = res[0].String()
	for _, id := range res[1].Array() {
		e.Identities = append(e.Identities, event.Identity{Type: id.Get("type").String(), Value: id.Get("value").String()})
	}
	return e
}

func (h *Hub) publish(after event.ID, recs []eventlog.Record) {
	evs := make([]*Event, len(recs))
	for i, r := range recs {
		evs[i] = decode(r)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cold || h.pos != after {
		return // the hub went cold, or a warm-up moved on meanwhile
	}
	for _, e := range evs {
		h.seq++
		e.seq = h.seq
		h.recent.add(e)
	}
	h.pos = recs[len(recs)-1].ID
	for s := range h.subs {
		s.push(evs, nil)
	}
}

// Refused records a refused request and hands it to the subscribers whose
// filter it passes. It never blocks on a subscriber. Seq and the arrival
// order are set here.
func (h *Hub) Refused(r Refusal) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	h.refSeq++
	r.seq, r.Seq = h.seq, h.refSeq
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	rp := &r
	h.refusals.add(rp)
	for s := range h.subs {
		s.push(nil, rp)
	}
}

// Position is the id of the last event published: every event up to it
// has reached the subscribers that were there. A cold hub, with nobody
// to reach, is at the log's head.
func (h *Hub) Position() event.ID {
	h.mu.Lock()
	cold := h.cold
	h.mu.Unlock()
	if cold {
		return h.src.Head()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pos
}

// ErrInvalidFilter wraps the error of Subscribe for a filter that does not
// validate.
var ErrInvalidFilter = errors.New("invalid live filter")

// Subscribe starts a subscription. backlog asks for up to that many of the
// newest kept events and refusals that pass f, in the order they came,
// before what comes next. Close it when done.
func (h *Hub) Subscribe(f Filter, backlog int) (*Subscription, error) {
	if errs := f.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidFilter, errs)
	}
	s := &Subscription{h: h, f: f, ready: make(chan struct{}, 1), limit: h.cfg.Queue}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cold {
		h.warmLocked()
	}
	if backlog > 0 {
		s.queue = h.backlogLocked(&f, min(backlog, h.cfg.Queue))
		if len(s.queue) > 0 {
			s.ready <- struct{}{}
		}
	}
	h.subs[s] = struct{}{}
	return s, nil
}

// later reports whether it came after other: by the time each happened
// (an event's commit time, a refusal's), then by arrival. Events kept for
// the backlog may arrive after refusals they preceded (a hub warms up
// when its first subscriber comes).
func later(it, other Item) bool {
	ti, to := it.at(), other.at()
	if ti != to {
		return ti > to
	}
	return it.seq() > other.seq()
}

// Forget drops erased events from the backlog kept in memory: no new
// subscriber gets them.
func (h *Hub) Forget(ids []event.ID) {
	gone := make(map[event.ID]bool, len(ids))
	for _, id := range ids {
		gone[id] = true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, e := range h.recent.buf {
		if e != nil && gone[e.ID] {
			h.recent.buf[i] = nil
		}
	}
}

// backlogLocked merges the newest n kept items that pass f, oldest first.
func (h *Hub) backlogLocked(f *Filter, n int) []Item {
	var evs []Item
	h.recent.newest(func(e *Event) bool {
		if e == nil || (h.cfg.Erased != nil && h.cfg.Erased(e.ID)) {
			return true // erased
		}
		if f.MatchEvent(e) {
			evs = append(evs, Item{Event: e})
		}
		return len(evs) < n
	})
	var refs []Item
	h.refusals.newest(func(r *Refusal) bool {
		if f.MatchRefusal(r) {
			refs = append(refs, Item{Refusal: r})
		}
		return len(refs) < n
	})
	// Both are newest first: merge them by arrival, newest first, then
	// turn the n newest around.
	out := make([]Item, 0, min(n, len(evs)+len(refs)))
	i, j := 0, 0
	for len(out) < n && (i < len(evs) || j < len(refs)) {
		if j >= len(refs) || (i < len(evs) && later(evs[i], refs[j])) {
			out = append(out, evs[i])
			i++
		} else {
			out = append(out, refs[j])
			j++
		}
	}
	for a, b := 0, len(out)-1; a < b; a, b = a+1, b-1 {
		out[a], out[b] = out[b], out[a]
	}
	return out
}

// Subscription is one subscriber's queue.
type Subscription struct {
	h     *Hub
	f     Filter
	ready chan struct{}
	limit int

	mu     sync.Mutex
	queue  []Item
	missed int
}

// Ready is signalled when items are waiting; then call Take.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Take returns the waiting items, in order, and how many were missed
// (dropped for a full queue) since the last Take.
func (s *Subscription) Take() (items []Item, missed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	items, missed = s.queue, s.missed
	s.queue, s.missed = nil, 0
	return items, missed
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.h.mu.Lock()
	delete(s.h.subs, s)
	s.h.mu.Unlock()
}

// push queues what passes the filter; called with the hub's lock held.
func (s *Subscription) push(evs []*Event, r *Refusal) {
	s.mu.Lock()
	added, dropped := 0, 0
	for _, e := range evs {
		if !s.f.MatchEvent(e) {
			continue
		}
		if len(s.queue) >= s.limit {
			dropped++
			continue
		}
		s.queue = append(s.queue, Item{Event: e})
		added++
	}
	if r != nil && s.f.MatchRefusal(r) {
		if len(s.queue) >= s.limit {
			dropped++
		} else {
			s.queue = append(s.queue, Item{Refusal: r})
			added++
		}
	}
	s.missed += dropped
	s.mu.Unlock()
	if dropped > 0 {
		s.h.m.missed.Add(float64(dropped))
	}
	if added > 0 || dropped > 0 {
		select {
		case s.ready <- struct{}{}:
		default:
		}
	}
}

// ring keeps the newest n values.
type ring[T any] struct {
	buf  []T
	next int
	full bool
}

func newRing[T any](n int) ring[T] { return ring[T]{buf: make([]T, n)} }

func (r *ring[T]) add(v T) {
	r.buf[r.next] = v
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

// newest calls f from the newest value back while it returns true.
func (r *ring[T]) newest(f func(T) bool) {
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	for k := 1; k <= n; k++ {
		i := (r.next - k + len(r.buf)) % len(r.buf)
		if !f(r.buf[i]) {
			return
		}
	}
}
