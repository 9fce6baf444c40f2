package hook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/lease"
	"github.com/sluicehq/sluice/internal/profile"
	"github.com/sluicehq/sluice/internal/project"
	"github.com/sluicehq/sluice/internal/sink"
)

// Log is the part of the event log hooks read.
type Log interface {
	Read(ctx context.Context, q eventlog.Query) ([]eventlog.Record, error)
	Count(ctx context.Context, q eventlog.Query) (int64, error)
	Head() event.ID
	Changed() <-chan struct{}
	Contents(ctx context.Context, ids []int64) (map[int64]event.Content, error)
}

// Projects names projects for {{project_name}}.
type Projects interface {
	Get(id uint32) (*project.Project, bool)
}

// Profiles finds the profile of an identity, for {{profile.<field>}} and
// filters over profile.
type Profiles interface {
	Find(ctx context.Context, projectID uint32, idType, value string) (*profile.Profile, error)
}

// profileWaiter is a Profiles that can wait until the profile consumer has
// folded an event: a hook delivering the event then sees a profile that
// includes the event's own links.
type profileWaiter interface {
	WaitFor(ctx context.Context, id event.ID) error
}

// profileWait bounds how long a delivery waits for the profile consumer.
const profileWait = 2 * time.Second

// Config configures hooks.
type Config struct {
	// Store keeps the hooks' state (the manager closes it); nil opens
	// hooks.db at Path. KeyPath is the key that seals hook secrets.
	Store         Store
	Path, KeyPath string
	// RetryTimes and RetryPeriod are the defaults of hooks that set none
	// (the seed's HOOK_RETRY_TIMES 4 and HOOK_RETRY_PERIOD_SEC 15).
	RetryTimes  int
	RetryPeriod time.Duration
	// StopAfterDeadLetters is the default streak of dead letters that
	// stops a hook (10).
	StopAfterDeadLetters int
	// AllowNetworks lets hooks reach these otherwise refused networks
	// (loopback, private, link-local…).
	AllowNetworks []netip.Prefix
	// RotationGrace is how long a rotated-out secret still signs (24h).
	RotationGrace time.Duration
	// ContentRetention is how long raw requests are kept for hooks with
	// include_content (72h, the seed's HOOK_CONTENT_CLEANUP_HOURS); an
	// older one is no longer sent.
	ContentRetention time.Duration
	// Destinations are the delivery types (app.Destinations).
	Destinations []sink.Destination
	Now          func() time.Time
	// Leases, when set, share the hooks with the other nodes of a
	// cluster on one Store (cluster.go): each hook is delivered by the
	// node that holds its lease, and changes made through any node reach
	// every node. Holder names this node; Timing is the leases'.
	Leases lease.Leaser
	Holder string
	Timing lease.Timing
}

// Manager owns the hooks: their store, and one worker per active hook.
type Manager struct {
	cfg      Config
	store    Store
	seal     *sealer
	log      Log
	projects Projects
	profiles Profiles
	logger   *slog.Logger
	met      *metrics
	guard    *sink.Guard
	dests    *Destinations

	mu      sync.Mutex
	rows    map[string]*row
	workers map[string]*worker
	closed  bool
	cluster *cluster // nil: this node delivers every hook

	// content is which projects keep raw requests: a hook with
	// include_content wants them (see KeepContent).
	content atomic.Pointer[contentScope]
	// forgotten is the erased events deliveries drop (Forget).
	forgotten forgotten
}

// contentScope is the projects whose raw requests are kept.
type contentScope struct {
	all      bool
	projects map[uint32]bool
}

// DefaultContentRetention is how long raw requests are kept.
const DefaultContentRetention = 72 * time.Hour

// KeepContent reports whether the raw requests of a project are to be
// kept beside its events: some hook, active or stopped, has
// include_content and covers the project.
func (m *Manager) KeepContent(projectID uint32) bool {
	c := m.content.Load()
	return c != nil && (c.all || c.projects[projectID])
}

// ContentRetention is how long raw requests are kept.
func (m *Manager) ContentRetention() time.Duration { return m.cfg.ContentRetention }

// scopeContentLocked recomputes KeepContent after the hooks changed.
func (m *Manager) scopeContentLocked() {
	c := &contentScope{projects: map[uint32]bool{}}
	for _, r := range m.rows {
		if !r.hook.IncludeContent {
			continue
		}
		if r.hook.ProjectID == nil {
			c.all = true
		} else {
			c.projects[*r.hook.ProjectID] = true
		}
	}
	m.content.Store(c)
}

