package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/internal/pgtest"
)

// withPassword puts a password into a pgtest DSN (the test server trusts
// loopback and ignores it), for the checks that no output shows it.
func withPassword(dsn, pw string) string {
	return strings.Replace(dsn, "postgres@", "postgres:"+pw+"@", 1)
}

// One node on storage postgres: events are committed to PostgreSQL before
// the 2xx, survive a restart, and the DSN's password is shown nowhere.
func TestServeWithPostgresLog(t *testing.T) {
	ctx := context.Background()
	const pw = "s3cret-dsn-password"
	dsn := withPassword(pgtest.Start(t), pw)
	env := []string{"SLUICE_STORAGE=postgres", "SLUICE_POSTGRES_DSN=" + dsn}
	dir := t.TempDir()
	s := startServerEnv(t, dir, env)
	if !strings.Contains(s.out.String(), "events  PostgreSQL (postgres.dsn)") {
		t.Errorf("the banner does not say where the events go:\n%s", s.out.String())
	}
	r := do(t, "GET", s.ingest+"/crm/lead/0?x=1", "", "")
	if r.status != 200 {
		t.Fatalf("ingest: %d %s", r.status, r.body)
	}
	var ans struct{ ID string }
	if err := json.Unmarshal(r.body, &ans); err != nil || ans.ID == "" {
		t.Fatalf("answer %s", r.body)
	}
	// Answered, so committed to PostgreSQL.
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var id int64
	var key string
	if err := db.QueryRow(ctx, "SELECT id, key FROM events").Scan(&id, &key); err != nil || key != "in.gen.crm.lead" {
		t.Fatalf("in PostgreSQL: %d %q, %v", id, key, err)
	}
	if ans.ID != strconv.FormatInt(id, 10) {
		t.Fatalf("answered id %s, stored %d", ans.ID, id)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, s.errOut.String())
	}
	first := s.out.String() + s.errOut.String()

	s = startServerEnv(t, dir, env)
	evs := s.events(t, "")
	if len(evs) != 1 || evs[0].ID.String() != ans.ID || evs[0].Key != "in.gen.crm.lead" || string(evs[0].Data) != `{"x":"1"}` {
		t.Fatalf("after a restart the API reads %+v", evs)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{first, s.out.String() + s.errOut.String()} {
		if strings.Contains(out, pw) || strings.Contains(out, dsn) {
			t.Fatalf("the output shows the DSN:\n%s", out)
		}
	}
}

// A PostgreSQL whose commits can be lost stops the start, unless the
// operator allows it; the error says how, and shows no DSN.
func TestServeRefusesSynchronousCommitOff(t *testing.T) {
	const pw = "another-s3cret"
	dsn := withPassword(pgtest.Start(t), pw)
	db := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(context.Background(), "ALTER DATABASE "+db+" SET synchronous_commit = off"); err != nil {
		t.Fatal(err)
	}
	c.Close(context.Background())
	env := []string{"SLUICE_STORAGE=postgres", "SLUICE_POSTGRES_DSN=" + dsn, "SLUICE_ADMIN_TOKEN=" + testAdminToken}
	args := []string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", t.TempDir()}
	stdout, stderr, code := sluice(t, env, args...)
	if code == 0 || !strings.Contains(stderr, "synchronous_commit off") || !strings.Contains(stderr, "postgres.allow_synchronous_commit_off") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, pw) {
		t.Fatalf("the output shows the DSN:\n%s%s", stdout, stderr)
	}
	s := startServerEnv(t, t.TempDir(), env[:2], "--postgres-allow-synchronous-commit-off")
	if r := do(t, "GET", s.ingest+"/crm/lead/0?x=1", "", ""); r.status != 200 {
		t.Fatalf("ingest with synchronous_commit off allowed: %d %s", r.status, r.body)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.errOut.String()+s.out.String(), "allowed by postgres.allow_synchronous_commit_off") {
		t.Fatalf("no warning:\n%s", s.errOut.String())
	}
}
