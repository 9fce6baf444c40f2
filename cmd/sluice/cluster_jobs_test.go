package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/pgtest"
)

var leaseHeld = regexp.MustCompile(`(?m)^sluice_lease_held\{lease="([^"]+)"\} ([01])$`)

// jobs lists the cluster jobs (leases) s holds, by its metrics.
func (s *server) jobs(t *testing.T) map[string]bool {
	t.Helper()
	resp, err := client.Get(s.admin + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	held := map[string]bool{}
	for _, m := range leaseHeld.FindAllStringSubmatch(string(b), -1) {
		if m[2] == "1" {
			held[m[1]] = true
		}
	}
	return held
}

// The jobs that run once per cluster (the profile consumer, retention,
// content clean-up) run on one node at a time: of three nodes on one
// database, exactly one holds each; when it is SIGKILLed, one of the
// others takes each job over within 15 s, and still only one; the node
// restarted takes none back while they are held.
func TestClusterJobsRunOnOneNodeAtATime(t *testing.T) {
	if testing.Short() {
		t.Skip("three servers and a take-over: tens of seconds")
	}
	dsn := pgtest.Start(t)
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfg, []byte("storage: postgres\nretention: 1h\nhooks:\n  content_retention: 1h\n"), 0o600)
	env := []string{"SLUICE_POSTGRES_DSN=" + dsn}
	nodes, dirs := startNodes(t, 3, env, cfg)
	names := []string{"content-retention", "profiles", "retention"}
	// holders answers, for each job, the nodes (of those alive) that hold it.
	holders := func(alive []int) map[string][]int {
		out := map[string][]int{}
		for _, i := range alive {
			for job := range nodes[i].jobs(t) {
				out[job] = append(out[job], i)
			}
		}
		return out
	}
	once := func(alive []int, what string) map[string][]int {
		t.Helper()
		var h map[string][]int
		deadline := time.Now().Add(20 * time.Second)
		for {
			h = holders(alive)
			ok := len(h) == len(names)
			for _, n := range names {
				ok = ok && len(h[n]) == 1
			}
			if ok {
				return h
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: holders %v, want one node for each of %s", what, h, strings.Join(names, ", "))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	h := once([]int{0, 1, 2}, "at start")
	// It stays so: never two holders of one job.
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		for job, on := range holders([]int{0, 1, 2}) {
			if len(on) > 1 {
				t.Fatalf("%s held by nodes %v at once", job, on)
			}
		}
	}
	victim := h["retention"][0]
	nodes[victim].kill()
	var alive []int
	for i := range nodes {
		if i != victim {
			alive = append(alive, i)
		}
	}
	killed := time.Now()
	h = once(alive, "after the kill")
	for _, n := range names {
		if h[n][0] == victim {
			t.Fatalf("%s still on the killed node", n)
		}
	}
	if took := time.Since(killed); took > 15*time.Second {
		t.Fatalf("the jobs were taken over in %v, want within 15 s", took)
	}
	t.Logf("jobs taken over %v after the kill: %v", time.Since(killed).Round(time.Millisecond), h)
	// The node comes back: the jobs stay where they are.
	nodes[victim] = startServerEnv(t, dirs[victim], env, "--config", cfg, "--worker-id", strconv.Itoa(victim+1))
	time.Sleep(2 * time.Second)
	again := once([]int{0, 1, 2}, "after the restart")
	for _, n := range names {
		if again[n][0] != h[n][0] {
			t.Errorf("%s moved from node %d to %d when node %d came back", n, h[n][0], again[n][0], victim)
		}
	}
}
