// Package sqlite is the embedded, default event log: one SQLite database in
// WAL mode with synchronous=FULL, written by a single goroutine that commits
// concurrent appends together (group commit) and fsyncs before any caller
// is answered.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

var _ eventlog.Log = (*Log)(nil)

// Config configures the SQLite log.
type Config struct {
	// Path of the database file; its directory must exist.
	Path string
	// MaxBatch caps the events in one commit (default 4096).
	MaxBatch int
	// Queue is how many append requests may wait for the writer (default 8192).
	Queue int
	// Readers is the number of read connections (default 4).
	Readers int
	// CheckpointEvery is how often a background connection copies the WAL
	// into the database (default 1s), off the writer's path.
	CheckpointEvery time.Duration
}

func (c *Config) defaults() {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 4096
	}
	if c.Queue <= 0 {
		c.Queue = 8192
	}
	if c.Readers <= 0 {
		c.Readers = 4
	}
	if c.CheckpointEvery <= 0 {
		c.CheckpointEvery = time.Second
	}
}

// Log is the SQLite event log.
type Log struct {
	cfg     Config
	gen     *event.Generator
	log     *slog.Logger
	metrics *metrics

	wdb    *sql.DB // the writer's database handle, one connection
	wconn  *sql.Conn
	insert *sql.Stmt
	dupOf  *sql.Stmt
	rdb    *sql.DB // readers
	cdb    *sql.DB // checkpointer

	mu      sync.RWMutex // guards closed against enqueues
	closed  bool
	queue   chan *request
	quit    chan struct{}
	done    chan struct{}
	stopCkp context.CancelFunc
	ckpDone chan struct{}

	// ckpWant asks the writer to finish a checkpoint between commits: a
	// background checkpoint never catches up with a busy writer, and the
	// WAL only starts over (instead of growing) once one has.
	ckpWant atomic.Bool

	head    atomic.Uint64
	chMu    sync.Mutex
	changed chan struct{}

	body []byte // the writer's scratch buffer
}

// request is one Append waiting for the writer.
type request struct {
	enc    []event.Encoded
	meta   []*event.Event
	res    []eventlog.Result
	err    error
	done   chan struct{}
	job    func(tx *sql.Tx) error // maintenance work instead of events
	nEvent int
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan struct{}, 1)} }}

// bufPool holds encode buffers for the request goroutines.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

const schema = `
CREATE TABLE IF NOT EXISTS events (
	id         INTEGER PRIMARY KEY, -- flake id, assigned at commit: grows in commit order
	project_id INTEGER NOT NULL,
	key        TEXT    NOT NULL,
	time       INTEGER NOT NULL,    -- event time, Unix ms
	dedup      TEXT,                -- NULL when the event has no dedup key
	body       TEXT    NOT NULL     -- the canonical JSON event
);
CREATE INDEX IF NOT EXISTS events_project_time ON events(project_id, time);
CREATE UNIQUE INDEX IF NOT EXISTS events_dedup ON events(project_id, dedup) WHERE dedup IS NOT NULL;
`

const schemaVersion = 1

func dsn(path string, extra url.Values) string {
	v := url.Values{}
	v.Set("_journal_mode", "WAL")
	v.Set("_synchronous", "FULL")
	v.Set("_busy_timeout", "10000")
	for k, vs := range extra {
		v[k] = vs
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + v.Encode()
}

// Open opens (creating when absent) the log at cfg.Path. gen mints the ids;
// Open makes it continue above the largest stored id. reg may be nil.
func Open(cfg Config, gen *event.Generator, reg prometheus.Registerer, logger *slog.Logger) (*Log, error) {
	cfg.defaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{
		cfg:     cfg,
		gen:     gen,
		log:     logger,
		queue:   make(chan *request, cfg.Queue),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		ckpDone: make(chan struct{}),
		changed: make(chan struct{}),
	}
	var err error
	// The writer never checkpoints itself: that would stall every append
	// waiting behind it. A separate connection does it in the background.
	l.wdb, err = sql.Open("sqlite3", dsn(cfg.Path, url.Values{"_txlock": {"immediate"}}))
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", cfg.Path, err)
	}
	l.wdb.SetMaxOpenConns(1)
	if err := l.init(); err != nil {
		l.wdb.Close()
		return nil, err
	}
	l.rdb, err = sql.Open("sqlite3", dsn(cfg.Path, url.Values{"_query_only": {"1"}}))
	if err != nil {
		l.wdb.Close()
		return nil, fmt.Errorf("open log readers %s: %w", cfg.Path, err)
	}
	l.rdb.SetMaxOpenConns(cfg.Readers)
	l.rdb.SetMaxIdleConns(cfg.Readers)
	l.cdb, err = sql.Open("sqlite3", dsn(cfg.Path, nil))
	if err != nil {
		l.wdb.Close()
		l.rdb.Close()
		return nil, fmt.Errorf("open log checkpointer %s: %w", cfg.Path, err)
	}
	l.cdb.SetMaxOpenConns(1)
	l.metrics = newMetrics(reg)

	ctx, cancel := context.WithCancel(context.Background())
	l.stopCkp = cancel
	go l.checkpointer(ctx)
	go l.run()
	return l, nil
}

