// Package sqlite is the embedded, default event log: one SQLite database in
// WAL mode, group commit, and the WAL fsynced after every commit before
// anyone hears of it.
//
// The log mints its ids (flake ids of Config.Worker) when it commits: the
// transaction that takes SQLite's write lock reads the largest stored id
// and every id it gives is above it (the generator's id, or the one after
// the stored one when that is higher), so ids grow in commit order even
// across several handles on one file (a server holds its data dir alone;
// tests and tools open a second handle). A handle hears of its own commits
// at once and of another handle's within WatchEvery, through SQLite's
// data_version; Head, and what Read returns, never pass what the handle
// has heard of.
//
// Group commit without a writer goroutine: the first Append that finds no
// commit in progress becomes the leader. It takes every request waiting
// (its own first), commits them in one transaction, answers the others
// and, if more requests arrived meanwhile, hands the leadership to the
// oldest of them. Requests that arrive during a commit wait and join the
// next group, so the group grows with the load and one fsync covers all of
// it. No event is answered, or visible to readers, before its group's
// commit returned and the WAL was synced.
//
// Pipelined fsync: the committing connection runs with synchronous=NORMAL
// (SQLite writes a commit's WAL frames without syncing them) and the
// leader syncs the WAL itself (walSyncer) after it has passed the write
// lock to the next group: the next group's inserts and commit overlap
// this group's fsync, and syncs that overlap are grouped too. Until its
// sync returned a group is neither answered nor under the head, and
// readers read only up to the head. A failed sync takes the log down like
// a failed commit.
//
// The WAL is bounded by its length, not by a clock. A commit that leaves
// walCheckpointFrames frames (4 MiB of pages) or more in the WAL
// checkpoints it before the leader answers (SQLite's wal_autocheckpoint),
// and the next commit starts the WAL over from its beginning unless a
// reader still reads an older snapshot. Under a steady load some reader
// nearly always does, so once the WAL file passes walFileLimit (8 MiB)
// the leader, between two commits, runs a checkpoint that waits up to
// 50 ms for those readers (boundWAL); the file is cut back to walFileLimit
// when the WAL starts over. So the WAL stays under walFileLimit plus one
// commit (MaxBatch events), except while one read lasts longer than that
// wait (a count over millions of events, say): it then grows by what is
// committed until the read ends, and appends slow down by a fifth at most
// meanwhile. Measured in BenchmarkAppendWAL and TestWALStaysBounded.
// A background connection also checkpoints every CheckpointEvery, so an
// idle log's WAL is copied into the database file without a commit.
//
// A commit that fails for lack of space or with an I/O error stores
// nothing and makes the log unavailable: from then on every append fails
// at once with eventlog.ErrUnavailable (Health says why and since when)
// while reads go on, and a background loop checkpoints the whole WAL into
// the database, truncates it (which frees its space), checks that
// recoverHeadroom (8 MiB) is free and commits a probe write, every
// RecoverEvery, until all succeed; then appends resume. New appends thus
// never take the space the checkpoint needs, and a log on a disk that is
// still full does not flap between up and down. Open runs the
// same probe, so a log opened on a full disk serves reads and refuses
// appends until space returns. A failed checkpoint at Close loses
// nothing: the WAL is durable and the next Open replays it.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	sqlite3 "github.com/mattn/go-sqlite3" // also registers the "sqlite3" driver
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/sqlitefile"
)

var _ eventlog.Log = (*Log)(nil)

// Config configures the SQLite log.
type Config struct {
	// Path of the database file; its directory must exist.
	Path string
	// MaxBatch caps the events in one commit (default 4096).
	MaxBatch int
	// Readers is the number of read connections (default 4).
	Readers int
	// CheckpointEvery is how often a background connection copies the WAL
	// into the database (default 1s), off the commit path.
	CheckpointEvery time.Duration
	// RecoverEvery is how often an unavailable log retries its recovery
	// (default 500ms).
	RecoverEvery time.Duration
	// Worker is the worker id of the log's flake ids (0..1023).
	Worker int
	// Now is the clock of the ids (nil: time.Now). Ids stay above the
	// stored ones whatever it says.
	Now func() time.Time
	// WatchEvery is how often the log looks for commits of other handles
	// on the same file (default 100ms: a server holds its data directory
	// alone, so they are tools' and tests'; each look is a query, which an
	// idle server should not run 50 times a second).
	WatchEvery time.Duration
}

func (c *Config) defaults() {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 4096
	}
	if c.Readers <= 0 {
		c.Readers = 4
	}
	if c.CheckpointEvery <= 0 {
		c.CheckpointEvery = time.Second
	}
	if c.RecoverEvery <= 0 {
		c.RecoverEvery = 500 * time.Millisecond
	}
	if c.WatchEvery <= 0 {
		c.WatchEvery = 100 * time.Millisecond
	}
}

