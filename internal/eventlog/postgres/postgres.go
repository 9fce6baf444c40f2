// Package postgres is the event log in PostgreSQL: one database that every
// sluice node of a cluster appends to and follows.
//
// Ids grow in commit order across nodes. A commit that stores events first
// locks the one row of event_log (SELECT … FOR UPDATE, a row lock held
// until the transaction ends), which holds the largest id ever given; the
// n-th event of the group gets greatest(head + n, the node's flake id for
// it) — its own time and worker (Config.Worker) unless the head is ahead,
// and above the head and its predecessors in any case — and the row is
// raised to the last id before the commit. The whole commit is one round
// trip: the statements go out together and the server computes the ids
// (and splices them into the bodies) from the head it locked, as the node
// does from the head the lock returned. PostgreSQL makes a
// transaction visible before it releases its locks, so the next commit
// takes its turn only after the previous one is visible, and takes larger
// ids: whenever a reader sees an event, it sees every event with a
// smaller id that will ever exist. A follower that read everything after
// its cursor X never misses an event committed later with an id below X,
// whichever node committed it (logtest's FollowersMissNothingAcrossHandles
// runs three nodes at once). The price is that commits take turns across
// the cluster; each node group-commits, so one turn carries the node's
// whole group, and a turn lasts one round trip and the commit's WAL flush.
// Ids are never reused, even after the newest events were erased: the head
// is a row of its own, not max(id).
//
// Dedup holds across nodes: the lookup of a group's dedup keys runs under
// the lock, in a statement that starts after the lock is held (READ
// COMMITTED takes a fresh snapshot per statement), so it sees every
// earlier commit; two nodes sent one key at once store it once and both
// answer its id. The unique index (project_id, dedup) stands behind it.
//
// Head and Changed: a node's own commits raise its head at once; after
// them the node NOTIFYs sluice_events with its head (at most every
// NotifyEvery, outside the commits), and every handle keeps a connection
// that LISTENs and raises its head. After (re)connecting it LISTENs, then reads
// event_log, so a commit made while it was away is not missed. Head is
// always a committed id, and a commit still in flight holds the lock and
// takes ids above it, so no event can land at or below Head later.
//
// Durability: Append answers after COMMIT returned. Open refuses a server
// (or a role, database or DSN) with synchronous_commit or fsync off, where
// a commit can be lost in a crash after it returned, unless
// Config.AllowSynchronousCommitOff says the operator accepts that.
//
// A commit that fails because the server cannot be reached, is shutting
// down, is read-only (a standby, after a failover), is out of disk or
// reports an I/O error makes the log unavailable: appends fail at once
// with eventlog.ErrUnavailable (Health says why and since when), reads go
// on when they can, and a background loop reconnects and commits a probe
// write every RecoverEvery until it succeeds; then appends resume. A
// commit whose answer was lost with its connection may have been stored:
// the sender is told it failed and sends again, and a dedup key keeps the
// second copy out.
//
// The tables are created and upgraded by versioned migrations embedded in
// the binary (migrations/), applied at Open under pgmigrate's advisory
// lock.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/pgmigrate"
)

var _ eventlog.Log = (*Log)(nil)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations are the log's tables, for pgmigrate (and `sluice migrate`).
func Migrations() pgmigrate.Component {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory exists
	}
	return pgmigrate.Component{Name: "eventlog", FS: sub}
}

// Channel is the LISTEN/NOTIFY channel of commits; the payload is the
// commit's last id.
const Channel = "sluice_events"

// Config configures the PostgreSQL log.
type Config struct {
	// Pool is the database and its pool settings (config's
	// Postgres.PoolConfig). Readers and maintenance use a pool of it; the
	// committer and the listener a connection each.
	Pool *pgxpool.Config
	// Worker is the worker id of the node's flake ids (0..1023). Ids are
	// unique whatever it is (each commit takes ids above the last).
	Worker int
	// Now is the clock of the ids (nil: time.Now). Ids stay above the
	// stored ones whatever it says.
	Now func() time.Time
	// MaxBatch caps the events in one commit (default 4096).
	MaxBatch int
	// AllowSynchronousCommitOff opens the log on a server with
	// synchronous_commit or fsync off (see the package comment).
	AllowSynchronousCommitOff bool
	// RecoverEvery is how often an unavailable log tries to recover, and
	// how long the listener waits between reconnections (default 500ms).
	RecoverEvery time.Duration
	// CommitTimeout bounds one commit (default 15s): a server that stops
	// answering makes the log unavailable instead of holding every
	// append.
	CommitTimeout time.Duration
	// NotifyEvery is the least time between two notifications of this
	// node's commits to the others (default 5ms): how much later than its
	// own head another node's head may move.
	NotifyEvery time.Duration
}

func (c *Config) defaults() {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 4096
	}
	if c.RecoverEvery <= 0 {
		c.RecoverEvery = 500 * time.Millisecond
	}
	if c.CommitTimeout <= 0 {
		c.CommitTimeout = 15 * time.Second
	}
	if c.NotifyEvery <= 0 {
		c.NotifyEvery = 5 * time.Millisecond
	}
}

// Log is the PostgreSQL event log.
type Log struct {
	cfg     Config
	gen     *event.Generator
	log     *slog.Logger
	metrics *metrics
	pool    *pgxpool.Pool

	// wc is the committing connection, the leader's (or the recoverer's
	// while the log is down); wcMu hands it over.
	wcMu sync.Mutex
	wc   *pgx.Conn
	// The leader's scratch: the columns of one group, reused.
	cols columns

	qmu     sync.Mutex
	idle    *sync.Cond // signalled when the last leader steps down
	queue   []*request // waiting for a leader, oldest first
	leading bool
	closed  bool
	down    *unavailable

	head    atomic.Uint64
	chMu    sync.Mutex
	changed chan struct{}

	stop       context.CancelFunc
	bg         sync.WaitGroup
	wakeRec    chan struct{}
	wakeNotify chan struct{} // a commit to announce
}