// Open opens the hooks' store (cfg.Store, else hooks.db at cfg.Path) and
// loads the hooks; Start runs the active ones.
func Open(cfg Config, log Log, projects Projects, profiles Profiles, reg prometheus.Registerer, logger *slog.Logger) (*Manager, error) {
	if cfg.RetryTimes == 0 {
		cfg.RetryTimes = DefaultRetryTimes
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = DefaultRetryPeriod
	}
	if cfg.StopAfterDeadLetters == 0 {
		cfg.StopAfterDeadLetters = DefaultStopAfterDeadLetters
	}
	if cfg.RotationGrace == 0 {
		cfg.RotationGrace = 24 * time.Hour
	}
	if cfg.ContentRetention == 0 {
		cfg.ContentRetention = DefaultContentRetention
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dests, err := NewDestinations(cfg.Destinations)
	if err != nil {
		return nil, err
	}
	seal, err := newSealer(cfg.KeyPath)
	if err != nil {
		return nil, err
	}
	st := cfg.Store
	if st == nil {
		if st, err = OpenSQLite(cfg.Path); err != nil {
			return nil, err
		}
	}
	m := &Manager{cfg: cfg, store: st, seal: seal, log: log, projects: projects, profiles: profiles, logger: logger,
		met: newMetrics(reg), dests: dests, rows: map[string]*row{}, workers: map[string]*worker{}}
	stored, err := st.Hooks(context.Background())
	if err != nil {
		st.Close()
		return nil, err
	}
	for _, sh := range stored {
		r, err := seal.row(sh)
		if err != nil {
			st.Close()
			return nil, err
		}
		// A type that is no longer registered stops the hook at Start,
		// with the reason; its definition is kept as stored.
		if m.dests.Resolve(&r.hook) == nil {
			m.defaults(&r.hook)
		}
		m.rows[r.hook.ID] = r
	}
	m.scopeContentLocked()
	m.guard = m.guardFor(cfg.AllowNetworks)
	if cfg.Leases != nil {
		m.cluster = &cluster{leases: cfg.Leases, holder: cfg.Holder, timing: cfg.Timing.WithDefaults(), held: map[string]time.Time{},
			wake: make(chan struct{}, 1)}
		if m.cluster.version, err = st.Version(context.Background()); err != nil {
			st.Close()
			return nil, err
		}
	}
	return m, nil
}

// guardFor is the SSRF guard with allow as its exceptions.
func (m *Manager) guardFor(allow []netip.Prefix) *sink.Guard { return &sink.Guard{Allow: allow} }

// Start runs a worker for every active hook (of a cluster: for those
// whose leases this node takes, until ctx ends), and the lag gauges.
func (m *Manager) Start(ctx context.Context) {
	if m.cluster != nil {
		go m.runCluster(ctx)
		go m.watchLag(ctx)
		return
	}
	m.mu.Lock()
	for id, r := range m.rows {
		if r.hook.Active {
			m.startLocked(id)
		}
	}
	m.mu.Unlock()
	go m.watchLag(ctx)
}

// Close stops every worker (an in-flight batch is retried at the next
// start) and closes the store.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	ws := m.workers
	m.workers = map[string]*worker{}
	m.mu.Unlock()
	for _, w := range ws {
		w.cancel()
		<-w.done
	}
	if c := m.cluster; c != nil {
		// Stopped here, the hooks are taken over at once.
		m.mu.Lock()
		names := []string{"node:" + c.holder}
		for id := range c.held {
			names = append(names, hookLease(id))
		}
		c.held = map[string]time.Time{}
		m.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), c.timing.Renew)
		_ = c.leases.Release(ctx, c.holder, names)
		cancel()
	}
	return m.store.Close()
}

// insert stores a new hook.
func (m *Manager) insert(ctx context.Context, r *row) error {
	sh, err := m.seal.stored(r)
	if err != nil {
		return fmt.Errorf("insert hook: %w", err)
	}
	return m.store.Insert(ctx, sh)
}

// update writes the spec, secrets and switch of a hook (not its cursor,
// which only the delivery loop moves, unless cursor is set).
func (m *Manager) update(ctx context.Context, r *row, cursor *event.ID) error {
	sh, err := m.seal.stored(r)
	if err != nil {
		return fmt.Errorf("update hook: %w", err)
	}
	return m.store.Update(ctx, sh, cursor)
}

func (m *Manager) defaults(h *Hook) {
	if h.RetryTimes == nil {
		n := m.cfg.RetryTimes
		h.RetryTimes = &n
	}
	if h.RetryPeriod == 0 {
		h.RetryPeriod = Duration(m.cfg.RetryPeriod)
	}
	if h.StopAfterDeadLetters == 0 {
		h.StopAfterDeadLetters = m.cfg.StopAfterDeadLetters
	}
	h.Defaults()
}

