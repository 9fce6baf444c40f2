package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/tmpfs"
)

// startServerOnFullDisk is startServer for a data directory on a full
// disk, where the server cannot write run.json: it finds the listeners in
// the start banner instead.
func startServerOnFullDisk(t *testing.T, dir string) *server {
	t.Helper()
	s := &server{t: t, dir: dir, out: &syncBuffer{}, errOut: &syncBuffer{}, exited: make(chan error, 1)}
	s.cmd = exec.Command(os.Args[0], "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", dir, "--log-format", "json")
	s.cmd.Env = append(os.Environ(), "SLUICE_E2E_CHILD=1", "SLUICE_ADMIN_TOKEN="+testAdminToken)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.errOut
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() { s.kill() })
	ingest := regexp.MustCompile(`(?m)^  ingest  (\S+)`)
	admin := regexp.MustCompile(`(?m)^  admin   (\S+)`)
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := s.out.String()
		if i, a := ingest.FindStringSubmatch(out), admin.FindStringSubmatch(out); i != nil && a != nil {
			s.ingest, s.admin = i[1], a[1]
			return s
		}
		select {
		case err := <-s.exited:
			t.Fatalf("server on a full disk exited before listening: %v\nstderr:\n%s", err, s.errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start\nstderr:\n%s", s.errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readyz returns the status and the reason /readyz gives on both
// listeners, failing the test when they disagree (call it only when the
// server's state is not about to change).
func (s *server) readyz(t *testing.T) (int, string) {
	t.Helper()
	status, reason := s.readyzEach(t)
	if status[0] != status[1] || reason[0] != reason[1] {
		t.Fatalf("readyz: ingest %d (%s), admin %d (%s)", status[0], reason[0], status[1], reason[1])
	}
	return status[0], reason[0]
}

func (s *server) readyzEach(t *testing.T) (status [2]int, reason [2]string) {
	t.Helper()
	for i, base := range []string{s.ingest, s.admin} {
		r := do(t, "GET", base+"/readyz", "", "")
		var ans struct{ Status, Reason string }
		if err := json.Unmarshal(r.body, &ans); err != nil {
			t.Fatalf("readyz %s: %v: %s", base, err, r.body)
		}
		if (r.status == 200) != (ans.Status == "ready") || (r.status == 200) != (ans.Reason == "") {
			t.Fatalf("readyz %s: %d %s", base, r.status, r.body)
		}
		status[i], reason[i] = r.status, ans.Reason
	}
	return status, reason
}

// waitReady waits until /readyz is 200 on both listeners.
func (s *server) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, reason := s.readyzEach(t)
		if status == [2]int{200, 200} {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready 10s after space returned: %v\nstderr:\n%s", reason, s.errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric returns the value of one sample on /metrics.
func (s *server) metric(t *testing.T, sample string) float64 {
	t.Helper()
	r := do(t, "GET", s.admin+"/metrics", "", "")
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no %s on /metrics", sample)
	return 0
}

// fullDiskLoad posts ~1.6 KiB webhook events from senders goroutines
// until each got an answer other than 200, recording what was
// acknowledged; every refusal must be a 503 with Retry-After that stored
// nothing.
type fullDiskLoad struct {
	mu    sync.Mutex
	seq   int
	acked map[int]string // seq → id
}

func (l *fullDiskLoad) post(t *testing.T, s *server) int {
	l.mu.Lock()
	l.seq++
	n := l.seq
	l.mu.Unlock()
	body := fmt.Sprintf(`{"seq":%d,"pad":"%s"}`, n, strings.Repeat("x", 1600))
	req, _ := http.NewRequest("POST", s.ingest+"/disk/full/0", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("post: %v", err)
		return 0
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case 200:
		var ans struct{ ID string }
		if err := json.Unmarshal(b, &ans); err != nil || ans.ID == "" {
			t.Errorf("200 without an id: %s", b)
		}
		l.mu.Lock()
		l.acked[n] = ans.ID
		l.mu.Unlock()
	case 503:
		if resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "nothing was stored") {
			t.Errorf("503 without Retry-After or message: %v %s", resp.Header, b)
		}
	default:
		t.Errorf("post on a full disk: %d %s", resp.StatusCode, b)
	}
	return resp.StatusCode
}

// untilRefused posts from 16 senders until each one got a 503.
func (l *fullDiskLoad) untilRefused(t *testing.T, s *server) {
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100_000 {
				if status := l.post(t, s); status != 200 {
					return
				}
			}
			t.Error("the disk never filled up")
		}()
	}
	wg.Wait()
}