// Log is the SQLite event log.
type Log struct {
	cfg     Config
	gen     *event.Generator
	log     *slog.Logger
	metrics *metrics

	// The committing connection is used through the driver directly: a
	// database/sql transaction costs a goroutine and a statement
	// re-preparation, which the commit path cannot afford.
	wc            *sqlite3.SQLiteConn
	insert        *sqlite3.SQLiteStmt
	insertContent *sqlite3.SQLiteStmt
	dupOf         *sqlite3.SQLiteStmt
	maxID         *sqlite3.SQLiteStmt
	args          [8]driver.NamedValue // the insert's arguments, reused
	rdb           *sql.DB              // readers
	// reads are the prepared statements of the readers' usual queries,
	// by their text (at most maxPreparedReads): a follower reads the same
	// query after every commit, and preparing it cost as much as reading
	// a few events.
	readsMu sync.Mutex
	reads   map[string]*sql.Stmt
	cdb     *sql.DB // checkpointer
	wal     *walSyncer

	// committed is the highest id this handle committed (synced or not):
	// the watcher leaves those to the leaders that sync them.
	committed atomic.Uint64

	qmu     sync.Mutex
	idle    *sync.Cond // signalled when the last leader steps down or the last sync ends
	queue   []*request // waiting for a leader, oldest first
	leading bool       // a leader is committing
	syncing int        // former leaders syncing their groups
	closed  bool
	// down is why appends are refused, nil while they are taken: set by
	// a commit that failed for lack of space or an I/O error, cleared by
	// recoverer once a checkpoint and a probe write succeeded.
	down *unavailable

	stopCkp context.CancelFunc
	ckpDone chan struct{}
	stopRec context.CancelFunc
	recDone chan struct{}
	stopWat context.CancelFunc
	watDone chan struct{}
	// The watcher's own connection, whose data_version tells it of other
	// handles' commits.
	watch       *sqlite3.SQLiteConn
	dataVersion int64
	wakeRec     chan struct{} // tells recoverer that the log went down

	head atomic.Uint64 // the highest durable id
	// peopleHead is the highest durable id of an event with identities
	// (or above: another handle's commits raise it to their head), raised
	// before head: a read of events with identities after it finds none
	// and need not ask SQLite (the profile consumer's read after each
	// commit of events without identities).
	peopleHead atomic.Uint64
	chMu       sync.Mutex
	changed    chan struct{}
	// peopleChanged is closed after a commit of events with identities
	// (PeopleChanged), once the head includes them.
	peopleChanged chan struct{}
	// tail holds the latest events with identities in memory for the
	// profile consumer (PeopleAfter).
	tail tail

	// The leader's own (one leader at a time): its scratch buffer, the
	// highest id with identities of its group, and the WAL file's last
	// stat and restart.
	body       []byte
	people     event.ID
	walPath    string
	walStat    syscall.Stat_t
	walRetryAt time.Time // no restart attempt before (boundWAL)
}

// request is one Append (or maintenance job) waiting to be committed.
type request struct {
	enc    []event.Encoded
	meta   []*event.Event
	res    []eventlog.Result
	err    error
	job    func(c *sqlite3.SQLiteConn) error // maintenance work instead of events
	nEvent int
	// done receives false when the request is committed (or failed), and
	// true when its goroutine must take over as leader.
	done chan bool
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan bool, 1)} }}

// bufPool holds encode buffers for the request goroutines.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

const schema = `
CREATE TABLE IF NOT EXISTS events (
	id         INTEGER PRIMARY KEY, -- flake id, assigned at commit: grows in commit order
	project_id INTEGER NOT NULL,
	key        TEXT    NOT NULL,
	time       INTEGER NOT NULL,    -- event time, Unix ms
	dedup      TEXT,                -- NULL when the event has no dedup key
	body       TEXT    NOT NULL,    -- the canonical JSON event
	content_id INTEGER,             -- contents.id of its raw request, when kept
	people     INTEGER NOT NULL DEFAULT 0 -- how many identities it carries
);
-- Raw requests kept for hooks with include_content, deleted after the
-- content retention. The id is that of the first event stored from it.
CREATE TABLE IF NOT EXISTS contents (
	id          INTEGER PRIMARY KEY,
	received_at INTEGER NOT NULL,   -- Unix ms
	body        BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS contents_received ON contents(received_at);
CREATE INDEX IF NOT EXISTS events_project_time ON events(project_id, time);
CREATE UNIQUE INDEX IF NOT EXISTS events_dedup ON events(project_id, dedup) WHERE dedup IS NOT NULL;
-- The events that name a person, for the profile consumer: it walks
-- this index and never reads an event without identities.
CREATE INDEX IF NOT EXISTS events_people ON events(id) WHERE people > 0;
`

// schemaVersion 2 added contents and events.content_id; 3 added
// events.people.
const schemaVersion = 3

func dsn(path string, extra url.Values) string {
	v := url.Values{}
	v.Set("_journal_mode", "WAL")
	// FULL: every commit fsyncs the WAL before it returns. The committing
	// connection overrides it with NORMAL and syncs the WAL itself.
	v.Set("_synchronous", "FULL")
	v.Set("_busy_timeout", "10000")
	for k, vs := range extra {
		v[k] = vs
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + v.Encode()
}

// Open opens (creating when absent) the log at cfg.Path. reg may be nil.
//
// On a full disk (or with an I/O error) a log that exists opens
// unavailable: it serves reads and refuses appends until it recovers.
func Open(cfg Config, reg prometheus.Registerer, logger *slog.Logger) (*Log, error) {
	cfg.defaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	gen, err := event.NewGenerator(cfg.Worker, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", cfg.Path, err)
	}
	l := &Log{
		cfg:     cfg,
		gen:     gen,
		log:     logger,
		walPath: cfg.Path + "-wal",
		wal:     newWALSyncer(cfg.Path + "-wal"),
		ckpDone: make(chan struct{}),
		recDone: make(chan struct{}),
		watDone: make(chan struct{}),
		wakeRec: make(chan struct{}, 1),
		changed: make(chan struct{}),

		peopleChanged: make(chan struct{}),
	}
	l.idle = sync.NewCond(&l.qmu)
	dc, err := (&sqlite3.SQLiteDriver{}).Open(dsn(cfg.Path, url.Values{"_synchronous": {"NORMAL"}}))
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", cfg.Path, err)
	}
	l.wc = dc.(*sqlite3.SQLiteConn)
	if err := l.init(); err != nil {
		l.wc.Close()
		return nil, err
	}
	l.rdb = sqlitefile.Open(dsn(cfg.Path, url.Values{"_query_only": {"1"}}), walFileLimit)
	l.rdb.SetMaxOpenConns(cfg.Readers)
	l.rdb.SetMaxIdleConns(cfg.Readers)
	l.cdb = sqlitefile.Open(dsn(cfg.Path, nil), walFileLimit)
	l.cdb.SetMaxOpenConns(1)
	wc, err := (&sqlite3.SQLiteDriver{}).Open(dsn(cfg.Path, url.Values{"_query_only": {"1"}}))
	if err != nil {
		l.cdb.Close()
		l.rdb.Close()
		l.wc.Close()
		return nil, fmt.Errorf("open log %s: %w", cfg.Path, err)
	}
	l.watch = wc.(*sqlite3.SQLiteConn)
	l.metrics = newMetrics(reg)
	l.wal.observe = func(d time.Duration) { l.metrics.sync.Observe(d.Seconds()) }

	// The probe of recovery, once: it also empties a WAL that a crash or
	// a failed final checkpoint left behind.
	if err := l.tryRecover(context.Background()); err != nil {
		if failureReason(err) == reasonOther {
			l.watch.Close()
			l.cdb.Close()
			l.rdb.Close()
			l.wc.Close()
			return nil, fmt.Errorf("open log %s: %w", cfg.Path, err)
		}
		l.down = newUnavailable(err)
		l.log.Error("event log opened unavailable: reads are served, appends refused until space returns", "err", err)
		l.wakeRec <- struct{}{}
	}

	ctx, cancel := context.WithCancel(context.Background())
	l.stopCkp = cancel
	go l.checkpointer(ctx)
	ctx, cancel = context.WithCancel(context.Background())
	l.stopRec = cancel
	go l.recoverer(ctx)
	ctx, cancel = context.WithCancel(context.Background())
	l.stopWat = cancel
	go l.watcher(ctx)
	return l, nil
}

