package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func setting(t *testing.T, c *pgx.Conn, name string) string {
	t.Helper()
	var v string
	if err := c.QueryRow(context.Background(), "SELECT current_setting($1)", name).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// Each test gets a database of its own, on a server that is as durable as
// production's.
func TestStartGivesFreshDatabases(t *testing.T) {
	ctx := context.Background()
	a, b := connect(t, Start(t)), connect(t, Start(t))
	for name, want := range map[string]string{"fsync": "on", "synchronous_commit": "on", "listen_addresses": "127.0.0.1", "server_version_num": "15"} {
		got := setting(t, a, name)
		if name == "server_version_num" {
			got = got[:2]
		}
		if got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	if _, err := a.Exec(ctx, "CREATE TABLE x (n int); INSERT INTO x VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'x'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the second database sees %d tables x (%v)", n, err)
	}
	var da, db string
	a.QueryRow(ctx, "SELECT current_database()").Scan(&da)
	b.QueryRow(ctx, "SELECT current_database()").Scan(&db)
	if da == db {
		t.Fatalf("both tests got database %s", da)
	}
}

// A server of the test's own keeps its data and port across a kill and a
// restart.
func TestServerRestartKeepsCommits(t *testing.T) {
	ctx := context.Background()
	s := NewServer(t)
	dsn := s.CreateDB(t)
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE x (n int); INSERT INTO x VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	s.Kill()
	if _, err := pgx.Connect(ctx, dsn); err == nil {
		t.Fatal("connected to a killed server")
	}
	start := time.Now()
	s.Restart(t)
	t.Logf("restarted in %s", time.Since(start))
	c = connect(t, dsn)
	var n int
	if err := c.QueryRow(ctx, "SELECT n FROM x").Scan(&n); err != nil || n != 7 {
		t.Fatalf("after restart: %d, %v", n, err)
	}
}