func (m *Manager) startLocked(id string) {
	if m.closed || m.workers[id] != nil || !m.holdsLocked(id) {
		return
	}
	r := m.rows[id]
	comp, hs, err := m.compileRow(r)
	if err != nil {
		// Saved under other bounds: stopped, and the API says why.
		m.logger.Error("hook definition is no longer valid; stopped", "hook", id, "err", err)
		r.hook.Active, r.hook.StoppedReason = false, "the definition is no longer valid: "+err.Error()
		if err := m.update(context.Background(), r, nil); err != nil {
			m.logger.Error("stop hook", "hook", id, "err", err)
		}
		return
	}
	s, err := m.newSink(r, hs)
	if err != nil {
		m.logger.Error("hook sink", "hook", id, "err", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{m: m, store: m.store, hook: r.hook, comp: comp, sink: s, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	m.workers[id] = w
	m.met.active.WithLabelValues(id).Set(1)
	go w.run()
}

// stopWorker cancels a worker and waits for it (without holding mu).
func (m *Manager) stopWorker(id string) {
	m.mu.Lock()
	w := m.workers[id]
	delete(m.workers, id)
	m.mu.Unlock()
	if w != nil {
		w.cancel()
		<-w.done
	}
	m.met.active.WithLabelValues(id).Set(0)
}

// stopHook is the loop stopping its own hook (410, dead letters).
func (m *Manager) stopHook(id, reason string) {
	m.mu.Lock()
	r := m.rows[id]
	if r != nil {
		r.hook.Active, r.hook.StoppedReason, r.hook.UpdatedAt = false, reason, m.cfg.Now().UTC()
		if err := m.update(context.Background(), r, nil); err != nil {
			m.logger.Error("stop hook", "hook", id, "err", err)
		}
	}
	delete(m.workers, id) // the worker returns by itself
	m.mu.Unlock()
	m.met.active.WithLabelValues(id).Set(0)
	m.met.stops.WithLabelValues(id).Inc()
	m.logger.Warn("hook stopped", "hook", id, "reason", reason)
}

// cursorOf is the hook's cursor as last committed.
func (m *Manager) cursorOf(id string) event.ID {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.rows[id]; r != nil {
		return r.hook.Cursor
	}
	return 0
}

// deadLetter is a parked batch.
type deadLetter struct {
	ID         int64     `json:"id"`
	HookID     string    `json:"hook_id"`
	BatchID    string    `json:"batch_id"`
	CreatedAt  time.Time `json:"created_at"`
	Events     int       `json:"events"`
	FirstID    event.ID  `json:"first_event_id"`
	LastID     event.ID  `json:"last_event_id"`
	FirstTime  int64     `json:"first_event_time"`
	Attempts   int       `json:"attempts"`
	LastStatus int       `json:"last_status"`
	LastError  string    `json:"last_error"`
	messages   [][]byte
}

// DeadLetter is a parked batch, as the API shows it.
type DeadLetter = deadLetter

// jsonArray writes msgs as one JSON array.
func jsonArray(msgs [][]byte) []byte {
	n := 2
	for _, m := range msgs {
		n += len(m) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m...)
	}
	return append(b, ']')
}

// noteCursor moves the hook's cursor in memory to c, once c is stored.
func (m *Manager) noteCursor(hookID string, c event.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.rows[hookID]; r != nil && c > r.hook.Cursor {
		r.hook.Cursor = c
	}
}

// noteScan moves the hook's scan position in memory to c, once c is
// stored.
func (m *Manager) noteScan(hookID string, c event.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.rows[hookID]; r != nil && c > r.hook.scan {
		r.hook.scan = c
	}
}

// attempt is one row of the attempt log.
type attempt struct {
	hookID, batchID string
	n, events       int
	start, end      time.Time
	status          int
	err             error
	resp            string
	next            time.Time
	kind            string
}

// recordAttempt logs an attempt on its own (a replay); a retried attempt
// of a batch is logged with its number in flight (worker.retried), the
// last in the batch's commit.
func (m *Manager) recordAttempt(a *attempt) {
	if err := m.store.AddAttempt(context.Background(), *a.record()); err != nil {
		m.logger.Error("attempt log", "hook", a.hookID, "err", err)
	}
}

// record is a as the attempt log keeps it.
func (a *attempt) record() *Attempt {
	class, msg := "", ""
	if a.err != nil {
		class, msg = sink.Classify(a.err), a.err.Error()
	}
	return &Attempt{HookID: a.hookID, BatchID: a.batchID, N: a.n, Events: a.events, Start: a.start, End: a.end, Status: a.status,
		ErrorClass: class, Error: msg, Response: a.resp, Next: a.next, Kind: a.kind}
}

// ---- messages

// buildMessages renders the messages of records for attempt try (0 for
// the first).
func (m *Manager) buildMessages(ctx context.Context, h *Hook, comp *compiled, recs []eventlog.Record, try int, isTest bool) [][]byte {
	out := make([][]byte, len(recs))
	withProfile := usesProfile(comp.customData)
	size := 0
	for _, r := range recs {
		size += len(r.Body) + 64 + 48*len(comp.customData)
	}
	// One allocation holds every message of the batch.
	buf := make([]byte, 0, size)
	var scratch []byte
	var lastProject uint32
	var projectName string
	contents := m.contentsOf(ctx, h, recs)
	for i, r := range recs {
		if i == 0 || r.ProjectID != lastProject {
			lastProject, projectName = r.ProjectID, ""
			if p, ok := m.projects.Get(r.ProjectID); ok {
				projectName = p.Name
			}
		}
		rc := renderContext{body: r.Body, time: time.UnixMilli(r.Time), projectName: projectName}
		if withProfile {
			rc.profile = m.profileOf(ctx, r.ProjectID, r.Body)
		}
		start := len(buf)
		var content []byte
		if c, ok := contents[r.ContentID]; ok {
			content = c.Body
		}
		buf = appendMessage(buf, r.Body, comp.customData, &rc, &scratch, content, isTest, try)
		out[i] = buf[start:len(buf):len(buf)]
	}
	return out
}

// contentsOf reads the raw requests of recs when h includes them; those
// older than the content retention are left out.
func (m *Manager) contentsOf(ctx context.Context, h *Hook, recs []eventlog.Record) map[int64]event.Content {
	if !h.IncludeContent {
		return nil
	}
	var ids []int64
	for i, r := range recs {
		if r.ContentID != 0 && (i == 0 || r.ContentID != recs[i-1].ContentID) {
			ids = append(ids, r.ContentID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	out, err := m.log.Contents(ctx, ids)
	if err != nil {
		m.logger.Error("read raw requests", "hook", h.ID, "err", err)
		return nil
	}
	oldest := m.cfg.Now().Add(-m.cfg.ContentRetention).UnixMilli()
	for id, c := range out {
		if c.ReceivedAt < oldest {
			delete(out, id)
		}
	}
	return out
}

// userProfile is the profile of an event's user: its id, and its
// attributes as the profile store keeps them (JSON values).
type userProfile struct {
	id         string
	attrs      map[string]json.RawMessage
	traits     []byte // the profile's traits as JSON
	identities []sink.Identity
}

// filterEnv is the profile as a filter sees it: each attribute as a value
// (a string, a number, a boolean, an object or an array, as the event's
// fields are) and "id", the profile id. A user without a profile has an
// empty one.
func (p *userProfile) filterEnv() map[string]any {
	out := map[string]any{}
	if p == nil {
		return out
	}
	for k, raw := range p.attrs {
		var v any
		if json.Unmarshal(raw, &v) == nil {
			out[k] = v
		}
	}
	out["id"] = p.id
	var traits map[string]any
	if json.Unmarshal(p.traits, &traits) == nil {
		out["traits"] = traits
	}
	return out
}

// appendAttr renders attribute name (or "id") as a template renders a
// value: a string as it is, a number or boolean as written, an object or
// array as its JSON, nothing for null or a missing one.
func (p *userProfile) appendAttr(dst []byte, name string) []byte {
	if p == nil {
		return dst
	}
	if name == "id" {
		return append(dst, p.id...)
	}
	if t, ok := strings.CutPrefix(name, "traits."); ok {
		return appendResult(dst, gjson.GetBytes(p.traits, t))
	}
	raw, ok := p.attrs[name]
	if !ok {
		return dst
	}
	return appendResult(dst, gjson.ParseBytes(raw))
}

// profileOf finds the profile of the first identity of the stored event
// body that has one (nil when none has).
func (m *Manager) profileOf(ctx context.Context, projectID uint32, body []byte) *userProfile {
	if m.profiles == nil {
		return nil
	}
	ids := gjson.GetBytes(body, "identities")
	if !ids.IsArray() {
		return nil
	}
	if pw, ok := m.profiles.(profileWaiter); ok {
		if id, err := strconv.ParseUint(gjson.GetBytes(body, "id").String(), 10, 64); err == nil {
			wctx, cancel := context.WithTimeout(ctx, profileWait)
			_ = pw.WaitFor(wctx, event.ID(id)) // past the bound, the profile as it is
			cancel()
		}
	}
	var out *userProfile
	ids.ForEach(func(_, id gjson.Result) bool {
		t, v := id.Get("type").String(), id.Get("value").String()
		if t == "" || v == "" {
			return true
		}
		p, err := m.profiles.Find(ctx, projectID, t, v)
		if err != nil {
			return true
		}
		traits, _ := json.Marshal(p.Traits)
		out = &userProfile{id: p.ID, attrs: make(map[string]json.RawMessage, len(p.Attributes)), traits: traits}
		for k, a := range p.Attributes {
			out.attrs[k] = a.Value
		}
		for _, id := range p.Identities {
			out.identities = append(out.identities, sink.Identity{Type: id.Type, Value: id.Value})
		}
		return false
	})
	return out
}

// ---- lag

func (m *Manager) watchLag(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		var qs []lagQuery
		for id := range m.rows {
			q, _ := m.lagQueryLocked(id)
			qs = append(qs, lagQuery{id, q})
		}
		m.mu.Unlock()
		for _, h := range qs {
			m.measureLag(ctx, h.id, h.q)
		}
	}
}

// lagQueryOf is the query of a hook's backlog: its scope after its cursor.
func (m *Manager) lagQueryOf(id string) (eventlog.Query, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lagQueryLocked(id)
}

func (m *Manager) lagQueryLocked(id string) (eventlog.Query, bool) {
	r, ok := m.rows[id]
	if !ok {
		return eventlog.Query{}, false
	}
	q := eventlog.Query{After: r.hook.Cursor, Limit: 1}
	if r.hook.ProjectID != nil {
		q.Projects = []uint32{*r.hook.ProjectID}
	}
	return q, true
}

type lagQuery struct {
	id string
	q  eventlog.Query
}

// measureLag sets a hook's lag: the events of its scope after its cursor,
// and the age of the oldest of them.
func (m *Manager) measureLag(ctx context.Context, id string, q eventlog.Query) {
	n, err := m.log.Count(ctx, q)
	if err != nil {
		return
	}
	age := 0.0
	if n > 0 {
		if recs, err := m.log.Read(ctx, q); err == nil && len(recs) > 0 {
			age = m.cfg.Now().Sub(recs[0].ID.Time()).Seconds()
		}
	}
	m.met.lagEvents.WithLabelValues(id).Set(float64(n))
	m.met.lagSeconds.WithLabelValues(id).Set(max(age, 0))
}

// ---- operations

// ErrConflict is a change that the hook's state does not allow.
var ErrConflict = errors.New("conflict")

func newHookID() string { return "hk_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:20] }
func randID() string    { return uuid.NewString() }

// Erased reports whether event id was erased in the last day, through
// any node (the stores share the erased ids).
func (m *Manager) Erased(id event.ID) bool { return m.forgotten.has(id) }

// List returns every hook, secrets left out.
func (m *Manager) List() []Hook {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Hook, 0, len(m.rows))
	for _, r := range m.rows {
		out = append(out, public(r.hook))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Get returns one hook.
func (m *Manager) Get(id string) (Hook, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[id]
	if !ok {
		return Hook{}, fmt.Errorf("hook %s: %w", id, ErrNotFound)
	}
	return public(r.hook), nil
}

// public blanks what the API never returns.
func public(h Hook) Hook {
	h = h.withoutSecrets()
	h.SigningSecret = ""
	return h
}

// Start positions for a new hook or an activation.
type Start struct {
	// From, when set, starts at events committed at or after it (a
	// backfill); otherwise at now.
	From *time.Time
}

func (m *Manager) position(s Start) event.ID {
	if s.From == nil {
		return m.log.Head()
	}
	ms := s.From.UnixMilli()
	if ms <= 0 {
		return 0
	}
	return event.ID(uint64(ms)<<22) - 1
}

// check validates a definition before it is saved: every field (see
// compile), then its project, which must exist (refused with 404 as
// tokens and schemas of a missing project are).
func (m *Manager) check(h *Hook, p *problems) error {
	if _, err := h.compile(p); err != nil {
		return err
	}
	if h.ProjectID == nil {
		return nil
	}
	if _, ok := m.projects.Get(*h.ProjectID); ok {
		return nil
	}
	id := *h.ProjectID
	return &Error{Err: project.ErrNotFound, Message: fmt.Sprintf("project %d: %v", id, project.ErrNotFound),
		Fields: event.FieldErrors{{Path: "project_id", Message: fmt.Sprintf("project %d does not exist", id)}}}
}

// Create saves a new hook and starts it when active. The answer carries
// the signing secret, once.
func (m *Manager) Create(ctx context.Context, h Hook, s Start) (Hook, error) {
	return m.create(ctx, h, s, newHookID(), NewSecret())
}

func (m *Manager) create(ctx context.Context, h Hook, s Start, id, secret string) (Hook, error) {
	p := newProblems()
	m.dests.resolve(&h, p)
	m.defaults(&h)
	if err := m.check(&h, p); err != nil {
		return Hook{}, err
	}
	now := m.cfg.Now().UTC().Truncate(time.Millisecond)
	h.ID, h.CreatedAt, h.UpdatedAt, h.StoppedReason = id, now, now, ""
	h.Cursor = m.position(s)
	h.scan = h.Cursor
	r := &row{hook: h, secrets: secrets{Signing: []string{secret}, Values: h.givenSecrets()}}
	if err := m.insert(ctx, r); err != nil {
		return Hook{}, err
	}
	m.mu.Lock()
	m.rows[h.ID] = r
	m.scopeContentLocked()
	if h.Active {
		m.startLocked(h.ID)
	}
	m.mu.Unlock()
	out := public(h)
	out.SigningSecret = r.secrets.Signing[0]
	return out, nil
}

// Update replaces a hook's definition, keeping its place, state and
// secrets (a password or token sent again replaces the stored one).
func (m *Manager) Update(ctx context.Context, id string, h Hook) (Hook, error) {
	p := newProblems()
	m.dests.resolve(&h, p)
	m.defaults(&h)
	// The row's hook is copied under the lock: a running worker moves
	// its cursor (noteCursor).
	m.mu.Lock()
	r, ok := m.rows[id]
	var cur Hook
	var sec secrets
	if ok {
		cur, sec = r.hook, r.secrets
	}
	m.mu.Unlock()
	if !ok {
		return Hook{}, fmt.Errorf("hook %s: %w", id, ErrNotFound)
	}
	nr := &row{hook: h, secrets: sec}
	nr.hook.ID, nr.hook.CreatedAt, nr.hook.Cursor = id, cur.CreatedAt, cur.Cursor
	nr.hook.Active, nr.hook.StoppedReason = cur.Active, cur.StoppedReason
	nr.hook.UpdatedAt = m.cfg.Now().UTC().Truncate(time.Millisecond)
	nr.secrets = nr.secrets.withValues(h.givenSecrets())
	// Checked with the secrets it will have: a token left out is kept.
	withSecrets := nr.hook.withSecrets(nr.secrets)
	if err := m.check(&withSecrets, p); err != nil {
		return Hook{}, err
	}
	m.stopWorker(id)
	m.mu.Lock()
	if r := m.rows[id]; r != nil {
		nr.hook.Cursor = r.hook.Cursor // where the stopped worker left it
	}
	m.mu.Unlock()
	if err := m.update(ctx, nr, nil); err != nil {
		return Hook{}, err
	}
	m.mu.Lock()
	m.rows[id] = nr
	m.scopeContentLocked()
	if nr.hook.Active {
		m.startLocked(id)
	}
	// Read under the lock: the worker just started moves the cursor.
	out := public(nr.hook)
	m.mu.Unlock()
	return out, nil
}

// Activate switches a hook on: from its place when s is nil, else from s
// (an empty Start is "now": the log's head).
func (m *Manager) Activate(ctx context.Context, id string, s *Start) (Hook, error) {
	m.stopWorker(id)
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[id]
	if !ok {
		return Hook{}, fmt.Errorf("hook %s: %w", id, ErrNotFound)
	}
	var cursor *event.ID
	if s != nil {
		c := m.position(*s)
		cursor = &c
		// A new place: batches formed at the old one are dropped.
		r.hook.Cursor, r.hook.scan = c, c
	}
	r.hook.Active, r.hook.StoppedReason, r.hook.UpdatedAt = true, "", m.cfg.Now().UTC().Truncate(time.Millisecond)
	if err := m.update(ctx, r, cursor); err != nil {
		return Hook{}, err
	}
	m.startLocked(id)
	return public(r.hook), nil
}

// Stop switches a hook off, keeping its place.
func (m *Manager) Stop(ctx context.Context, id string) (Hook, error) {
	m.stopWorker(id)
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[id]
	if !ok {
		return Hook{}, fmt.Errorf("hook %s: %w", id, ErrNotFound)
	}
	r.hook.Active, r.hook.StoppedReason, r.hook.UpdatedAt = false, "stopped by an operator", m.cfg.Now().UTC().Truncate(time.Millisecond)
	if err := m.update(ctx, r, nil); err != nil {
		return Hook{}, err
	}
	return public(r.hook), nil
}

// Clone copies a hook's definition into a new, inactive hook that starts
// from now, with its own signing secret.
func (m *Manager) Clone(ctx context.Context, id string) (Hook, error) {
	m.mu.Lock()
	r, ok := m.rows[id]
	m.mu.Unlock()
	if !ok {
		return Hook{}, fmt.Errorf("hook %s: %w", id, ErrNotFound)
	}
	h := r.hook.withSecrets(r.secrets)
	h.Name, h.Active = h.Name+" (copy)", false
	return m.Create(ctx, h, Start{})
}

// Delete removes a hook with its dead letters and attempt log.
func (m *Manager) Delete(ctx context.Context, id string) error {
	m.stopWorker(id)
	if err := m.store.Delete(ctx, id); err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("hook %s: %w", id, ErrNotFound)
		}
		return err
	}
	m.mu.Lock()
	delete(m.rows, id)
	m.scopeContentLocked()
	m.mu.Unlock()
	return nil
}

// RotateSecret makes a new signing secret; the previous one keeps signing
// (a second signature) for the rotation grace.
func (m *Manager) RotateSecret(ctx context.Context, id string) (Hook, error) {
	return m.rotateTo(ctx, id, NewSecret())
}

// rotateTo makes secret the current signing secret; the previous one
// keeps signing for the rotation grace.
func (m *Manager) rotateTo(ctx context.Context, id, secret string) (Hook, error) {
	m.stopWorker(id)
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[id]
	if !ok {
		return Hook{}, fmt.Errorf("hook %s: %w", id, ErrNotFound)
	}
	r.secrets.Signing = []string{secret, r.secrets.Signing[0]}
	r.secrets.PreviousUntil = m.cfg.Now().Add(m.cfg.RotationGrace).UnixMilli()
	r.hook.UpdatedAt = m.cfg.Now().UTC().Truncate(time.Millisecond)
	if err := m.update(ctx, r, nil); err != nil {
		return Hook{}, err
	}
	if r.hook.Active {
		m.startLocked(id)
	}
	out := public(r.hook)
	out.SigningSecret = r.secrets.Signing[0]
	return out, nil
}

// Delivery is one attempt of the attempt log.
type Delivery struct {
	ID            int64      `json:"id"`
	BatchID       string     `json:"batch_id"`
	Kind          string     `json:"kind"` // delivery or replay
	Attempt       int        `json:"attempt"`
	Events        int        `json:"events"`
	StartedAt     time.Time  `json:"started_at"`
	EndedAt       time.Time  `json:"ended_at"`
	Status        int        `json:"status"`
	ErrorClass    string     `json:"error_class,omitempty"`
	Error         string     `json:"error,omitempty"`
	Response      string     `json:"response,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
}

// Deliveries returns the newest attempts first.
func (m *Manager) Deliveries(ctx context.Context, id string, limit int) ([]Delivery, error) {
	if _, err := m.Get(id); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > AttemptLogKeep {
		limit = 100
	}
	return m.store.Attempts(ctx, id, limit)
}

// DeadLetterQuery selects dead letters: all, one, or a time range of when
// they were parked.
type DeadLetterQuery struct {
	ID           int64
	Since, Until time.Time
}

// DeadLetters lists a hook's parked batches, oldest first.
func (m *Manager) DeadLetters(ctx context.Context, id string, q DeadLetterQuery) ([]DeadLetter, error) {
	if _, err := m.Get(id); err != nil {
		return nil, err
	}
	return m.store.DeadLetters(ctx, id, q)
}

// ReplayResult is the outcome of replaying one dead letter.
type ReplayResult struct {
	ID        int64  `json:"id"`
	BatchID   string `json:"batch_id"`
	Delivered bool   `json:"delivered"`
	Status    int    `json:"status"`
	Error     string `json:"error,omitempty"`
}

// Replay sends the selected dead letters once each, in order, with their
// original batch ids. A delivered one is removed; a failed one stays with
// its new error.
func (m *Manager) Replay(ctx context.Context, id string, q DeadLetterQuery) ([]ReplayResult, error) {
	dls, err := m.DeadLetters(ctx, id, q)
	if err != nil {
		return nil, err
	}
	if q.ID != 0 && len(dls) == 0 {
		return nil, fmt.Errorf("dead letter %d of hook %s: %w", q.ID, id, ErrNotFound)
	}
	m.mu.Lock()
	r := m.rows[id]
	m.mu.Unlock()
	comp, hs, err := m.compileRow(r)
	if err != nil {
		return nil, err
	}
	s, err := m.newSink(r, hs)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	out := []ReplayResult{}
	for _, d := range dls {
		start := time.Now()
		rep, err := s.Deliver(ctx, &sink.Batch{ID: d.BatchID, Messages: d.messages, Attempt: d.Attempts + 1,
			Meta: m.metaFor(ctx, comp, d.messages)})
		end := time.Now()
		res := ReplayResult{ID: d.ID, BatchID: d.BatchID, Delivered: err == nil}
		resp := ""
		if rep != nil {
			res.Status, resp = rep.Status, rep.Response
		}
		m.recordAttempt(&attempt{hookID: id, batchID: d.BatchID, n: d.Attempts + 1, events: d.Events, start: start, end: end, status: res.Status, err: err, resp: resp, kind: "replay"})
		if err == nil {
			if err := m.store.RemoveDeadLetter(ctx, d.ID); err != nil {
				return out, err
			}
			m.met.delivered.WithLabelValues(id).Add(float64(d.Events))
		} else {
			res.Error = err.Error()
			_ = m.store.DeadLetterFailed(ctx, d.ID, res.Status, err.Error())
		}
		out = append(out, res)
	}
	return out, nil
}

// TestResult is what a pre-test sent and got back.
type TestResult struct {
	Event     string            `json:"event_source"` // sample, stored or synthetic
	Delivered bool              `json:"delivered"`
	Request   *sink.RequestInfo `json:"request"`
	Status    int               `json:"status"`
	LatencyMs float64           `json:"latency_ms"`
	Response  string            `json:"response"`
	Error     string            `json:"error,omitempty"`
}

// Test builds the real message for one event (sample, else the latest
// matching stored one, else a synthetic one), marked is_test, and sends
// it once. It works on inactive hooks and never moves the cursor.
func (m *Manager) Test(ctx context.Context, id string, sample json.RawMessage) (*TestResult, error) {
	m.mu.Lock()
	r, ok := m.rows[id]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("hook %s: %w", id, ErrNotFound)
	}
	comp, hs, err := m.compileRow(r)
	if err != nil {
		return nil, err
	}
	res := &TestResult{}
	var rec eventlog.Record
	switch {
	case len(sample) > 0 && string(sample) != "null":
		var e event.Event
		p := newProblems()
		if err := json.Unmarshal(sample, &e); err != nil {
			p.add("sample", "not a canonical event: %v", err)
		} else if e.Key == "" {
			p.add("sample.key", "required: a canonical event with at least a key")
		}
		if err := p.err(); err != nil {
			return nil, err
		}
		rec = eventlog.Record{ID: e.ID, ProjectID: e.ProjectID, Key: e.Key, Time: e.Time, Body: e.AppendJSON(nil)}
		res.Event = "sample"
	default:
		if latest, ok := m.latestMatching(ctx, r, comp); ok {
			rec, res.Event = latest, "stored"
		} else {
			rec, res.Event = m.synthetic(r.hook), "synthetic"
		}
	}
	s, err := m.newSink(r, hs)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	msgs := m.buildMessages(ctx, &r.hook, comp, []eventlog.Record{rec}, 0, true)
	rep, err := s.Deliver(ctx, &sink.Batch{ID: "msg_test_" + strings.ReplaceAll(randID(), "-", "")[:16], Messages: msgs, Attempt: 1,
		Meta: m.metaFor(ctx, comp, msgs), Test: true})
	if rep != nil {
		res.Request, res.Status, res.Response = rep.Request, rep.Status, rep.Response
		res.LatencyMs = float64(rep.Latency.Microseconds()) / 1000
	}
	res.Delivered = err == nil
	if err != nil {
		res.Error = err.Error()
	}
	return res, nil
}

// PretestExamine bounds the pre-test's search for a stored event by
// design, whatever the log holds: it reads the newest 100 events of the
// log, then, when none of them matches, the newest PretestExamine; of
// every project (a read of one project's newest events would walk back
// over every other project's), skipping those outside the hook's.
const PretestExamine = 5000

// latestMatching finds the newest of the log's PretestExamine newest
// events that the hook takes.
func (m *Manager) latestMatching(ctx context.Context, r *row, comp *compiled) (eventlog.Record, bool) {
	w := &worker{m: m, hook: r.hook, comp: comp, ctx: ctx}
	for _, n := range []int{100, PretestExamine} {
		recs, err := m.log.Read(ctx, eventlog.Query{Limit: n, Newest: true})
		if err != nil {
			m.logger.Warn("pre-test: read the newest events", "hook", r.hook.ID, "err", err)
			return eventlog.Record{}, false
		}
		for i := len(recs) - 1; i >= 0; i-- {
			rec := recs[i]
			if (r.hook.ProjectID == nil || *r.hook.ProjectID == rec.ProjectID) && w.match(rec) {
				return rec, true
			}
		}
		if len(recs) < n {
			break // that was the whole log
		}
	}
	return eventlog.Record{}, false
}

// ParseDeadLetterID reads a dead letter id.
func ParseDeadLetterID(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: dead letter id %q", ErrInvalid, s)
	}
	return n, nil
}