// init checks the settings, creates the schema, seeds the id generator and
// opens the WAL for syncing.
func (l *Log) init() error {
	mode, err := l.queryOne("PRAGMA journal_mode")
	if err != nil {
		return fmt.Errorf("open log %s: %w", l.cfg.Path, err)
	}
	if m, _ := mode.(string); !strings.EqualFold(m, "wal") {
		return fmt.Errorf("open log %s: journal_mode is %v, want wal", l.cfg.Path, mode)
	}
	sync, err := l.queryOne("PRAGMA synchronous")
	if err != nil {
		return fmt.Errorf("open log %s: %w", l.cfg.Path, err)
	}
	if sync != int64(1) { // NORMAL: the leaders sync the WAL (walSyncer)
		return fmt.Errorf("open log %s: synchronous is %v, want 1 (NORMAL)", l.cfg.Path, sync)
	}
	// A commit that leaves walCheckpointFrames or more in the WAL
	// checkpoints it (PASSIVE, in the committing connection, before the
	// leader answers): the WAL's length, not a clock, decides, so no write
	// rate outruns it. See the package comment.
	// The page cache stays at SQLite's default (2 MiB): a large one made
	// every commit slower (the pager walks it when a transaction ends).
	if _, err := l.wc.Exec(fmt.Sprintf("PRAGMA wal_autocheckpoint=%d", walCheckpointFrames), nil); err != nil {
		return fmt.Errorf("open log %s: %w", l.cfg.Path, err)
	}
	if err := sqlitefile.Keep(l.wc, walFileLimit); err != nil {
		return fmt.Errorf("open log %s: %w", l.cfg.Path, err)
	}
	version, err := l.queryOne("PRAGMA user_version")
	if err != nil {
		return fmt.Errorf("open log %s: %w", l.cfg.Path, err)
	}
	if v, _ := version.(int64); v > schemaVersion {
		return fmt.Errorf("open log %s: schema version %d is newer than this binary's %d", l.cfg.Path, v, schemaVersion)
	}
	if v, _ := version.(int64); v == 1 {
		if _, err := l.wc.Exec("ALTER TABLE events ADD COLUMN content_id INTEGER", nil); err != nil {
			return fmt.Errorf("upgrade log schema to 2: %w", err)
		}
	}
	if v, _ := version.(int64); v == 1 || v == 2 {
		// One pass over the log at the upgrade: each event's identities
		// are counted from its stored JSON.
		if _, err := l.wc.Exec(`ALTER TABLE events ADD COLUMN people INTEGER NOT NULL DEFAULT 0;
			UPDATE events SET people = json_array_length(body, '$.identities') WHERE json_type(body, '$.identities') = 'array'`, nil); err != nil {
			return fmt.Errorf("upgrade log schema to 3: %w", err)
		}
	}
	// Nothing here writes to a log that is up to date, so that it opens
	// on a full disk.
	if _, err := l.wc.Exec(schema, nil); err != nil {
		return fmt.Errorf("create log schema: %w", err)
	}
	if v, _ := version.(int64); v != schemaVersion {
		if _, err := l.wc.Exec(fmt.Sprintf("PRAGMA user_version=%d", schemaVersion), nil); err != nil {
			return fmt.Errorf("set log schema version: %w", err)
		}
	}
	maxID, err := l.queryOne("SELECT max(id) FROM events")
	if err != nil {
		return fmt.Errorf("read log head: %w", err)
	}
	if id, ok := maxID.(int64); ok {
		l.head.Store(uint64(id))
		l.peopleHead.Store(uint64(id))
		l.committed.Store(uint64(id))
		l.tail.reset(event.ID(id))
		l.gen.Observe(event.ID(id))
	}
	st, err := l.wc.Prepare(`INSERT INTO events(id, project_id, key, time, dedup, body, content_id, people) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (project_id, dedup) WHERE dedup IS NOT NULL DO NOTHING`)
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	l.insert = st.(*sqlite3.SQLiteStmt)
	if st, err = l.wc.Prepare(`INSERT INTO contents(id, received_at, body) VALUES (?, ?, ?)`); err != nil {
		return fmt.Errorf("prepare content insert: %w", err)
	}
	l.insertContent = st.(*sqlite3.SQLiteStmt)
	if st, err = l.wc.Prepare(`SELECT id FROM events WHERE project_id = ? AND dedup = ?`); err != nil {
		return fmt.Errorf("prepare dedup lookup: %w", err)
	}
	l.dupOf = st.(*sqlite3.SQLiteStmt)
	if st, err = l.wc.Prepare(`SELECT max(id) FROM events`); err != nil {
		return fmt.Errorf("prepare head lookup: %w", err)
	}
	l.maxID = st.(*sqlite3.SQLiteStmt)
	for i := range l.args {
		l.args[i].Ordinal = i + 1
	}
	return nil
}

