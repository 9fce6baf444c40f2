package pgmigrate

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func pool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), pgtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Two migrations that fail when applied twice (no IF NOT EXISTS).
var things = Component{Name: "things", FS: fstest.MapFS{
	"1_create.sql":   {Data: []byte("CREATE TABLE things (id bigint PRIMARY KEY); INSERT INTO things VALUES (1);")},
	"2_add_name.sql": {Data: []byte("ALTER TABLE things ADD COLUMN name text NOT NULL DEFAULT 'one';")},
}}

func version(t *testing.T, db Querier, name string) int {
	t.Helper()
	v, err := Version(context.Background(), db, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestApplyOnceAndAgain(t *testing.T) {
	ctx := context.Background()
	db := pool(t)
	if v := version(t, db, "things"); v != 0 {
		t.Fatalf("version before any migration: %d", v)
	}
	for range 2 {
		if err := Apply(ctx, db, things); err != nil {
			t.Fatal(err)
		}
	}
	var name string
	if err := db.QueryRow(ctx, "SELECT name FROM things WHERE id = 1").Scan(&name); err != nil || name != "one" {
		t.Fatalf("%q, %v", name, err)
	}
	if v := version(t, db, "things"); v != 2 {
		t.Fatalf("version %d, want 2", v)
	}
}

// Nodes that start together: each migration runs once, every Apply
// succeeds.
func TestConcurrentApply(t *testing.T) {
	db := pool(t)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = Apply(context.Background(), db, things)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if v := version(t, db, "things"); v != 2 {
		t.Fatalf("version %d", v)
	}
}

// An upgrade from the previous schema keeps the data.
func TestUpgradeFromPreviousVersion(t *testing.T) {
	ctx := context.Background()
	db := pool(t)
	if err := ApplyUpTo(ctx, db, things, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "INSERT INTO things VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	if v := version(t, db, "things"); v != 1 {
		t.Fatalf("version %d, want 1", v)
	}
	if err := Apply(ctx, db, things); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM things WHERE name = 'one'").Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d rows after the upgrade, %v", n, err)
	}
}

// A failed migration leaves the database as it was, the earlier
// migrations of the same Apply included.
func TestFailedMigrationLeavesNothing(t *testing.T) {
	ctx := context.Background()
	db := pool(t)
	bad := Component{Name: "bad", FS: fstest.MapFS{
		"1_create.sql": {Data: []byte("CREATE TABLE bad (id int);")},
		"2_broken.sql": {Data: []byte("ALTER TABLE nowhere ADD COLUMN x int;")},
	}}
	err := Apply(ctx, db, bad)
	if err == nil || !strings.Contains(err.Error(), "migrate bad to 2 (broken)") {
		t.Fatalf("error %v", err)
	}
	var missing bool
	if err := db.QueryRow(ctx, "SELECT to_regclass('bad') IS NULL").Scan(&missing); err != nil || !missing {
		t.Fatalf("table of migration 1 left behind (%v)", err)
	}
	if v := version(t, db, "bad"); v != 0 {
		t.Fatalf("version %d", v)
	}
}

// A binary older than the database refuses it.
func TestNewerDatabaseRefused(t *testing.T) {
	ctx := context.Background()
	db := pool(t)
	if err := Apply(ctx, db, things); err != nil {
		t.Fatal(err)
	}
	older := Component{Name: "things", FS: fstest.MapFS{"1_create.sql": things.FS.(fstest.MapFS)["1_create.sql"]}}
	if err := Apply(ctx, db, older); !errors.Is(err, ErrNewer) || !strings.Contains(err.Error(), "version 2, this binary knows 1") {
		t.Fatalf("error %v", err)
	}
}

func TestMigrationNames(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"gap":     {"1_a.sql": {}, "3_c.sql": {}},
		"no name": {"1.sql": {}},
		"not num": {"x_a.sql": {}},
		"zero":    {"0_a.sql": {}},
		"none":    {},
		"twice 1": {"1_a.sql": {}, "01_b.sql": {}},
	} {
		if _, err := (Component{Name: name, FS: fsys}).Migrations(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