// check reads every event back through the admin API: each acknowledged
// one exactly once, with its id, and nothing else.
func (l *fullDiskLoad) check(t *testing.T, s *server, stage string) {
	t.Helper()
	stored := map[int]string{}
	for _, e := range s.events(t, "key=in.gen.disk.full") {
		var d struct{ Seq int }
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		if prev, dup := stored[d.Seq]; dup {
			t.Fatalf("%s: seq %d stored twice: %s and %s", stage, d.Seq, prev, e.ID)
		}
		stored[d.Seq] = e.ID.String()
	}
	for n, id := range l.acked {
		if stored[n] != id {
			t.Fatalf("%s: seq %d acknowledged as %s, stored as %q", stage, n, id, stored[n])
		}
	}
	if len(stored) != len(l.acked) {
		t.Fatalf("%s: %d stored, %d acknowledged (a 503 stored something)", stage, len(stored), len(l.acked))
	}
}

// The real server on a small tmpfs, loaded until the disk is full:
// ingest answers 503 and /readyz 503 with the reason on both listeners,
// the failures are counted, reads go on; once space returns the server
// takes events again without a restart; SIGTERM on the full disk exits 0;
// a start on the full disk serves reads and answers 503, and recovers when
// space returns. Every acknowledged event is stored exactly once.
func TestFullDiskEndToEnd(t *testing.T) {
	dir := tmpfs.Mount(t, 48<<20, "the server on a full disk (ingest and /readyz 503, the failure metric, recovery without restart, SIGTERM exit 0, a start on a full disk)")
	s := startServer(t, dir)
	if status, reason := s.readyz(t); status != 200 {
		t.Fatalf("readyz at start: %d %s", status, reason)
	}
	load := &fullDiskLoad{acked: map[int]string{}}

	// Leave the server 12 MiB, and let the load take them.
	free := tmpfs.Fill(t, dir)
	free()
	ballast := filepath.Join(dir, "ballast")
	if err := os.WriteFile(ballast, make([]byte, tmpfs.Free(t, dir)-12<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	load.untilRefused(t, s)
	if len(load.acked) < 1000 {
		t.Fatalf("only %d events fit in 12 MiB", len(load.acked))
	}
	// Whatever a checkpoint gave back, the disk stays full now.
	free = tmpfs.Fill(t, dir)
	for load.post(t, s) == 200 {
	}
	status, reason := s.readyz(t)
	if status != 503 || !strings.HasPrefix(reason, "event log: disk full; appends refused since ") {
		t.Fatalf("readyz on a full disk: %d %q", status, reason)
	}
	if n := s.metric(t, `sluice_log_append_failures_total{reason="disk_full"}`); n < 17 {
		t.Fatalf("append failures counted: %v, want at least 17", n)
	}
	load.check(t, s, "on the full disk")
	t.Logf("%d events acknowledged before the disk was full", len(load.acked))

	// Space returns: the server takes events again by itself.
	free()
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	s.waitReady(t)
	for i := range 50 {
		if status := load.post(t, s); status != 200 {
			t.Fatalf("post %d after recovery: %d", i, status)
		}
	}
	load.check(t, s, "after recovery")

	// SIGTERM on a full disk exits 0. The disk fills under load, so that
	// the last commits are most likely not checkpointed yet and the final
	// checkpoint fails (the sqlite package's TestFullDisk makes sure of
	// that case).
	filled := make(chan func())
	go func() { time.Sleep(20 * time.Millisecond); filled <- tmpfs.Fill(t, dir) }()
	load.untilRefused(t, s)
	free = <-filled
	for load.post(t, s) == 200 {
	}
	if err := s.stop(); err != nil {
		t.Fatalf("SIGTERM on a full disk: exit %v\nstderr:\n%s", err, s.errOut.String())
	}
	t.Logf("final checkpoint failed on the full disk: %v", strings.Contains(s.errOut.String(), "final checkpoint failed"))

	// A start on the full disk serves reads and refuses events.
	s = startServerOnFullDisk(t, dir)
	load.check(t, s, "started on the full disk")
	if status, reason := s.readyz(t); status != 503 || !strings.HasPrefix(reason, "event log: disk full; appends refused since ") {
		t.Fatalf("readyz after a start on a full disk: %d %q", status, reason)
	}
	if status := load.post(t, s); status != 503 {
		t.Fatalf("post after a start on a full disk: %d", status)
	}
	free()
	s.waitReady(t)
	if status := load.post(t, s); status != 200 {
		t.Fatalf("post after space returned: %d", status)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("SIGTERM: exit %v\nstderr:\n%s", err, s.errOut.String())
	}
	s = startServer(t, dir)
	load.check(t, s, "after a restart with space")
	if err := s.stop(); err != nil {
		t.Fatalf("SIGTERM: exit %v", err)
	}
}