// request is one Append waiting to be committed.
type request struct {
	events []*event.Event
	enc    []event.Encoded
	res    []eventlog.Result
	err    error
	// done receives false when the request is committed (or failed), and
	// true when its goroutine must take over as leader.
	done chan bool
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan bool, 1)} }}

// bufPool holds encode buffers for the request goroutines.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// Open opens the log in the database of cfg.Pool, creating or upgrading
// its tables. reg may be nil.
func Open(ctx context.Context, cfg Config, reg prometheus.Registerer, logger *slog.Logger) (*Log, error) {
	cfg.defaults()
	if cfg.Pool == nil {
		return nil, errors.New("open log: no database configured")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	gen, err := event.NewGenerator(cfg.Worker, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	l := &Log{cfg: cfg, gen: gen, log: logger, changed: make(chan struct{}), wakeRec: make(chan struct{}, 1), wakeNotify: make(chan struct{}, 1)}
	l.idle = sync.NewCond(&l.qmu)
	if l.pool, err = pgxpool.NewWithConfig(ctx, cfg.Pool); err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	if err := pgmigrate.Apply(ctx, l.pool, Migrations()); err != nil {
		l.pool.Close()
		return nil, fmt.Errorf("open log: %w", err)
	}
	if l.wc, err = l.connect(ctx, "sluice event log commits"); err != nil {
		l.pool.Close()
		return nil, fmt.Errorf("open log: %w", err)
	}
	var head int64
	if err := l.wc.QueryRow(ctx, "SELECT head FROM event_log").Scan(&head); err != nil {
		l.wc.Close(ctx)
		l.pool.Close()
		return nil, fmt.Errorf("open log: read head: %w", err)
	}
	l.head.Store(uint64(head))

	bgCtx, cancel := context.WithCancel(context.Background())
	l.stop = cancel
	first := make(chan error, 1)
	l.bg.Add(3)
	go l.listener(bgCtx, first)
	go l.recoverer(bgCtx)
	go l.notifier(bgCtx)
	// Commits of other nodes are heard of from here on.
	select {
	case err = <-first:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("open log: listen for commits: %w", err)
	}
	l.metrics = newMetrics(reg)
	return l, nil
}

// connConfig is the pool's connection configuration, named for
// pg_stat_activity unless the DSN names it.
func (l *Log) connConfig(name string) *pgx.ConnConfig {
	cc := l.cfg.Pool.ConnConfig.Copy()
	if _, ok := cc.RuntimeParams["application_name"]; !ok {
		cc.RuntimeParams["application_name"] = name
	}
	return cc
}

// connect opens the committing connection and checks that its commits are
// durable. Its statements are planned once (a generic plan): their plans
// do not depend on the arguments, and planning the insert anew cost a
// tenth of a millisecond a commit.
func (l *Log) connect(ctx context.Context, name string) (*pgx.Conn, error) {
	cc := l.connConfig(name)
	if _, ok := cc.RuntimeParams["plan_cache_mode"]; !ok {
		cc.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
	c, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, err
	}
	if err := l.checkDurable(ctx, c); err != nil {
		c.Close(ctx)
		return nil, err
	}
	return c, nil
}

// ErrNotDurable is wrapped by the error of Open on a server whose commits
// can be lost in a crash after they returned.
var ErrNotDurable = errors.New("commits are not durable")

func (l *Log) checkDurable(ctx context.Context, c *pgx.Conn) error {
	var syncCommit, fsync string
	if err := c.QueryRow(ctx, "SELECT current_setting('synchronous_commit'), current_setting('fsync')").Scan(&syncCommit, &fsync); err != nil {
		return fmt.Errorf("read durability settings: %w", err)
	}
	var off []string
	if syncCommit == "off" {
		off = append(off, "synchronous_commit")
	}
	if fsync == "off" {
		off = append(off, "fsync")
	}
	if len(off) == 0 {
		return nil
	}
	what := strings.Join(off, " and ")
	if l.cfg.AllowSynchronousCommitOff {
		l.log.Warn("PostgreSQL runs with "+what+" off, allowed by postgres.allow_synchronous_commit_off: an acknowledged event can be lost in a crash of PostgreSQL", "off", what)
		return nil
	}
	return fmt.Errorf("%w: PostgreSQL runs with %s off (in its configuration, or for this role, database or connection string), so an event answered 2xx could be lost in a crash of PostgreSQL; turn it on, or set postgres.allow_synchronous_commit_off to accept that", ErrNotDurable, what)
}

// Append implements eventlog.Log. Each event's Data must be a compact JSON
// object, as every decoder produces; the log checks the framing only.
func (l *Log) Append(ctx context.Context, events []*event.Event) ([]eventlog.Result, error) {
	if len(events) == 0 {
		return nil, nil
	}
	for i, e := range events {
		if err := e.CheckEnvelope(); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
	}
	r := requestPool.Get().(*request)
	r.events = events
	r.enc = r.enc[:0]
	// Encode on the caller's goroutine, into pooled buffers: the commit
	// has sent them before Append returns.
	var one [1]*[]byte
	bufs := one[:0]
	if len(events) > 1 {
		bufs = make([]*[]byte, 0, len(events))
	}
	for _, e := range events {
		b := bufPool.Get().(*[]byte)
		bufs = append(bufs, b)
		r.enc = append(r.enc, e.Encode(*b))
	}
	err := l.submit(ctx, r)
	for i, enc := range r.enc {
		*bufs[i] = enc.Head()[:0]
		bufPool.Put(bufs[i])
	}
	res := r.res
	if err == nil {
		err = r.err
	}
	if err != nil {
		l.metrics.appendFailed(failureReason(err))
		res = nil
	} else {
		for i, e := range events {
			e.ID = res[i].ID
		}
	}
	r.events, r.res, r.err = nil, nil, nil
	clear(r.enc)
	r.enc = r.enc[:0]
	requestPool.Put(r)
	return res, err
}

// submit queues r and returns once r is committed (or failed): as the
// leader that committed it, or woken by one.
func (l *Log) submit(ctx context.Context, r *request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.qmu.Lock()
	if l.closed {
		l.qmu.Unlock()
		return eventlog.ErrClosed
	}
	if l.down != nil {
		down := l.down
		l.qmu.Unlock()
		return down
	}
	l.queue = append(l.queue, r)
	if l.leading {
		l.qmu.Unlock()
		if lead := <-r.done; !lead {
			return nil
		}
	} else {
		l.leading = true
		l.qmu.Unlock()
	}
	l.lead()
	return nil
}

// lead commits one group, led by the oldest waiting request, whose
// goroutine runs this; then it wakes the group and passes the leadership
// on, or steps down. A commit that failed for the database's sake takes
// the log down: the requests still queued fail with it, and recoverer is
// told.
func (l *Log) lead() {
	l.qmu.Lock()
	group := l.takeGroup()
	l.qmu.Unlock()

	head, err := l.commitGroup(group)
	if err == nil {
		l.raiseHead(head)
		select {
		case l.wakeNotify <- struct{}{}:
		default: // the notifier will announce this head too
		}
	}
	if err != nil && failureReason(err) != reasonOther && failureReason(err) != reasonClosed {
		down := l.goDown(err)
		for _, r := range group {
			if r.err != nil && failureReason(r.err) != reasonOther {
				r.err = down
			}
		}
	}
	for _, r := range group[1:] {
		r.done <- false
	}

	l.qmu.Lock()
	var refused []*request
	down := l.down
	if down != nil {
		refused, l.queue = l.queue, nil
	}
	var next *request
	if len(l.queue) > 0 {
		next = l.queue[0]
	} else {
		l.leading = false
		l.idle.Broadcast()
	}
	l.qmu.Unlock()
	for _, r := range refused {
		r.err = down
		r.done <- false
	}
	if next != nil {
		next.done <- true
	}
}

// takeGroup removes the next group from the queue: requests up to
// MaxBatch events (at least one request). qmu is held.
func (l *Log) takeGroup() []*request {
	n, events := 1, len(l.queue[0].events)
	for n < len(l.queue) && events+len(l.queue[n].events) <= l.cfg.MaxBatch {
		events += len(l.queue[n].events)
		n++
	}
	group := make([]*request, n)
	copy(group, l.queue[:n])
	rest := copy(l.queue, l.queue[n:])
	clear(l.queue[rest:])
	l.queue = l.queue[:rest]
	return group
}

// commitGroup commits the group in one transaction. When that fails for a
// reason that is not the database's, each request is retried alone, so one
// bad request cannot fail its neighbours. It returns the highest id
// stored, and an error when some request failed.
func (l *Log) commitGroup(group []*request) (event.ID, error) {
	last, err := l.commit(group)
	switch {
	case err == nil:
		return last, nil
	case len(group) == 1 || failureReason(err) != reasonOther:
		for _, r := range group {
			r.err = err
		}
		return 0, err
	}
	l.log.Warn("group commit failed; committing requests one by one", "requests", len(group), "err", err)
	var first error
	for _, r := range group {
		var id event.ID
		id, r.err = l.commit([]*request{r})
		last = max(last, id)
		if r.err != nil && (first == nil || failureReason(first) == reasonOther) {
			first = r.err
		}
	}
	return last, first
}

// The statements of a commit, sent together (see commitOn). The UPDATE
// of event_log takes the lock (waiting for the commit that holds it) and
// raises the head, keeping the head it replaced in prev. The event of
// ordinal n (from 1) in the group gets the id greatest(prev + n, gid):
// above the old head and every id before it in the group, and the
// generator's own (its time, its worker) whenever the old head is below
// it; the new head is that of the last event. The server splices the id
// into the body, as the client computes it from prev. Events with a dedup
// key go through ON CONFLICT; the others do not, which spares them
// PostgreSQL's speculative insertion.
const (
	sqlLockHead = `UPDATE event_log SET prev = head, head = greatest(head + $1, $2) RETURNING prev`
	insertHead  = `INSERT INTO events (id, project_id, key, time, dedup, body, content_id, people)
		SELECT v.id, u.project_id, u.key, u.time, u.dedup, overlay(u.body PLACING convert_to(v.id::text, 'UTF8') FROM u.split + 1 FOR 0), v.content_id, u.people
		FROM (SELECT prev FROM event_log) h,
			unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::bytea[], $7::bytea[], $8::int[], $9::bigint[], $10::bigint[], $11::int[])
				AS u(ord, gid, project_id, key, time, dedup, body, split, cord, cgid, people),
			LATERAL (SELECT greatest(h.prev + u.ord, u.gid) AS id,
				CASE WHEN u.cord > 0 THEN greatest(h.prev + u.cord, u.cgid) END AS content_id) v`
	sqlInsert = insertHead + `
		ORDER BY u.ord`
	sqlInsertDedup = insertHead + `
		ORDER BY u.ord
		ON CONFLICT (project_id, dedup) WHERE dedup IS NOT NULL DO NOTHING`
	// A raw request is kept when one of its events was stored (not a
	// duplicate); it takes the id of its first event in the group. (A
	// subquery with LIMIT, not EXISTS, which the planner may turn into a
	// scan of every kept request.)
	sqlInsertContents = `INSERT INTO event_contents (id, received_at, body)
		SELECT v.id, c.received_at, c.body
		FROM (SELECT prev FROM event_log) h,
			unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[]) AS c(ord, gid, received_at, body),
			LATERAL (SELECT greatest(h.prev + c.ord, c.gid) AS id) v
		WHERE (SELECT true FROM events e WHERE e.content_id = v.id AND e.content_id IS NOT NULL LIMIT 1)`
	// One probe of the unique index per key, whatever the planner thinks
	// of the array's size (a join, planned once for any size, scanned the
	// whole table).
	sqlLookup = `SELECT k.project_id, k.dedup,
			(SELECT e.id FROM events e WHERE e.project_id = k.project_id AND e.dedup = k.dedup AND e.dedup IS NOT NULL)
		FROM unnest($1::bigint[], $2::bytea[]) AS k(project_id, dedup)`
	sqlNotify = `SELECT pg_notify('` + Channel + `', $1)`
)

// rows are the columns of one INSERT of events.
type rows struct {
	ords, gids, projects, times, cOrds, cGids []int64
	keys                                      []string
	dedups, bodies                            [][]byte // bodies without their id
	splits, people                            []int32  // where the id goes in the body
}

func (r *rows) reset() {
	r.ords, r.gids, r.projects, r.times, r.cOrds, r.cGids = r.ords[:0], r.gids[:0], r.projects[:0], r.times[:0], r.cOrds[:0], r.cGids[:0]
	clear(r.keys)
	r.keys = r.keys[:0]
	clear(r.dedups)
	r.dedups = r.dedups[:0]
	clear(r.bodies)
	r.bodies = r.bodies[:0]
	r.splits, r.people = r.splits[:0], r.people[:0]
}

func (r *rows) args() []any {
	return []any{r.ords, r.gids, r.projects, r.keys, r.times, r.dedups, r.bodies, r.splits, r.cOrds, r.cGids, r.people}
}

// columns are the rows of one commit: those without a dedup key, those
// with one, and the raw requests.
type columns struct {
	plain, dedup rows
	gids         []int64 // per event of the group, the generator's id
	// Per raw request: its first event's ordinal and generator's id.
	contOrds, contGids, contReceived []int64
	contBodies                       [][]byte

	lookupProjects []int64
	lookupKeys     [][]byte
}

func (c *columns) reset() {
	c.plain.reset()
	c.dedup.reset()
	c.gids = c.gids[:0]
	c.contOrds, c.contGids, c.contReceived = c.contOrds[:0], c.contGids[:0], c.contReceived[:0]
	clear(c.contBodies)
	c.contBodies = c.contBodies[:0]
	c.lookupProjects = c.lookupProjects[:0]
	clear(c.lookupKeys)
	c.lookupKeys = c.lookupKeys[:0]
}

type dedupKey struct {
	project uint32
	key     string
}

// commit stores the batch in one transaction on the committing
// connection. When the connection turns out to be gone before the
// transaction got its lock (the server restarted, or failed over, since
// the last commit), nothing was stored: it connects again, once, and
// retries.
func (l *Log) commit(batch []*request) (event.ID, error) {
	l.wcMu.Lock()
	defer l.wcMu.Unlock()
	last, err := l.commitOn(batch)
	var early *beforeLock
	if !errors.As(err, &early) || failureReason(err) != reasonUnavailable {
		return last, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.CommitTimeout)
	defer cancel()
	if l.wc != nil {
		l.wc.Close(ctx)
		l.wc = nil
	}
	c, cerr := l.connect(ctx, "sluice event log commits")
	if cerr != nil {
		return 0, fmt.Errorf("%w (and again: %w)", err, cerr)
	}
	l.wc = c
	return l.commitOn(batch)
}

// beforeLock is an error of a commit before it held the lock on the
// head: nothing of it was stored.
type beforeLock struct{ err error }

func (e *beforeLock) Error() string { return "lock the log head: " + e.err.Error() }
func (e *beforeLock) Unwrap() error { return e.err }

// commitOn stores the batch in one transaction on l.wc (wcMu is held), in
// one round trip: BEGIN; the UPDATE of event_log, which takes the lock and
// returns the head it replaced; the events; the raw requests; the lookup
// of the group's dedup keys; the notification; COMMIT. The ids follow from
// the old head (see sqlLockHead); an event whose dedup key the lookup
// names with another id is a duplicate of that id. It returns the new
// head, the last id given.
func (l *Log) commitOn(batch []*request) (head event.ID, err error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.CommitTimeout)
	defer cancel()
	wc := l.wc
	if wc == nil || wc.IsClosed() {
		return 0, &beforeLock{errNoConnection}
	}
	c := &l.cols
	c.reset()
	var contents map[*event.Content]int // a raw request → its first event's index
	var seen map[dedupKey]bool
	for _, r := range batch {
		for i, e := range r.events {
			gid := int64(l.gen.Next())
			c.gids = append(c.gids, gid)
			ord := int64(len(c.gids))
			into := &c.plain
			var dedup []byte
			if e.DedupKey != "" {
				into = &c.dedup
				dedup = []byte(e.DedupKey)
				if seen == nil {
					seen = map[dedupKey]bool{}
				}
				if k := (dedupKey{e.ProjectID, e.DedupKey}); !seen[k] {
					seen[k] = true
					c.lookupProjects = append(c.lookupProjects, int64(e.ProjectID))
					c.lookupKeys = append(c.lookupKeys, dedup)
				}
			}
			var cord, cgid int64
			if e.Content != nil {
				if contents == nil {
					contents = map[*event.Content]int{}
				}
				first, ok := contents[e.Content]
				if !ok {
					first = int(ord) - 1
					contents[e.Content] = first
					c.contOrds = append(c.contOrds, ord)
					c.contGids = append(c.contGids, gid)
					c.contReceived = append(c.contReceived, e.Content.ReceivedAt)
					c.contBodies = append(c.contBodies, e.Content.Body)
				}
				cord, cgid = int64(first+1), c.gids[first]
			}
			enc := r.enc[i]
			into.ords = append(into.ords, ord)
			into.gids = append(into.gids, gid)
			into.projects = append(into.projects, int64(e.ProjectID))
			into.keys = append(into.keys, e.Key)
			into.times = append(into.times, e.Time)
			into.dedups = append(into.dedups, dedup)
			into.bodies = append(into.bodies, enc.Head()[:enc.Len()])
			into.splits = append(into.splits, int32(len(enc.Head())))
			into.cOrds = append(into.cOrds, cord)
			into.cGids = append(into.cGids, cgid)
			into.people = append(into.people, int32(len(e.Identities)))
		}
	}
	n := len(c.gids)

	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(sqlLockHead, n, c.gids[n-1])
	if len(c.plain.ords) > 0 {
		b.Queue(sqlInsert, c.plain.args()...)
	}
	if len(c.dedup.ords) > 0 {
		b.Queue(sqlInsertDedup, c.dedup.args()...)
	}
	if len(c.contOrds) > 0 {
		b.Queue(sqlInsertContents, c.contOrds, c.contGids, c.contReceived, c.contBodies)
	}
	if len(c.lookupKeys) > 0 {
		b.Queue(sqlLookup, c.lookupProjects, c.lookupKeys)
	}
	b.Queue("COMMIT")
	br := wc.SendBatch(ctx, b)
	var stored map[dedupKey]event.ID
	if len(c.lookupKeys) > 0 {
		stored = make(map[dedupKey]event.ID, len(c.lookupKeys))
	}
	var prev, inserted int64
	if _, err = br.Exec(); err != nil {
		err = &beforeLock{err}
	}
	if err == nil {
		err = br.QueryRow().Scan(&prev)
	}
	for _, rs := range []*rows{&c.plain, &c.dedup} {
		if err == nil && len(rs.ords) > 0 {
			var tag pgconn.CommandTag
			tag, err = br.Exec()
			inserted += tag.RowsAffected()
		}
	}
	if err == nil && len(c.contOrds) > 0 {
		_, err = br.Exec()
	}
	if err == nil && len(c.lookupKeys) > 0 {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			for rows.Next() {
				var project int64
				var id *int64
				var key []byte
				if err = rows.Scan(&project, &key, &id); err != nil {
					break
				}
				if id != nil {
					stored[dedupKey{uint32(project), string(key)}] = event.ID(*id)
				}
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
	}
	if err == nil {
		_, err = br.Exec() // COMMIT
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		if !wc.IsClosed() {
			rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _ = wc.Exec(rctx, "ROLLBACK")
			cancel()
		}
		var early *beforeLock
		if errors.As(err, &early) {
			return 0, err
		}
		return 0, fmt.Errorf("commit: %w", err)
	}

	// The ids, as the server gave them.
	ord := 0
	for _, r := range batch {
		r.res = make([]eventlog.Result, len(r.events))
		for i, e := range r.events {
			ord++
			id := event.ID(max(prev+int64(ord), c.gids[ord-1]))
			r.res[i] = eventlog.Result{ID: id}
			if e.DedupKey != "" {
				if orig := stored[dedupKey{e.ProjectID, e.DedupKey}]; orig != id {
					r.res[i] = eventlog.Result{ID: orig, Duplicate: true}
				}
			}
			head = id
		}
	}
	l.metrics.observeCommit(int(inserted), time.Since(start))
	return head, nil
}

var errNoConnection = errors.New("no connection to PostgreSQL")

// raiseHead moves the head up to id (never down) and tells the followers.
func (l *Log) raiseHead(id event.ID) {
	for {
		cur := l.head.Load()
		if uint64(id) <= cur {
			return
		}
		if l.head.CompareAndSwap(cur, uint64(id)) {
			l.chMu.Lock()
			close(l.changed)
			l.changed = make(chan struct{})
			l.chMu.Unlock()
			return
		}
	}
}

// Head implements eventlog.Log.
func (l *Log) Head() event.ID { return event.ID(l.head.Load()) }

// Changed implements eventlog.Log.
func (l *Log) Changed() <-chan struct{} {
	l.chMu.Lock()
	defer l.chMu.Unlock()
	return l.changed
}

// listener raises the head to the commits of every node, as PostgreSQL
// notifies them, until ctx ends. first receives the outcome of its first
// attempt: nil once it listens.
func (l *Log) listener(ctx context.Context, first chan<- error) {
	defer l.bg.Done()
	for ctx.Err() == nil {
		err := l.listen(ctx, func() {
			if first != nil {
				first <- nil
				first = nil
			}
		})
		if ctx.Err() != nil {
			return
		}
		if first != nil {
			first <- err
			return
		}
		l.log.Warn("listening for commits of other nodes; reconnecting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(l.cfg.RecoverEvery):
		}
	}
}

func (l *Log) listen(ctx context.Context, listening func()) error {
	c, err := pgx.ConnectConfig(ctx, l.connConfig("sluice event log notifications"))
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "LISTEN "+Channel); err != nil {
		return err
	}
	// What was committed before LISTEN took effect is in event_log.
	var head int64
	if err := c.QueryRow(ctx, "SELECT head FROM event_log").Scan(&head); err != nil {
		return err
	}
	l.raiseHead(event.ID(head))
	listening()
	for {
		n, err := c.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if id, err := strconv.ParseUint(n.Payload, 10, 64); err == nil {
			l.raiseHead(event.ID(id))
		}
	}
}

// again runs op, and once more when it failed for want of a connection:
// after a restart (or a failover) of the server, the pool hands out each
// connection the server ended once before it notices. Reads and deletes
// are safe to repeat.
func again[T any](ctx context.Context, op func() (T, error)) (T, error) {
	v, err := op()
	if err != nil && ctx.Err() == nil && failureReason(err) == reasonUnavailable {
		return op()
	}
	return v, err
}

// notifier announces this node's commits to the others: after a commit it
// NOTIFYs the head, at most once every NotifyEvery, so the commits do not
// wait for it and a busy node sends one notification for many commits (a
// notification in every commit cost half a millisecond of each here: the
// wake-ups of every listening session). Other nodes hear of a commit
// within NotifyEvery and a round trip. A notification that fails is sent
// again after RecoverEvery.
func (l *Log) notifier(ctx context.Context) {
	defer l.bg.Done()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wakeNotify:
		}
		if wait := l.cfg.NotifyEvery - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait): // and announce the head of then
			}
		}
		last = time.Now()
		for {
			_, err := l.pool.Exec(ctx, sqlNotify, l.Head().String())
			if err == nil || ctx.Err() != nil {
				break
			}
			l.log.Debug("announce a commit to the other nodes; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(l.cfg.RecoverEvery):
			}
		}
	}
}