// queryOne returns the first column of the first row of query, on the
// committing connection (nil when there is no row).
func (l *Log) queryOne(query string, args ...driver.NamedValue) (driver.Value, error) {
	rows, err := l.wc.QueryContext(context.Background(), query, args)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	dest := make([]driver.Value, len(rows.Columns()))
	if err := rows.Next(dest); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	return dest[0], nil
}

// Append implements eventlog.Log. Each event's Data must be a compact JSON
// object, as every decoder produces (and its fuzz target checks); the log
// checks the framing only, to keep the hot path cheap.
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
	r.meta = events
	r.nEvent = len(events)
	// Encode on the caller's goroutine; the leader only splices in ids.
	var one [1]*[]byte
	bufs := one[:0]
	if len(events) > 1 {
		bufs = make([]*[]byte, 0, len(events))
	}
	r.enc = r.enc[:0]
	for _, e := range events {
		b := bufPool.Get().(*[]byte)
		bufs = append(bufs, b)
		r.enc = append(r.enc, e.Encode(*b))
	}
	err := l.submit(ctx, r)
	var res []eventlog.Result
	if err == nil {
		res, err = r.res, r.err
	}
	if err != nil {
		l.metrics.appendFailed(failureReason(err))
	}
	for i, enc := range r.enc {
		*bufs[i] = enc.Head()[:0]
		bufPool.Put(bufs[i])
	}
	if err == nil {
		for i, e := range events {
			e.ID = res[i].ID
		}
	}
	r.meta, r.res, r.err, r.enc = nil, nil, nil, r.enc[:0]
	requestPool.Put(r)
	return res, err
}

// submit queues r and returns once r is committed and durable (or failed):
// either as the leader that committed it, or woken by one.
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
// goroutine runs this. Then it keeps the WAL bounded and passes the
// leadership on (or steps down when nobody waits), syncs the WAL while
// the next leader commits, and only then raises the head and wakes the
// group. A commit or a sync that failed for lack of space or with an I/O
// error takes the log down: the requests still queued fail with it too,
// and recoverer is told.
func (l *Log) lead() {
	l.wal.waitRoom()
	l.qmu.Lock()
	group := l.takeGroup()
	l.qmu.Unlock()

	start := time.Now()
	l.people = 0
	head, err := l.commitGroup(group)
	people := l.people
	if err == nil {
		l.boundWAL()
	}
	if head != 0 {
		l.committed.Store(uint64(head))
	}
	if err != nil && failureReason(err) != reasonOther {
		l.takeDown(group, err)
	}
	l.handOff()

	// Sync what the group committed; the next group commits meanwhile.
	var serr error
	for _, r := range group {
		if r.err == nil {
			serr = l.wal.Sync()
			break
		}
	}
	if serr != nil {
		for _, r := range group {
			if r.err == nil {
				r.err = serr
			}
		}
		l.takeDown(group, serr)
	} else if head != 0 {
		l.metrics.latency.Observe(time.Since(start).Seconds())
		l.raiseHeads(head, people)
	}
	// group[0] is the leader's own request: it returns without a signal.
	for _, r := range group[1:] {
		r.done <- false
	}
	l.qmu.Lock()
	l.syncing--
	if !l.leading && l.syncing == 0 {
		l.idle.Broadcast()
	}
	l.qmu.Unlock()
}

