package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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
	// The storage said only in the configuration file, as serve reads it.
	cfgFile := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfgFile, []byte("storage: postgres\npostgres:\n  dsn: "+dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"project", "list"}, {"events", "tail"}} {
		out, errOut, code := sluice(t, []string{"SLUICE_CONFIG=" + cfgFile, "SLUICE_DATA_DIR=" + dir}, args...)
		if code != 1 || !strings.Contains(errOut, "the CLI works through a node's admin API: pass --admin") || strings.Contains(out+errOut, dsn) {
			t.Fatalf("%v with storage postgres in SLUICE_CONFIG, no server: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db")); !os.IsNotExist(err) {
		t.Fatalf("the CLI made state.db in a postgres data dir: %v", err)
	}
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

// A hook created on one node a moment ago keeps its project from being
// deleted on another: the check reads the shared store, not the node's
// copy of the hooks.
func TestProjectWithAHookOnAnotherNodeIsNotDeleted(t *testing.T) {
	dsn := pgtest.Start(t)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfg, []byte("storage: postgres\n"), 0o600)
	nodes, _ := startNodes(t, 2, []string{"SLUICE_POSTGRES_DSN=" + dsn}, cfg)
	call := func(s *server, method, path, body string) response {
		return do(t, method, s.admin+path, "application/json", body, "Authorization", "Bearer "+testAdminToken)
	}
	if r := call(nodes[0], "POST", "/api/v1/projects", `{"id":6001,"name":"tenant"}`); r.status != 201 {
		t.Fatalf("project: %d %s", r.status, r.body)
	}
	// The project reaches node 1 within a second; the hook is made there
	// and the delete sent to node 0 at once.
	deadline := time.Now().Add(5 * time.Second)
	var h struct{ ID string }
	for {
		r := call(nodes[1], "POST", "/api/v1/hooks", `{"name":"t","events":["in.*"],"project_id":6001,"active":false,"http":{"url":"https://t.example.com/hook"}}`)
		if r.status == 201 {
			json.Unmarshal(r.body, &h)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hook on node 1: %d %s", r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := call(nodes[0], "DELETE", "/api/v1/projects/6001", "")
	var e struct{ Message string }
	json.Unmarshal(r.body, &e)
	if r.status != 409 || e.Message != "project 6001 has 1 hook(s) ("+h.ID+"): delete them, or give them another project, first" {
		t.Fatalf("delete on node 0: %d %s", r.status, r.body)
	}
}