// Read implements eventlog.Log.
func (l *Log) Read(ctx context.Context, q eventlog.Query) ([]eventlog.Record, error) {
	if err := q.Normalize(); err != nil {
		return nil, err
	}
	return again(ctx, func() ([]eventlog.Record, error) { return l.read(ctx, q) })
}

func (l *Log) read(ctx context.Context, q eventlog.Query) ([]eventlog.Record, error) {
	where, args := whereOf(q)
	stmt := "SELECT id, project_id, key, time, body, coalesce(content_id, 0) FROM events" + where
	if q.Newest {
		stmt += " ORDER BY id DESC"
	} else {
		stmt += " ORDER BY id"
	}
	args = append(args, q.Limit)
	stmt += " LIMIT $" + strconv.Itoa(len(args))
	rows, err := l.pool.Query(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	defer rows.Close()
	var out []eventlog.Record
	for rows.Next() {
		var r eventlog.Record
		var id, project int64
		if err := rows.Scan(&id, &project, &r.Key, &r.Time, &r.Body, &r.ContentID); err != nil {
			return nil, fmt.Errorf("read log: %w", err)
		}
		r.ID, r.ProjectID = event.ID(id), uint32(project)
		r.Body = event.SanitizeJSONText(r.Body)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	if q.Newest {
		slices.Reverse(out)
	}
	return out, nil
}

// whereOf is the WHERE clause of a normalized query and its arguments.
func whereOf(q eventlog.Query) (string, []any) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if len(q.Projects) > 0 {
		ps := make([]int64, len(q.Projects))
		for i, p := range q.Projects {
			ps[i] = int64(p)
		}
		where = append(where, "project_id = ANY("+arg(ps)+"::bigint[])")
	}
	if q.KeyGlob != "" {
		where = append(where, "key LIKE "+arg(likePattern(q.KeyGlob)))
	}
	if q.Since != 0 {
		where = append(where, "time >= "+arg(q.Since))
	}
	if q.Until != 0 {
		where = append(where, "time < "+arg(q.Until))
	}
	if q.After != 0 {
		where = append(where, "id > "+arg(int64(q.After)))
	}
	if q.WithIdentities {
		where = append(where, "people > 0")
	}
	if len(q.IDs) > 0 {
		ids := make([]int64, len(q.IDs))
		for i, id := range q.IDs {
			ids[i] = int64(id)
		}
		where = append(where, "id = ANY("+arg(ids)+"::bigint[])")
	}
	if len(where) == 0 {
		return "", args
	}
	return " WHERE " + strings.Join(where, " AND "), args
}

// likePattern translates a key glob (event.MatchGlob) into a LIKE pattern
// (backslash escapes).
func likePattern(glob string) string {
	var b strings.Builder
	for _, c := range glob {
		switch c {
		case '*':
			b.WriteByte('%')
		case '?':
			b.WriteByte('_')
		case '%', '_', '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// Count implements eventlog.Log.
func (l *Log) Count(ctx context.Context, q eventlog.Query) (int64, error) {
	q.Limit, q.Newest = 1, false
	if err := q.Normalize(); err != nil {
		return 0, err
	}
	where, args := whereOf(q)
	return again(ctx, func() (int64, error) {
		var n int64
		if err := l.pool.QueryRow(ctx, "SELECT count(*) FROM events"+where, args...).Scan(&n); err != nil {
			return 0, fmt.Errorf("count events: %w", err)
		}
		return n, nil
	})
}

// Contents implements eventlog.Log.
func (l *Log) Contents(ctx context.Context, ids []int64) (map[int64]event.Content, error) {
	return again(ctx, func() (map[int64]event.Content, error) { return l.contents(ctx, ids) })
}

func (l *Log) contents(ctx context.Context, ids []int64) (map[int64]event.Content, error) {
	out := make(map[int64]event.Content, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := l.pool.Query(ctx, "SELECT id, received_at, body FROM event_contents WHERE id = ANY($1::bigint[])", ids)
	if err != nil {
		return nil, fmt.Errorf("read contents: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var c event.Content
		if err := rows.Scan(&id, &c.ReceivedAt, &c.Body); err != nil {
			return nil, fmt.Errorf("read contents: %w", err)
		}
		out[id] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read contents: %w", err)
	}
	return out, nil
}

// deleteChunk bounds how many rows one retention transaction removes.
const deleteChunk = 5000

// DeleteBefore implements eventlog.Log. Ids carry their commit time, so
// "stored before t" is an id range on the primary key.
func (l *Log) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	return l.deleteChunks(ctx, `DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < $1 ORDER BY id LIMIT $2)`, int64(event.FirstIDAt(t)))
}

// DeleteContentsBefore implements eventlog.Log.
func (l *Log) DeleteContentsBefore(ctx context.Context, t time.Time) (int64, error) {
	return l.deleteChunks(ctx, `DELETE FROM event_contents WHERE id IN (SELECT id FROM event_contents WHERE received_at < $1 ORDER BY received_at LIMIT $2)`, t.UnixMilli())
}

// deleteChunks runs a DELETE of at most deleteChunk rows below bound
// until it deletes fewer, one transaction each.
func (l *Log) deleteChunks(ctx context.Context, stmt string, bound int64) (int64, error) {
	var total int64
	for {
		tag, err := again(ctx, func() (pgconn.CommandTag, error) { return l.pool.Exec(ctx, stmt, bound, deleteChunk) })
		if err != nil {
			return total, fmt.Errorf("delete expired rows: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < deleteChunk {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// Erase implements eventlog.Log: the events, then the raw requests no
// remaining event refers to, a chunk per transaction.
func (l *Log) Erase(ctx context.Context, projectID uint32, ids []event.ID) (int64, error) {
	var total int64
	for len(ids) > 0 {
		n := min(len(ids), 500)
		chunk := make([]int64, n)
		for i, id := range ids[:n] {
			chunk[i] = int64(id)
		}
		ids = ids[n:]
		erased, err := again(ctx, func() (int64, error) { return l.eraseChunk(ctx, projectID, chunk) })
		total += erased
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// eraseChunk erases one chunk in one transaction and says how many events
// it deleted.
func (l *Log) eraseChunk(ctx context.Context, projectID uint32, chunk []int64) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM event_contents c WHERE c.id IN (
				SELECT content_id FROM events WHERE project_id = $1 AND id = ANY($2::bigint[]) AND content_id IS NOT NULL)
			AND NOT EXISTS (SELECT 1 FROM events e WHERE e.content_id = c.id AND NOT (e.id = ANY($2::bigint[])))`, int64(projectID), chunk); err != nil {
			return fmt.Errorf("erase raw requests: %w", err)
		}
		tag, err := tx.Exec(ctx, `DELETE FROM events WHERE project_id = $1 AND id = ANY($2::bigint[])`, int64(projectID), chunk)
		if err != nil {
			return fmt.Errorf("erase events: %w", err)
		}
		n = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Health implements eventlog.Log: nil while appends are taken, else the
// error that they fail with (errors.Is eventlog.ErrUnavailable).
func (l *Log) Health() error {
	l.qmu.Lock()
	defer l.qmu.Unlock()
	if l.down == nil {
		return nil
	}
	return l.down
}

// goDown makes the log refuse appends because of err (unless it already
// does) and tells recoverer. It returns the error appends fail with.
func (l *Log) goDown(err error) *unavailable {
	l.qmu.Lock()
	down, was := l.down, l.down != nil
	if !was {
		down = &unavailable{reason: failureReason(err), since: time.Now(), cause: err}
		l.down = down
	}
	queued := len(l.queue)
	l.qmu.Unlock()
	if !was {
		l.log.Error("event log unavailable: appends refused until PostgreSQL takes a probe write", "err", err, "refused_queued", queued)
		select {
		case l.wakeRec <- struct{}{}:
		default:
		}
	}
	return down
}

// recoverer brings the log back after it went down: at once, then every
// RecoverEvery until a probe write commits.
func (l *Log) recoverer(ctx context.Context) {
	defer l.bg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wakeRec:
		}
		for attempt := 1; ; attempt++ {
			err := l.tryRecover(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				l.qmu.Lock()
				since := l.down.since
				l.down = nil
				l.qmu.Unlock()
				l.log.Info("event log recovered: appends resume", "unavailable_for", time.Since(since).Round(time.Millisecond).String(), "attempts", attempt)
				break
			}
			l.log.Debug("event log still unavailable", "err", err, "attempt", attempt)
			select {
			case <-ctx.Done():
				return
			case <-time.After(l.cfg.RecoverEvery):
			}
		}
	}
}

// tryRecover reconnects the committer when its connection is gone and
// commits a probe write (the head, unchanged, under its lock).
func (l *Log) tryRecover(ctx context.Context) error {
	l.wcMu.Lock()
	defer l.wcMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if l.wc == nil || l.wc.IsClosed() {
		if l.wc != nil {
			l.wc.Close(ctx)
			l.wc = nil
		}
		c, err := l.connect(ctx, "sluice event log commits")
		if err != nil {
			return err
		}
		l.wc = c
	}
	err := pgx.BeginFunc(ctx, l.wc, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE event_log SET head = head")
		return err
	})
	if err != nil {
		return fmt.Errorf("probe write: %w", err)
	}
	return nil
}

// Reasons of failed appends (the metric's label values).
const (
	reasonUnavailable = "unavailable"
	reasonDiskFull    = "disk_full"
	reasonIO          = "io"
	reasonClosed      = "closed"
	reasonOther       = "other"
)

// failureReason classifies an error of a commit or an append.
func failureReason(err error) string {
	var pe *pgconn.PgError
	var ne net.Error
	var ce *pgconn.ConnectError
	var un *unavailable
	switch {
	case errors.As(err, &un):
		return un.reason
	case errors.Is(err, eventlog.ErrClosed):
		return reasonClosed
	case errors.As(err, &pe):
		switch {
		case pe.Code == "53100": // disk_full
			return reasonDiskFull
		case strings.HasPrefix(pe.Code, "58"): // system_error, io_error
			return reasonIO
		case strings.HasPrefix(pe.Code, "08"), // connection_exception
			strings.HasPrefix(pe.Code, "57P"), // admin_shutdown, crash_shutdown, cannot_connect_now
			strings.HasPrefix(pe.Code, "53"),  // out of memory, too many connections
			pe.Code == "25006":                // read_only_sql_transaction: a standby
			return reasonUnavailable
		}
	case errors.Is(err, errNoConnection), errors.As(err, &ce), errors.As(err, &ne), pgconn.SafeToRetry(err), pgconn.Timeout(err),
		errors.Is(err, net.ErrClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, context.DeadlineExceeded):
		return reasonUnavailable
	}
	return reasonOther
}

// unavailable is the error of appends (and of Health) while the log is
// down.
type unavailable struct {
	reason string
	since  time.Time
	cause  error // the failed commit's
}

func (u *unavailable) Error() string {
	what := "PostgreSQL unavailable"
	switch u.reason {
	case reasonDiskFull:
		what = "PostgreSQL's disk is full"
	case reasonIO:
		what = "PostgreSQL reports an I/O error"
	}
	return fmt.Sprintf("event log: %s; appends refused since %s (%v)", what, u.since.UTC().Format(time.RFC3339), u.cause)
}

func (u *unavailable) Is(target error) bool { return target == eventlog.ErrUnavailable }
func (u *unavailable) Unwrap() error        { return u.cause }

// Close stops accepting appends, waits for the commit in progress and
// closes the connections.
func (l *Log) Close() error {
	l.qmu.Lock()
	if l.closed {
		l.qmu.Unlock()
		return nil
	}
	l.closed = true
	for l.leading {
		l.idle.Wait()
	}
	l.qmu.Unlock()
	l.stop()
	l.bg.Wait()
	l.wcMu.Lock()
	if l.wc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l.wc.Close(ctx)
		cancel()
		l.wc = nil
	}
	l.wcMu.Unlock()
	l.pool.Close()
	return nil
}

var _ eventlog.Loader = (*Log)(nil)

// Load implements eventlog.Loader (sluice migrate --from): it stores the
// events and raw requests with their ids, in one transaction under the
// lock of the head, and raises the head to the highest id. The events
// must come in id order above the head (into an empty log, page after
// page): an event stored below the head could be missed by a follower.
func (l *Log) Load(ctx context.Context, events []eventlog.StoredEvent, contents []eventlog.StoredContent) error {
	if len(events) == 0 && len(contents) == 0 {
		return nil
	}
	var ids, projects, times, contentIDs []int64
	var keys []string
	var dedups, bodies [][]byte
	var people []int32
	var top int64
	for i, e := range events {
		if i > 0 && e.ID <= events[i-1].ID {
			return fmt.Errorf("load events: id %s after %s: not in id order", e.ID, events[i-1].ID)
		}
		var dedup []byte
		if e.DedupKey != "" {
			dedup = []byte(e.DedupKey)
		}
		ids = append(ids, int64(e.ID))
		projects = append(projects, int64(e.ProjectID))
		keys = append(keys, e.Key)
		times = append(times, e.Time)
		dedups = append(dedups, dedup)
		bodies = append(bodies, e.Body)
		contentIDs = append(contentIDs, e.ContentID)
		people = append(people, int32(e.People))
		top = int64(e.ID)
	}
	var cIDs, cReceived []int64
	var cBodies [][]byte
	for _, c := range contents {
		cIDs = append(cIDs, c.ID)
		cReceived = append(cReceived, c.ReceivedAt)
		cBodies = append(cBodies, c.Body)
	}
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var prev int64
		if err := tx.QueryRow(ctx, `UPDATE event_log SET prev = head, head = greatest(head, $1) RETURNING prev`, top).Scan(&prev); err != nil {
			return fmt.Errorf("lock the log head: %w", err)
		}
		if len(ids) > 0 && ids[0] <= prev {
			return fmt.Errorf("load events: id %d is not above the log's head %d: load into an empty log, in id order", ids[0], prev)
		}
		if len(ids) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO events (id, project_id, key, time, dedup, body, content_id, people)
				SELECT id, project_id, key, time, dedup, body, nullif(content_id, 0), people
				FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bytea[], $6::bytea[], $7::bigint[], $8::int[])
					AS u(id, project_id, key, time, dedup, body, content_id, people)`,
				ids, projects, keys, times, dedups, bodies, contentIDs, people); err != nil {
				return fmt.Errorf("load events: %w", err)
			}
		}
		if len(cIDs) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO event_contents (id, received_at, body) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])`,
				cIDs, cReceived, cBodies); err != nil {
				return fmt.Errorf("load raw requests: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if top > 0 {
		l.raiseHead(event.ID(top))
		select {
		case l.wakeNotify <- struct{}{}:
		default:
		}
	}
	return nil
}