// handOff passes the leadership to the oldest waiting request, or steps
// down; a log that is down refuses the queue instead. The caller goes on
// to sync its group (syncing counts it until it is done).
func (l *Log) handOff() {
	l.qmu.Lock()
	l.syncing++
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

// takeDown makes the log refuse appends because of err, and makes every
// request of group that failed for lack of space or an I/O error fail with
// the log's error: every append that fails while the log is down says so,
// the ones of the failed commit included.
func (l *Log) takeDown(group []*request, err error) {
	down := l.goDown(err)
	for _, r := range group {
		if r.err != nil && failureReason(r.err) != reasonOther {
			r.err = down
		}
	}
}

// goDown makes the log refuse appends because of err (unless it already
// does) and tells recoverer. It returns the error appends fail with.
func (l *Log) goDown(err error) *unavailable {
	l.qmu.Lock()
	down, was := l.down, l.down != nil
	if !was {
		down = newUnavailable(err)
		l.down = down
	}
	queued := len(l.queue)
	l.qmu.Unlock()
	if !was {
		l.log.Error("event log unavailable: appends refused until a checkpoint and a probe write succeed", "err", err, "refused_queued", queued)
		select {
		case l.wakeRec <- struct{}{}:
		default:
		}
	}
	return down
}

// boundWAL restarts a WAL that grew past walFileLimit because readers
// kept it from starting over (a WAL starts over at a commit only while no
// reader reads an older snapshot than the last checkpoint, and under a
// steady load some reader nearly always does). A RESTART checkpoint waits
// up to walRestartWait for those readers to finish, while readers that
// begin meanwhile read the database file, so the next commit writes from
// the WAL's beginning (and cuts the file back to walFileLimit). The
// leader runs it between two commits; after an attempt that a longer read
// defeated, the next one waits walRestartEvery, so such a read slows
// appends by a fifth at most.
func (l *Log) boundWAL() {
	if err := syscall.Stat(l.walPath, &l.walStat); err != nil || l.walStat.Size <= walFileLimit || time.Now().Before(l.walRetryAt) {
		return
	}
	if _, err := l.wc.Exec(fmt.Sprintf("PRAGMA busy_timeout=%d", walRestartWait.Milliseconds()), nil); err != nil {
		l.log.Warn("wal restart", "err", err)
		return
	}
	busy, err := l.queryOne("PRAGMA wal_checkpoint(RESTART)")
	if _, err := l.wc.Exec("PRAGMA busy_timeout=10000", nil); err != nil {
		l.log.Warn("wal restart", "err", err)
	}
	if b, _ := busy.(int64); err == nil && b == 0 {
		l.metrics.walRestarts.Inc()
		return
	}
	l.walRetryAt = time.Now().Add(walRestartEvery)
	if err != nil && l.Health() == nil {
		l.log.Debug("wal restart", "err", err)
	}
}

// takeGroup removes the next group from the queue: a maintenance job
// alone, or requests up to MaxBatch events. qmu is held.
func (l *Log) takeGroup() []*request {
	n, events := 1, l.queue[0].nEvent
	if l.queue[0].job == nil {
		for n < len(l.queue) && l.queue[n].job == nil && events+l.queue[n].nEvent <= l.cfg.MaxBatch {
			events += l.queue[n].nEvent
			n++
		}
	}
	group := make([]*request, n)
	copy(group, l.queue[:n])
	rest := copy(l.queue, l.queue[n:])
	clear(l.queue[rest:])
	l.queue = l.queue[:rest]
	return group
}

// commitGroup commits the group in one transaction. When that fails, each
// request is retried alone, so one bad request cannot fail its neighbours;
// not when the disk is full or failing, which no request is to blame for.
// It returns the highest id stored, and an error when some request
// failed (the one that takes the log down, if any).
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

func (l *Log) commit(batch []*request) (last event.ID, err error) {
	if _, err := l.wc.Exec("BEGIN IMMEDIATE", nil); err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_, _ = l.wc.Exec("ROLLBACK", nil)
		}
	}()
	if batch[0].job != nil {
		// A job may delete events the tail holds: it starts over.
		defer l.tail.drop()
		if err := batch[0].job(l.wc); err != nil {
			return 0, err
		}
		if _, err := l.wc.Exec("COMMIT", nil); err != nil {
			return 0, fmt.Errorf("commit: %w", err)
		}
		return 0, nil
	}
	ctx := context.Background()
	// Under the write lock: ids go above every stored id, another
	// handle's included.
	prev, err := l.storedMax(ctx)
	if err != nil {
		return 0, err
	}
	l.tail.sawStored(prev)
	var people []*event.Event // for the tail, once committed
	events := 0
	a := l.args[:]
	// The content rows stored in this transaction: a content takes the id
	// of the first of its events that is stored (not a duplicate), so no
	// content is kept without an event.
	var stored map[*event.Content]int64
	for _, r := range batch {
		r.res = make([]eventlog.Result, len(r.enc))
		for i, enc := range r.enc {
			e := r.meta[i]
			// The generator's id, unless another handle stored one above it
			// (the generator is not moved: its ids keep their time).
			id := max(l.gen.Next(), prev+1)
			prev = id
			l.body = enc.WithID(l.body[:0], id)
			a[0].Value, a[1].Value, a[2].Value, a[3].Value = int64(id), int64(e.ProjectID), e.Key, e.Time
			if e.DedupKey != "" {
				a[4].Value = e.DedupKey
			} else {
				a[4].Value = nil
			}
			a[6].Value = nil
			a[7].Value = int64(len(e.Identities))
			contentID, newContent := int64(0), false
			if e.Content != nil {
				if stored == nil {
					stored = map[*event.Content]int64{}
				}
				if contentID = stored[e.Content]; contentID == 0 {
					contentID, newContent = int64(id), true
				}
				a[6].Value = contentID
			}
			// SQLite copies bound text (SQLITE_TRANSIENT) before Exec
			// returns, so the scratch buffer can back the string.
			a[5].Value = unsafe.String(unsafe.SliceData(l.body), len(l.body))
			res, err := l.insert.ExecContext(ctx, a)
			a[5].Value = nil
			if err != nil {
				return 0, fmt.Errorf("insert event: %w", err)
			}
			if e.DedupKey != "" {
				if n, _ := res.RowsAffected(); n == 0 {
					orig, err := l.duplicateOf(e)
					if err != nil {
						return 0, err
					}
					r.res[i] = eventlog.Result{ID: orig, Duplicate: true}
					continue
				}
			}
			if newContent {
				if _, err := l.insertContent.ExecContext(ctx, []driver.NamedValue{
					{Ordinal: 1, Value: contentID}, {Ordinal: 2, Value: e.Content.ReceivedAt}, {Ordinal: 3, Value: e.Content.Body},
				}); err != nil {
					return 0, fmt.Errorf("insert content: %w", err)
				}
				stored[e.Content] = contentID
			}
			r.res[i] = eventlog.Result{ID: id}
			last = id
			if len(e.Identities) > 0 {
				l.people = id
				people = append(people, tailEvent(e, id))
			}
			events++
		}
	}
	if _, err := l.wc.Exec("COMMIT", nil); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	l.tail.add(people, last)
	l.metrics.observeCommit(events)
	return last, nil
}

// duplicateOf returns the id of the stored event with e's dedup key.
func (l *Log) duplicateOf(e *event.Event) (event.ID, error) {
	rows, err := l.dupOf.QueryContext(context.Background(), []driver.NamedValue{
		{Ordinal: 1, Value: int64(e.ProjectID)}, {Ordinal: 2, Value: e.DedupKey},
	})
	if err != nil {
		return 0, fmt.Errorf("look up duplicate: %w", err)
	}
	defer rows.Close()
	dest := []driver.Value{nil}
	if err := rows.Next(dest); err != nil {
		return 0, fmt.Errorf("look up duplicate: %w", err)
	}
	id, _ := dest[0].(int64)
	return event.ID(id), nil
}

// storedMax is the largest stored id (0 for an empty log).
func (l *Log) storedMax(ctx context.Context) (event.ID, error) {
	rows, err := l.maxID.QueryContext(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("read log head: %w", err)
	}
	defer rows.Close()
	dest := []driver.Value{nil}
	if err := rows.Next(dest); err != nil {
		return 0, fmt.Errorf("read log head: %w", err)
	}
	id, _ := dest[0].(int64)
	return event.ID(id), nil
}

