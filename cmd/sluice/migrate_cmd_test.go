package main

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/pgtest"
)

// Plain `sluice migrate` brings an empty database to this binary's schema
// (every component at its latest version), does nothing the second time,
// refuses a database whose schema is newer than the binary, and says what
// is wrong without the DSN's password; a node then starts on the database.
func TestMigrateBringsTheSchemaUpToDate(t *testing.T) {
	if out, errOut, code := sluice(t, []string{"SLUICE_POSTGRES_DSN="}, "migrate"); code == 0 || !strings.Contains(errOut, "no database: set postgres.dsn") {
		t.Fatalf("migrate without a database: exit %d\n%s%s", code, out, errOut)
	}
	dsn := pgtest.Start(t)
	env := []string{"SLUICE_POSTGRES_DSN=" + dsn}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	versions := func() map[string]string {
		t.Helper()
		rows, err := conn.Query(ctx, "SELECT component, version, applied_at FROM schema_migrations ORDER BY component")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for rows.Next() {
			var c string
			var v int
			var at time.Time
			if err := rows.Scan(&c, &v, &at); err != nil {
				t.Fatal(err)
			}
			got[c] = strconv.Itoa(v) + " " + at.String()
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		return got
	}
	for range 2 {
		out, errOut, code := sluice(t, env, "migrate")
		if code != 0 || out != "the PostgreSQL schema is up to date\n" {
			t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
		}
	}
	got := versions()
	comps := app.AllMigrations()
	if len(got) != len(comps) {
		t.Fatalf("schema_migrations %v, want %d components", got, len(comps))
	}
	for _, c := range comps {
		ms, err := c.Migrations()
		if err != nil {
			t.Fatal(err)
		}
		if v, _, _ := strings.Cut(got[c.Name], " "); v != strconv.Itoa(len(ms)) {
			t.Errorf("%s at version %s, want %d", c.Name, v, len(ms))
		}
	}
	// A node starts on it and migrates nothing again.
	s := startServerEnv(t, t.TempDir(), env, "--storage", "postgres")
	if r := do(t, "GET", s.ingest+"/calltrack/call/0?n=1", "", ""); r.status != 200 {
		t.Fatalf("ingest on the migrated database: %d %s", r.status, r.body)
	}
	s.stop()
	if again := versions(); strings.Join(mapLines(again), ",") != strings.Join(mapLines(got), ",") {
		t.Fatalf("versions changed by a start: %v, then %v", got, again)
	}
	// A schema newer than the binary's is refused, and nothing changes.
	if _, err := conn.Exec(ctx, "UPDATE schema_migrations SET version = version + 1 WHERE component = $1", comps[0].Name); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := sluice(t, env, "migrate")
	if code == 0 || !strings.Contains(errOut, "newer than this binary's") || strings.Contains(out+errOut, dsn) {
		t.Fatalf("migrate of a newer schema: exit %d\n%s%s", code, out, errOut)
	}
	// An unreachable database: the error, not the password.
	bad := "postgres://sluice:s3cret-pw@127.0.0.1:1/sluice?connect_timeout=2"
	out, errOut, code = sluice(t, []string{"SLUICE_POSTGRES_DSN=" + bad}, "migrate")
	if code == 0 || errOut == "" || strings.Contains(out+errOut, "s3cret-pw") {
		t.Fatalf("migrate of an unreachable database: exit %d\n%s%s", code, out, errOut)
	}
}

func mapLines(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
