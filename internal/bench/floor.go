package bench

import (
	"database/sql/driver"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// The durable floor: what any gateway that answers only after its commit
// must pay at least. A bare handler that reads the body, as the baseline,
// plus group commit of the body to SQLite (one table, primary key only,
// WAL, synchronous=FULL, one fsync per group): the requests waiting while
// a commit runs form the next group. sluice does the same durable work
// and more (decoding, validation, the canonical event, dedup, indexes), so
// its rate over the floor's, in the same run, says what that costs.

// Floors a load can be compared with.
const (
	FloorNone   = ""
	FloorSQLite = "sqlite"
)

// Floors lists the floor servers.
var Floors = []string{FloorSQLite}

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
	os.RemoveAll(f.dir)
	return err
}

// startFloor starts the named floor server on a loopback port, its
// database in a new directory under dir (on the file system whose fsync
// it should pay: the server's).
func startFloor(kind, dir string) (*floor, error) {
	if kind != FloorSQLite {
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
	g := &groupCommit{conn: conn, insert: st.(*sqlite3.SQLiteStmt)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		conn.Close()
		os.RemoveAll(d)
		return nil, fmt.Errorf("floor listener: %w", err)
	}
	resp := []byte(`{"key":"in.gen.bench.event","id":"0"}` + "\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if err := g.commit(body); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(resp)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &floor{srv: srv, url: "http://" + ln.Addr().String(), dir: d, stop: func() { st.Close(); conn.Close() }}, nil
}

// groupCommit commits bodies in groups, with a leader as sluice's log
// does: the first caller that finds no commit running commits everything
// waiting, answers the others, and hands the leadership to the oldest
// caller that arrived meanwhile.
type groupCommit struct {
	conn   *sqlite3.SQLiteConn
	insert *sqlite3.SQLiteStmt

	mu      sync.Mutex
	leading bool
	queue   []*pendingBody
}

type pendingBody struct {
	body []byte
	err  error
	done chan bool // false: committed (err says how); true: lead
}

func (g *groupCommit) commit(body []byte) error {
	p := &pendingBody{body: body, done: make(chan bool, 1)}
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

func (g *groupCommit) write(group []*pendingBody) error {
	if _, err := g.conn.Exec("BEGIN", nil); err != nil {
		return err
	}
	for _, p := range group {
		if _, err := g.insert.Exec([]driver.Value{p.body}); err != nil {
			_, _ = g.conn.Exec("ROLLBACK", nil)
			return err
		}
	}
	_, err := g.conn.Exec("COMMIT", nil)
	return err
}