// raise moves v up to id, never down, and reports whether it moved.
func raise(v *atomic.Uint64, id event.ID) bool {
	for {
		cur := v.Load()
		if uint64(id) <= cur {
			return false
		}
		if v.CompareAndSwap(cur, uint64(id)) {
			return true
		}
	}
}

// raiseHeads raises the head of events with identities to people, then
// the head to head, and tells the followers of each.
func (l *Log) raiseHeads(head, people event.ID) {
	moved := raise(&l.peopleHead, people)
	l.raiseHead(head)
	if moved {
		l.chMu.Lock()
		close(l.peopleChanged)
		l.peopleChanged = make(chan struct{})
		l.chMu.Unlock()
	}
}

// PeopleAfter returns the events with identities with after < id <=
// upTo, at most limit of them, from memory: the ids, key, time,
// identities and data of each, as the profile consumer folds them. ok is
// false when memory does not hold all of them (the range starts before
// the latest ones, or reaches events another handle stored); Read has
// them then. upTo is the Head the caller read: events above it may not
// be durable yet.
func (l *Log) PeopleAfter(after, upTo event.ID, limit int) (evs []*event.Event, ok bool) {
	return l.tail.after(after, upTo, limit)
}

// PeopleHead is the highest durable id of an event with identities, or
// above it (never below); it is raised before Head.
func (l *Log) PeopleHead() event.ID { return event.ID(l.peopleHead.Load()) }

// PeopleChanged is closed once an event with identities was committed
// after the call, and is under the head: a follower of those alone (the
// profile consumer) need not wake for the others.
func (l *Log) PeopleChanged() <-chan struct{} {
	l.chMu.Lock()
	defer l.chMu.Unlock()
	return l.peopleChanged
}

// raiseHead moves the head up to id (never down) and tells the followers.
func (l *Log) raiseHead(id event.ID) {
	for {
		cur := l.head.Load()
		if uint64(id) <= cur {
			return
		}
		if l.head.CompareAndSwap(cur, uint64(id)) {
			l.notify()
			return
		}
	}
}

// watcher raises the head to the commits of other handles on the file,
// every WatchEvery: SQLite's data_version of its connection changes when
// another connection committed.
func (l *Log) watcher(ctx context.Context) {
	defer close(l.watDone)
	t := time.NewTicker(l.cfg.WatchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := l.watchOne("PRAGMA data_version")
		if err != nil || v == l.dataVersion {
			continue
		}
		l.dataVersion = v
		id, err := l.watchOne("SELECT coalesce(max(id), 0) FROM events")
		// This handle's own commits are raised by the leaders that sync
		// them; another handle's may not be synced yet: a sync that
		// begins now covers them.
		if err != nil || uint64(id) <= l.committed.Load() {
			continue
		}
		if err := l.wal.Sync(); err == nil {
			l.raiseHeads(event.ID(id), event.ID(id))
		}
	}
}

// watchOne is the integer that query returns on the watcher's connection.
func (l *Log) watchOne(query string) (int64, error) {
	rows, err := l.watch.QueryContext(context.Background(), query, nil)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	dest := []driver.Value{nil}
	if err := rows.Next(dest); err != nil {
		return 0, err
	}
	v, _ := dest[0].(int64)
	return v, nil
}

func (l *Log) notify() {
	l.chMu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.chMu.Unlock()
}

// Changed implements eventlog.Log.
func (l *Log) Changed() <-chan struct{} {
	l.chMu.Lock()
	defer l.chMu.Unlock()
	return l.changed
}

// Head implements eventlog.Log.
func (l *Log) Head() event.ID { return event.ID(l.head.Load()) }

// Read implements eventlog.Log.
func (l *Log) Read(ctx context.Context, q eventlog.Query) ([]eventlog.Record, error) {
	if err := q.Normalize(); err != nil {
		return nil, err
	}
	if q.WithIdentities && !q.Newest && q.After != 0 && uint64(q.After) >= l.peopleHead.Load() {
		return nil, nil // nothing with identities was committed after it
	}
	stmt, args := l.readQuery(q)
	var rows *sql.Rows
	var err error
	if ps := l.prepared(stmt, q); ps != nil {
		rows, err = ps.QueryContext(ctx, args...)
	} else {
		rows, err = l.rdb.QueryContext(ctx, stmt, args...)
	}
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
		// Events stored before ingest refused strings that are not
		// UTF-8 text are mended as they are read: readers (the API,
		// hooks) hand them to strict JSON parsers.
		r.Body = event.SanitizeJSONText(r.Body)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	return out, nil
}

// maxPreparedReads bounds the reads kept prepared.
const maxPreparedReads = 64

// prepared is the prepared statement of stmt, the text of q, or nil for a
// query whose text depends on the length of a list of ids, or when
// maxPreparedReads are kept already.
func (l *Log) prepared(stmt string, q eventlog.Query) *sql.Stmt {
	if len(q.IDs) > 0 || len(q.Projects) > 8 {
		return nil
	}
	l.readsMu.Lock()
	defer l.readsMu.Unlock()
	if ps, ok := l.reads[stmt]; ok {
		return ps
	}
	if len(l.reads) >= maxPreparedReads {
		return nil
	}
	ps, err := l.rdb.Prepare(stmt)
	if err != nil {
		return nil // the query itself will say why
	}
	if l.reads == nil {
		l.reads = map[string]*sql.Stmt{}
	}
	l.reads[stmt] = ps
	return ps
}

