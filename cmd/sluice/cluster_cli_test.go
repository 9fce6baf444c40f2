package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/pgtest"
)

// With storage postgres the CLI does not write into a data directory (the
// state is in the database): without a server it says to use a node's
// admin API. admin-token reset resets the cluster's token in the
// database, and a node started after takes it.
func TestCLIWithStoragePostgres(t *testing.T) {
	dir := t.TempDir()
	env := []string{"SLUICE_STORAGE=postgres", "SLUICE_DATA_DIR=" + dir}
	out, errOut, code := sluice(t, env, "project", "list")
	if code != 1 || !strings.Contains(errOut, "the CLI works through a node's admin API: pass --admin") {
		t.Fatalf("project list on a postgres data dir without a server: exit %d\n%s%s", code, out, errOut)
	}
	dsn := pgtest.Start(t)
	env = append(env, "SLUICE_POSTGRES_DSN="+dsn)
	out, errOut, code = sluice(t, env, "admin-token", "reset")
	tok := regexp.MustCompile(`SLUICE_ADMIN_TOKEN=(sla_[0-9a-f]+)`).FindStringSubmatch(out)
	if code != 0 || tok == nil || strings.Contains(out+errOut, dsn) {
		t.Fatalf("admin-token reset: exit %d\n%s%s", code, out, errOut)
	}
	s := startServerEnv(t, dir, []string{"SLUICE_POSTGRES_DSN=" + dsn, "SLUICE_ADMIN_TOKEN="}, "--storage", "postgres")
	if r := do(t, "GET", s.admin+"/api/v1/projects", "", "", "Authorization", "Bearer "+tok[1]); r.status != 200 {
		t.Fatalf("the reset token on a node: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", s.admin+"/api/v1/projects", "", "", "Authorization", "Bearer "+testAdminToken); r.status != 401 {
		t.Fatalf("another token: %d", r.status)
	}
	if strings.Contains(s.out.String(), "Admin token (shown once") {
		t.Fatal("the node generated a token of its own")
	}
}
