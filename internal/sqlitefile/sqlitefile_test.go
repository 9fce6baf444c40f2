package sqlitefile

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/internal/tmpfs"
)

// A database closed cleanly can be opened and read again on a full disk
// when its files were kept; without them SQLite cannot even read it.
func TestReadAfterCleanCloseOnFullDisk(t *testing.T) {
	dir := tmpfs.Mount(t, 1<<20, "that a database closed cleanly stays readable on a full disk")
	for _, tc := range []struct {
		name     string
		open     func(dsn string) *sql.DB
		readable bool
	}{
		{"kept", func(dsn string) *sql.DB { return Open(dsn, DefaultWALLimit) }, true},
		{"plain", func(dsn string) *sql.DB { db, _ := sql.Open("sqlite3", dsn); return db }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := "file:" + filepath.Join(dir, tc.name+".db") + "?_journal_mode=WAL&_synchronous=FULL"
			db := tc.open(dsn)
			if _, err := db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES (randomblob(3000)), (randomblob(3000))"); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			free := tmpfs.Fill(t, dir)
			defer free()
			if n := tmpfs.Free(t, dir); n != 0 {
				t.Fatalf("%d bytes still free", n)
			}
			db = tc.open(dsn)
			defer db.Close()
			db.SetMaxOpenConns(1)
			var n int
			err := db.QueryRow("SELECT count(*) FROM t").Scan(&n)
			if tc.readable && (err != nil || n != 2) {
				t.Fatalf("read on a full disk: %d rows, %v", n, err)
			}
			if !tc.readable && err == nil {
				t.Fatal("a plain connection read on a full disk: the test no longer shows why files are kept")
			}
			// A statement that changes nothing writes nothing.
			if tc.readable {
				if _, err := db.Exec("CREATE TABLE IF NOT EXISTS t(x); INSERT INTO t SELECT 1 WHERE 0"); err != nil {
					t.Fatalf("no-op write on a full disk: %v", err)
				}
				if _, err := db.Exec("INSERT INTO t VALUES (randomblob(3000))"); err == nil {
					t.Fatal("a write succeeded on a full disk")
				}
			}
		})
	}
}
