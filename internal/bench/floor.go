package bench

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	sqlite3 "github.com/mattn/go-sqlite3"
)

// The durable floor: what any gateway that answers only after its commit
// must pay at least. A bare handler that reads the body, as the baseline,
// plus group commit of the body, one row per event the request carries (a
// batch's body cut in as many pieces as it has events): the requests waiting
// while a commit runs form the next group. FloorSQLite commits to SQLite
// (one table, primary key only, WAL, synchronous=FULL, one fsync per
// group); FloorPostgres to PostgreSQL through pgx (one table, primary key
// only, one INSERT of the group's bodies per commit, a round trip and the
// server's WAL flush). sluice does the same durable work and more
// (decoding, validation, the canonical event, dedup, indexes, a row per
// event), so its rate over the floor's, in the same run, says what that
// costs.

// Floors a load can be compared with.
const (
	FloorNone     = ""
	FloorSQLite   = "sqlite"
	FloorPostgres = "postgres"
)

// Floors lists the floor servers.
var Floors = []string{FloorSQLite, FloorPostgres}

// floor is a running floor server.
type floor struct {
	srv  *http.Server
	url  string
	dir  string
	stop func()
}

func (f *floor) Close() error {
	err := f.srv.Close()
	f.stop()
	if f.dir != "" {
		os.RemoveAll(f.dir)
	}
	return err
}

// startFloor starts the named floor server on a loopback port: for
// FloorSQLite its database in a new directory under dir (on the file
// system whose fsync it should pay: the server's), for FloorPostgres a
// table of its own in the database of dsn, dropped when it closes.
func startFloor(kind, dir, dsn string, rows int) (*floor, error) {
	rows = max(rows, 1)
	switch kind {
	case FloorSQLite:
	case FloorPostgres:
		return startPostgresFloor(dsn, rows)
	default:
		return nil, fmt.Errorf("unknown floor %q; the floors are %v", kind, Floors)
	}
	if dir == "" {
		dir = "."
	}
	d, err := os.MkdirTemp(dir, "sluice-floor-")
	if err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	c, err := (&sqlite3.SQLiteDriver{}).Open("file:" + filepath.Join(d, "floor.db") + "?_journal_mode=WAL&_synchronous=FULL")
	if err != nil {
		os.RemoveAll(d)
		return nil, fmt.Errorf("floor: %w", err)
	}
	conn := c.(*sqlite3.SQLiteConn)
	if _, err := conn.Exec(`CREATE TABLE events (id INTEGER PRIMARY KEY, body BLOB NOT NULL)`, nil); err != nil {
		conn.Close()
		os.RemoveAll(d)
		return nil, fmt.Errorf("floor: %w", err)
	}
	st, err := conn.Prepare(`INSERT INTO events(body) VALUES (?)`)
	if err != nil {
		conn.Close()
		os.RemoveAll(d)
		return nil, fmt.Errorf("floor: %w", err)
	}
	insert := st.(*sqlite3.SQLiteStmt)
	g := &groupCommit{write: func(group []*pendingBody) error {
		if _, err := conn.Exec("BEGIN", nil); err != nil {
			return err
		}
		for _, p := range group {
			for _, row := range p.rows {
				if _, err := insert.Exec([]driver.Value{row}); err != nil {
					_, _ = conn.Exec("ROLLBACK", nil)
					return err
				}
			}
		}
		_, err := conn.Exec("COMMIT", nil)
		return err
	}}
	srv, url, err := serveFloor(g, rows)
	if err != nil {
		conn.Close()
		os.RemoveAll(d)
		return nil, err
	}
	return &floor{srv: srv, url: url, dir: d, stop: func() { st.Close(); conn.Close() }}, nil
}

// startPostgresFloor is the floor on PostgreSQL: a table of its own in
// the database of dsn, one connection, group commit.
func startPostgresFloor(dsn string, rows int) (*floor, error) {
	if dsn == "" {
		return nil, errors.New("the postgres floor needs a database: --floor-dsn or SLUICE_POSTGRES_DSN")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("the postgres floor's DSN cannot be parsed (it is not shown: it may hold a password)")
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("postgres floor: %w", err)
	}
	table := "sluice_bench_floor_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body bytea NOT NULL)"); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("postgres floor: %w", err)
	}
	insert := "INSERT INTO " + table + " (body) SELECT unnest($1::bytea[])"
	var bodies [][]byte
	g := &groupCommit{write: func(group []*pendingBody) error {
		bodies = bodies[:0]
		for _, p := range group {
			bodies = append(bodies, p.rows...)
		}
		// One statement outside a transaction block: it commits by
		// itself, in one round trip.
		_, err := conn.Exec(context.Background(), insert, bodies)
		return err
	}}
	srv, url, err := serveFloor(g, rows)
	if err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return &floor{srv: srv, url: url, stop: func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = conn.Exec(ctx, "DROP TABLE "+table)
		conn.Close(ctx)
	}}, nil
}

// serveFloor serves the floor handler on a loopback port: read the body,
// commit it with g in rows pieces, answer 200.
func serveFloor(g *groupCommit, rows int) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("floor listener: %w", err)
	}
	resp := []byte(`{"key":"in.gen.bench.event","id":"0"}` + "\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if err := g.commit(split(body, rows)); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(resp)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, "http://" + ln.Addr().String(), nil
}

// groupCommit commits bodies in groups, with a leader as sluice's log
// does: the first caller that finds no commit running commits everything
// waiting, answers the others, and hands the leadership to the oldest
// caller that arrived meanwhile.
type groupCommit struct {
	// write commits one group, durably.
	write func(group []*pendingBody) error

	mu      sync.Mutex
	leading bool
	queue   []*pendingBody
}

type pendingBody struct {
	rows [][]byte // the rows of one request
	err  error
	done chan bool // false: committed (err says how); true: lead
}

func (g *groupCommit) commit(rows [][]byte) error {
	p := &pendingBody{rows: rows, done: make(chan bool, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, p)
	if g.leading {
		g.mu.Unlock()
		if lead := <-p.done; !lead {
			return p.err
		}
	} else {
		g.leading = true
		g.mu.Unlock()
	}
	g.mu.Lock()
	group := g.queue
	g.queue = nil
	g.mu.Unlock()
	err := g.write(group)
	g.mu.Lock()
	var next *pendingBody
	if len(g.queue) > 0 {
		next = g.queue[0]
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	for _, q := range group[1:] {
		q.err = err
		q.done <- false
	}
	if next != nil {
		next.done <- true
	}
	return err
}

// split cuts b into n pieces of about the same length (one when n is 1).
func split(b []byte, n int) [][]byte {
	out := make([][]byte, 0, n)
	for i := range n {
		out = append(out, b[len(b)*i/n:len(b)*(i+1)/n])
	}
	return out
}