// readQuery is the SELECT of a normalized query.
func (l *Log) readQuery(q eventlog.Query) (string, []any) {
	var where []string
	var args []any
	if len(q.Projects) > 0 {
		ph := strings.TrimSuffix(strings.Repeat("?,", len(q.Projects)), ",")
		col := "project_id"
		if q.Since == 0 && q.Until == 0 {
			// A cursor read: walk the primary key from After. Through the
			// (project_id, time) index SQLite would read every event of
			// the project and sort them for each page.
			col = "+project_id"
		}
		where = append(where, col+" IN ("+ph+")")
		for _, p := range q.Projects {
			args = append(args, int64(p))
		}
	}
	if q.KeyGlob != "" {
		where = append(where, "key GLOB ?")
		args = append(args, event.SQLiteGlob(q.KeyGlob))
	}
	if q.Since != 0 {
		where = append(where, "time >= ?")
		args = append(args, q.Since)
	}
	if q.Until != 0 {
		where = append(where, "time < ?")
		args = append(args, q.Until)
	}
	if q.After != 0 {
		where = append(where, "id > ?")
		args = append(args, int64(q.After))
	}
	if q.WithIdentities {
		where = append(where, "people > 0")
	}
	if len(q.IDs) > 0 {
		where = append(where, "id IN ("+strings.TrimSuffix(strings.Repeat("?,", len(q.IDs)), ",")+")")
		for _, id := range q.IDs {
			args = append(args, int64(id))
		}
	}
	// Only what is durable: a reader must never act on an event that a
	// crash could still take back.
	where = append(where, "id <= ?")
	args = append(args, int64(l.head.Load()))
	stmt := "SELECT id, project_id, key, time, body, coalesce(content_id, 0) FROM events WHERE " + strings.Join(where, " AND ")
	args = append(args, q.Limit)
	if q.Newest {
		return "SELECT * FROM (" + stmt + " ORDER BY id DESC LIMIT ?) ORDER BY id", args
	}
	return stmt + " ORDER BY id LIMIT ?", args
}

// Count implements eventlog.Log.
func (l *Log) Count(ctx context.Context, q eventlog.Query) (int64, error) {
	q.Limit, q.Newest = 1, false
	if err := q.Normalize(); err != nil {
		return 0, err
	}
	stmt, args := l.readQuery(q)
	stmt = "SELECT count(*) FROM events" + stmt[strings.Index(stmt, " WHERE "):strings.LastIndex(stmt, " ORDER BY ")]
	var n int64
	if err := l.rdb.QueryRowContext(ctx, stmt, args[:len(args)-1]...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}

// Contents implements eventlog.Log.
func (l *Log) Contents(ctx context.Context, ids []int64) (map[int64]event.Content, error) {
	out := make(map[int64]event.Content, len(ids))
	for len(ids) > 0 {
		n := min(len(ids), 500)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		rows, err := l.rdb.QueryContext(ctx, "SELECT id, received_at, body FROM contents WHERE id IN ("+strings.TrimSuffix(strings.Repeat("?,", n), ",")+")", args...)
		if err != nil {
			return nil, fmt.Errorf("read contents: %w", err)
		}
		for rows.Next() {
			var id int64
			var c event.Content
			if err := rows.Scan(&id, &c.ReceivedAt, &c.Body); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read contents: %w", err)
			}
			out[id] = c
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("read contents: %w", err)
		}
		ids = ids[n:]
	}
	return out, nil
}

// DeleteContentsBefore implements eventlog.Log.
func (l *Log) DeleteContentsBefore(ctx context.Context, t time.Time) (int64, error) {
	return l.deleteChunks(ctx, `DELETE FROM contents WHERE id IN (SELECT id FROM contents WHERE received_at < ? ORDER BY received_at LIMIT ?)`, t.UnixMilli())
}

