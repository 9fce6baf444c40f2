// Package sqlitefile opens the SQLite databases of the data directory so
// that each keeps its -wal and -shm files when it is closed.
//
// SQLite cannot read a WAL-mode database without its -shm file, and the
// first process to open a database truncates that file and writes it out
// again. On a full disk a file that is gone cannot be written again, but
// one that was kept gets back the space its own truncation freed: with
// the files kept (SQLITE_FCNTL_PERSIST_WAL), a server started on a full
// disk can still open its databases, read them and write nothing. The kept
// -wal file is emptied at a clean close (journal_size_limit), so it holds
// no space.
package sqlitefile

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// Keep makes c keep the -wal and -shm files of its main database when it
// closes, and truncates the -wal file to at most walLimit bytes whenever
// the WAL starts over (and to nothing at a clean close).
func Keep(c *sqlite3.SQLiteConn, walLimit int64) error {
	if err := c.SetFileControlInt("main", sqlite3.SQLITE_FCNTL_PERSIST_WAL, 1); err != nil {
		return fmt.Errorf("keep wal files: %w", err)
	}
	if _, err := c.Exec(fmt.Sprintf("PRAGMA journal_size_limit=%d", walLimit), nil); err != nil {
		return fmt.Errorf("set journal_size_limit: %w", err)
	}
	return nil
}

// Open returns a pool of connections to dsn (a go-sqlite3 data source
// name) that each Keep the database's files, with walLimit.
func Open(dsn string, walLimit int64) *sql.DB {
	d := &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error { return Keep(c, walLimit) }}
	return sql.OpenDB(connector{dsn: dsn, d: d})
}

// DefaultWALLimit is the walLimit of the state databases: their
// transactions are small, so the WAL of one is a few pages.
const DefaultWALLimit = 1 << 20

type connector struct {
	dsn string
	d   *sqlite3.SQLiteDriver
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.d }