// init checks the durability settings, creates the schema and seeds the
// id generator.
func (l *Log) init() error {
	ctx := context.Background()
	conn, err := l.wdb.Conn(ctx)
	if err != nil {
		return fmt.Errorf("open log %s: %w", l.cfg.Path, err)
	}
	l.wconn = conn
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("open log %s: %w", l.cfg.Path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("open log %s: journal_mode is %q, want wal", l.cfg.Path, mode)
	}
	var sync int
	if err := conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return fmt.Errorf("open log %s: %w", l.cfg.Path, err)
	}
	if sync != 2 { // FULL: the WAL is fsynced at every commit
		return fmt.Errorf("open log %s: synchronous is %d, want 2 (FULL)", l.cfg.Path, sync)
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=67108864"); err != nil {
		return fmt.Errorf("open log %s: %w", l.cfg.Path, err)
	}
	var version int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("open log %s: %w", l.cfg.Path, err)
	}
	if version > schemaVersion {
		return fmt.Errorf("open log %s: schema version %d is newer than this binary's %d", l.cfg.Path, version, schemaVersion)
	}
	if _, err := conn.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create log schema: %w", err)
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version=%d", schemaVersion)); err != nil {
		return fmt.Errorf("set log schema version: %w", err)
	}
	var maxID sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT max(id) FROM events").Scan(&maxID); err != nil {
		return fmt.Errorf("read log head: %w", err)
	}
	if maxID.Valid {
		l.head.Store(uint64(maxID.Int64))
		l.gen.Observe(event.ID(maxID.Int64))
	}
	l.insert, err = conn.PrepareContext(ctx, `INSERT INTO events(id, project_id, key, time, dedup, body) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (project_id, dedup) WHERE dedup IS NOT NULL DO NOTHING`)
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	l.dupOf, err = conn.PrepareContext(ctx, `SELECT id FROM events WHERE project_id = ? AND dedup = ?`)
	if err != nil {
		return fmt.Errorf("prepare dedup lookup: %w", err)
	}
	return nil
}

// Append implements eventlog.Log.
func (l *Log) Append(ctx context.Context, events []*event.Event) ([]eventlog.Result, error) {
	if len(events) == 0 {
		return nil, nil
	}
	for i, e := range events {
		if err := e.Validate(); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
	}
	r := requestPool.Get().(*request)
	r.meta = events
	r.nEvent = len(events)
	// Encode on the caller's goroutine; the writer only splices in ids.
	bufs := make([]*[]byte, len(events))
	r.enc = r.enc[:0]
	for i, e := range events {
		bufs[i] = bufPool.Get().(*[]byte)
		enc := e.Encode(*bufs[i])
		r.enc = append(r.enc, enc)
	}
	err := l.submit(ctx, r)
	var res []eventlog.Result
	if err == nil {
		res, err = r.res, r.err
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

// submit hands r to the writer and waits for its commit. Once queued, a
// request is always waited for: its buffers belong to the writer until then.
func (l *Log) submit(ctx context.Context, r *request) error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return eventlog.ErrClosed
	}
	select {
	case l.queue <- r:
	case <-ctx.Done():
		l.mu.RUnlock()
		return ctx.Err()
	}
	l.mu.RUnlock()
	<-r.done
	return nil
}

