package bench

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The floors answer only after their commit: once every request was
// answered, every body is stored, one row each.
func TestFloorsStoreEveryBodyBeforeAnswering(t *testing.T) {
	dsn := pgtest.Start(t)
	ctx := context.Background()
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	for _, kind := range Floors {
		t.Run(kind, func(t *testing.T) {
			f, err := startFloor(kind, t.TempDir(), dsn, 1)
			if err != nil {
				t.Fatal(err)
			}
			cfg := Config{URL: f.url, Connections: 16, Count: 800}
			results, err := Run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if r := results[0]; r.Requests != 800 || r.Errors != 0 {
				t.Fatalf("%+v", r)
			}
			var stored int
			switch kind {
			case FloorPostgres:
				var table string
				if err := db.QueryRow(ctx, "SELECT tablename FROM pg_tables WHERE tablename LIKE 'sluice_bench_floor_%'").Scan(&table); err != nil {
					t.Fatal(err)
				}
				var body []byte
				if err := db.QueryRow(ctx, "SELECT count(*), (SELECT body FROM "+table+" LIMIT 1) FROM "+table).Scan(&stored, &body); err != nil || string(body) != DefaultWebhookPayload {
					t.Fatalf("stored %d, body %q, %v", stored, body, err)
				}
			case FloorSQLite:
				stored = sqliteRows(t, f.dir)
			}
			if stored != 800 {
				t.Fatalf("%d bodies stored, 800 answered", stored)
			}
			f.Close()
			if kind == FloorPostgres {
				var n int
				if err := db.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'sluice_bench_floor_%'").Scan(&n); err != nil || n != 0 {
					t.Fatalf("%d floor tables left, %v", n, err)
				}
			}
		})
	}
}

// The postgres floor's DSN is a secret: the report never shows it, nor
// an error.
func TestPostgresFloorHidesItsDSN(t *testing.T) {
	dsn := strings.Replace(pgtest.Start(t), "postgres@", "postgres:floor-s3cret@", 1)
	cfg := Config{URL: "http://127.0.0.1:1", Connections: 2, Count: 10, Floor: FloorPostgres, FloorDSN: dsn}
	f, err := startFloor(FloorPostgres, "", dsn, 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg.URL = f.url // the floor stands in for the target too
	results, err := Run(context.Background(), cfg)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	Report(&out, cfg, results)
	if !strings.Contains(out.String(), "floor (postgres:") || strings.Contains(out.String(), "floor-s3cret") {
		t.Fatalf("report:\n%s", out.String())
	}
	if _, err := startFloor(FloorPostgres, "", "postgres://u:floor-s3cret@h:notaport/x", 1); err == nil || strings.Contains(err.Error(), "floor-s3cret") {
		t.Fatalf("bad DSN: %v", err)
	}
	if _, err := startFloor(FloorPostgres, "", "", 1); err == nil || !strings.Contains(err.Error(), "--floor-dsn") {
		t.Fatalf("no DSN: %v", err)
	}
}

// sqliteRows counts the SQLite floor's rows.
func sqliteRows(t *testing.T, dir string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "floor.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A batch's floor stores a row per event: the body cut in as many pieces.
func TestFloorStoresARowPerEvent(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	f, err := startFloor(FloorPostgres, "", dsn, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Run(ctx, Config{URL: f.url, Connections: 4, Count: 20, Payload: []byte("abcdefghijklmnopqrstu")}); err != nil {
		t.Fatal(err)
	}
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var table string
	if err := db.QueryRow(ctx, "SELECT tablename FROM pg_tables WHERE tablename LIKE 'sluice_bench_floor_%'").Scan(&table); err != nil {
		t.Fatal(err)
	}
	var n, short int
	if err := db.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE length(body) = 3) FROM "+table).Scan(&n, &short); err != nil || n != 140 || short != 140 {
		t.Fatalf("%d rows, %d of 3 bytes, %v; want 140", n, short, err)
	}
	if got := split([]byte("abcdefghij"), 3); len(got) != 3 || string(got[0])+string(got[1])+string(got[2]) != "abcdefghij" {
		t.Fatalf("split: %q", got)
	}
}