// Erase implements eventlog.Log: the events, then the raw requests no
// remaining event refers to, a chunk per transaction.
func (l *Log) Erase(ctx context.Context, projectID uint32, ids []event.ID) (int64, error) {
	var total int64
	for len(ids) > 0 {
		n := min(len(ids), 500)
		chunk := ids[:n]
		ids = ids[n:]
		err := l.do(ctx, func(c *sqlite3.SQLiteConn) error {
			ph := strings.TrimSuffix(strings.Repeat("?,", len(chunk)), ",")
			args := []driver.Value{int64(projectID)}
			for _, id := range chunk {
				args = append(args, int64(id))
			}
			if _, err := c.Exec(`DELETE FROM contents WHERE id IN (SELECT content_id FROM events WHERE project_id = ? AND id IN (`+ph+`) AND content_id IS NOT NULL)
				AND NOT EXISTS (SELECT 1 FROM events e WHERE e.content_id = contents.id AND e.id NOT IN (`+ph+`))`, append(args, args[1:]...)); err != nil {
				return fmt.Errorf("erase raw requests: %w", err)
			}
			res, err := c.Exec(`DELETE FROM events WHERE project_id = ? AND id IN (`+ph+`)`, args)
			if err != nil {
				return fmt.Errorf("erase events: %w", err)
			}
			n, err := res.RowsAffected()
			total += n
			return err
		})
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// deleteChunk bounds how many rows one retention transaction removes, so
// appends never wait long behind it.
const deleteChunk = 5000

// DeleteBefore implements eventlog.Log. Ids carry their commit time, so
// "stored before t" is an id range on the primary key.
func (l *Log) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	return l.deleteChunks(ctx, `DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < ? ORDER BY id LIMIT ?)`, int64(event.FirstIDAt(t)))
}

// deleteChunks runs a DELETE of at most deleteChunk rows below bound
// until it deletes fewer, one transaction each.
func (l *Log) deleteChunks(ctx context.Context, stmt string, bound int64) (int64, error) {
	var total int64
	for {
		var n int64
		err := l.do(ctx, func(c *sqlite3.SQLiteConn) error {
			res, err := c.Exec(stmt, []driver.Value{bound, int64(deleteChunk)})
			if err != nil {
				return fmt.Errorf("delete expired rows: %w", err)
			}
			n, err = res.RowsAffected()
			return err
		})
		total += n
		if err != nil || n < deleteChunk {
			return total, err
		}
		if ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}

func (l *Log) do(ctx context.Context, job func(c *sqlite3.SQLiteConn) error) error {
	r := &request{done: make(chan bool, 1), job: job}
	if err := l.submit(ctx, r); err != nil {
		return err
	}
	return r.err
}

// walCheckpointFrames is the WAL length (in frames of one 4 KiB page)
// past which a commit checkpoints the WAL so that it starts over.
const walCheckpointFrames = 1000

// walFileLimit is the size of WAL file past which a commit restarts the
// WAL (boundWAL), and that the file is cut back to when it starts over:
// twice the frames of a checkpoint.
const walFileLimit = 2 * walCheckpointFrames * (4096 + 24)

// How long a commit that restarts the WAL waits for readers, and how long
// after a failed attempt it tries again.
const (
	walRestartWait  = 50 * time.Millisecond
	walRestartEvery = 250 * time.Millisecond
)

// checkpointer copies committed WAL frames into the database file every
// CheckpointEvery, without ever taking the writer's lock. It keeps an idle
// log's database file current; a busy log's WAL is bounded by the commits
// themselves (walCheckpointFrames).
func (l *Log) checkpointer(ctx context.Context) {
	defer close(l.ckpDone)
	t := time.NewTicker(l.cfg.CheckpointEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var busy, frames, done int
		err := l.cdb.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done)
		if err != nil && ctx.Err() == nil && l.Health() == nil {
			l.log.Warn("wal checkpoint", "err", err)
		}
	}
}

// recoverer brings the log back after it went down: at once, then every
// RecoverEvery until tryRecover succeeds.
func (l *Log) recoverer(ctx context.Context) {
	defer close(l.recDone)
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
				l.wal.Reset()
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

// tryRecover checkpoints the whole WAL into the database file and truncates
// it, which gives its space back, checks that the file system has
// recoverHeadroom free, then commits a probe write (the schema version,
// again). Appends may resume when all three succeeded. Nothing else
// writes while the log is down, so the checkpoint waits only for readers
// to move to the last snapshot. Without the headroom a probe would succeed
// in the very pages the truncated WAL gave back, and the next append fail.
func (l *Log) tryRecover(ctx context.Context) error {
	var busy, frames, done int
	if err := l.cdb.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &done); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if busy != 0 {
		return fmt.Errorf("checkpoint: %w", errCheckpointBusy)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(l.cfg.Path), &st); err != nil {
		return fmt.Errorf("free space: %w", err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < recoverHeadroom {
		return fmt.Errorf("%w: %d bytes free, %d needed", errLowSpace, free, recoverHeadroom)
	}
	if _, err := l.cdb.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version=%d", schemaVersion)); err != nil {
		return fmt.Errorf("probe write: %w", err)
	}
	return nil
}

// recoverHeadroom is the free space a log that is down waits for: room
// for its WAL to reach walFileLimit.
const recoverHeadroom = walFileLimit

var (
	errCheckpointBusy = errors.New("readers kept the WAL busy")
	errLowSpace       = errors.New("too little free space")
)

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

// Reasons of failed appends (the metric's label values).
const (
	reasonDiskFull = "disk_full"
	reasonIO       = "io"
	reasonClosed   = "closed"
	reasonOther    = "other"
)

// failureReason classifies an error of a commit or an append.
func failureReason(err error) string {
	var se sqlite3.Error
	var ws *errSync
	switch {
	case errors.Is(err, eventlog.ErrClosed):
		return reasonClosed
	case errors.Is(err, errLowSpace):
		return reasonDiskFull
	case errors.As(err, &ws):
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			return reasonDiskFull
		}
		return reasonIO
	case errors.As(err, &se):
		switch {
		case se.Code == sqlite3.ErrFull || se.SystemErrno == syscall.ENOSPC || se.SystemErrno == syscall.EDQUOT:
			return reasonDiskFull
		case se.Code == sqlite3.ErrIoErr:
			return reasonIO
		}
	}
	return reasonOther
}

// unavailable is the error of appends (and of Health) while the log is
// down.
type unavailable struct {
	reason string // reasonDiskFull or reasonIO
	since  time.Time
	cause  error // the failed commit's
}

func newUnavailable(cause error) *unavailable {
	return &unavailable{reason: failureReason(cause), since: time.Now(), cause: cause}
}

func (u *unavailable) Error() string {
	what := "disk full"
	if u.reason == reasonIO {
		what = "I/O error"
	}
	return fmt.Sprintf("event log: %s; appends refused since %s (%v)", what, u.since.UTC().Format(time.RFC3339), u.cause)
}

func (u *unavailable) Is(target error) bool { return target == eventlog.ErrUnavailable }
func (u *unavailable) Unwrap() error        { return u.cause }

// Close stops accepting appends, waits for the commits in progress,
// checkpoints the WAL and closes the database. A checkpoint that fails
// (on a full disk) is logged, not returned: every committed event is in
// the WAL, and the next Open replays it.
func (l *Log) Close() error {
	l.qmu.Lock()
	if l.closed {
		l.qmu.Unlock()
		return nil
	}
	l.closed = true
	for l.leading || l.syncing > 0 {
		l.idle.Wait()
	}
	l.qmu.Unlock()
	l.stopCkp()
	<-l.ckpDone
	l.stopRec()
	<-l.recDone
	l.stopWat()
	<-l.watDone
	if _, err := l.wc.Exec("PRAGMA wal_checkpoint(TRUNCATE)", nil); err != nil {
		l.log.Warn("final checkpoint failed; the WAL keeps every committed event and the next start replays it", "err", err)
	}
	_ = l.insert.Close()
	_ = l.insertContent.Close()
	_ = l.dupOf.Close()
	_ = l.maxID.Close()
	l.readsMu.Lock()
	for _, ps := range l.reads {
		_ = ps.Close()
	}
	l.reads = nil
	l.readsMu.Unlock()
	return errors.Join(l.watch.Close(), l.cdb.Close(), l.rdb.Close(), l.wc.Close(), l.wal.Close())
}