// run is the single writer: it takes every request that is waiting, commits
// them in one transaction and answers them all.
func (l *Log) run() {
	defer close(l.done)
	batch := make([]*request, 0, 256)
	for {
		var first *request
		select {
		case first = <-l.queue:
		case <-l.quit:
			// Close has stopped enqueues; commit what is left.
			for {
				select {
				case r := <-l.queue:
					l.commitGroup(append(batch[:0], r))
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
		n := first.nEvent
	fill:
		for n < l.cfg.MaxBatch && first.job == nil {
			select {
			case r := <-l.queue:
				if r.job != nil {
					// Maintenance runs in a transaction of its own, after
					// the events gathered so far.
					l.commitGroup(batch)
					batch = append(batch[:0], r)
					break fill
				}
				batch = append(batch, r)
				n += r.nEvent
			default:
				break fill
			}
		}
		l.commitGroup(batch)
		if l.ckpWant.Load() {
			l.ckpWant.Store(false)
			if _, err := l.wconn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
				l.log.Warn("wal checkpoint", "err", err)
			}
		}
	}
}

// commitGroup commits batch in one transaction. When that fails, each
// request is retried alone, so one bad request cannot fail its neighbours.
func (l *Log) commitGroup(batch []*request) {
	err := l.commit(batch)
	if err != nil && len(batch) > 1 {
		l.log.Warn("group commit failed; committing requests one by one", "requests", len(batch), "err", err)
		for _, r := range batch {
			r.err = l.commit([]*request{r})
		}
	} else if err != nil {
		batch[0].err = err
	}
	for _, r := range batch {
		r.done <- struct{}{}
	}
}

func (l *Log) commit(batch []*request) (err error) {
	start := time.Now()
	ctx := context.Background()
	tx, err := l.wconn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if batch[0].job != nil {
		if err := batch[0].job(tx); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}
	insert := tx.StmtContext(ctx, l.insert)
	dupOf := tx.StmtContext(ctx, l.dupOf)
	var last event.ID
	events := 0
	for _, r := range batch {
		r.res = make([]eventlog.Result, len(r.enc))
		for i, enc := range r.enc {
			e := r.meta[i]
			id := l.gen.Next()
			l.body = enc.WithID(l.body[:0], id)
			var dedup any
			if e.DedupKey != "" {
				dedup = e.DedupKey
			}
			// SQLite copies bound text (SQLITE_TRANSIENT) before Exec
			// returns, so the scratch buffer can back the string.
			res, err := insert.ExecContext(ctx, int64(id), int64(e.ProjectID), e.Key, e.Time, dedup, unsafe.String(unsafe.SliceData(l.body), len(l.body)))
			if err != nil {
				return fmt.Errorf("insert event: %w", err)
			}
			if dedup != nil {
				if n, _ := res.RowsAffected(); n == 0 {
					var orig int64
					if err := dupOf.QueryRowContext(ctx, int64(e.ProjectID), e.DedupKey).Scan(&orig); err != nil {
						return fmt.Errorf("look up duplicate: %w", err)
					}
					r.res[i] = eventlog.Result{ID: event.ID(orig), Duplicate: true}
					continue
				}
			}
			r.res[i] = eventlog.Result{ID: id}
			last = id
			events++
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if last != 0 {
		l.head.Store(uint64(last))
		l.notify()
	}
	l.metrics.observeCommit(events, time.Since(start))
	return nil
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
	var where []string
	var args []any
	if len(q.Projects) > 0 {
		ph := strings.TrimSuffix(strings.Repeat("?,", len(q.Projects)), ",")
		where = append(where, "project_id IN ("+ph+")")
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
	stmt := "SELECT id, project_id, key, time, body FROM events"
	if len(where) > 0 {
		stmt += " WHERE " + strings.Join(where, " AND ")
	}
	stmt += " ORDER BY id LIMIT ?"
	args = append(args, q.Limit)
	rows, err := l.rdb.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	defer rows.Close()
	var out []eventlog.Record
	for rows.Next() {
		var r eventlog.Record
		var id, project int64
		if err := rows.Scan(&id, &project, &r.Key, &r.Time, &r.Body); err != nil {
			return nil, fmt.Errorf("read log: %w", err)
		}
		r.ID, r.ProjectID = event.ID(id), uint32(project)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	return out, nil
}

// deleteChunk bounds how many rows one retention transaction removes, so
// appends never wait long behind it.
const deleteChunk = 5000

// DeleteBefore implements eventlog.Log. Ids carry their commit time, so
// "stored before t" is an id range on the primary key.
func (l *Log) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	bound := int64(event.FirstIDAt(t))
	var total int64
	for {
		var n int64
		err := l.do(ctx, func(tx *sql.Tx) error {
			res, err := tx.Exec(`DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < ? ORDER BY id LIMIT ?)`, bound, deleteChunk)
			if err != nil {
				return fmt.Errorf("delete expired events: %w", err)
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

// do runs job in a write transaction on the writer goroutine.
func (l *Log) do(ctx context.Context, job func(tx *sql.Tx) error) error {
	r := &request{done: make(chan struct{}, 1), job: job}
	if err := l.submit(ctx, r); err != nil {
		return err
	}
	return r.err
}

// walRestartFrames is the WAL length (in frames) past which the writer
// completes a checkpoint so that the WAL starts over.
const walRestartFrames = 1000

// checkpointer copies committed WAL frames into the database file and lets
// the WAL restart, without ever taking the writer's lock.
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
		if err != nil && ctx.Err() == nil {
			l.log.Warn("wal checkpoint", "err", err)
		}
		if frames >= walRestartFrames {
			l.ckpWant.Store(true)
		}
	}
}

// Close stops accepting appends, commits what is queued, checkpoints the
// WAL and closes the database.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.quit)
	<-l.done
	l.stopCkp()
	<-l.ckpDone
	var errs []error
	if _, err := l.wconn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		errs = append(errs, fmt.Errorf("final checkpoint: %w", err))
	}
	_ = l.insert.Close()
	_ = l.dupOf.Close()
	errs = append(errs, l.wconn.Close(), l.cdb.Close(), l.rdb.Close(), l.wdb.Close())
	return errors.Join(errs...)
}
