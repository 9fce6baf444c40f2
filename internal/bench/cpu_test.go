package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The CPU time of this process grows by about what a loop burns, and
// that of a process that does not exist is an error.
func TestProcessCPU(t *testing.T) {
	before, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var sum [32]byte
	for time.Since(start) < 300*time.Millisecond {
		sum = sha256.Sum256(sum[:])
	}
	after, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Loaded machine: the loop may get less than its wall time, never
	// more than every core of it.
	if d := after - before; d < 50*time.Millisecond || d > time.Duration(8)*time.Since(start) {
		t.Fatalf("cpu grew %v over a %v loop", d, time.Since(start))
	}
	if _, err := ProcessCPU(1 << 30); err == nil || !strings.Contains(err.Error(), "server cpu") {
		t.Fatalf("missing process: %v", err)
	}
}

func TestServerPIDFromRunJSON(t *testing.T) {
	dir := t.TempDir()
	if _, err := ServerPID(dir); err == nil || !strings.Contains(err.Error(), "--data-dir "+dir) {
		t.Fatalf("no run.json: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "run.json"), []byte(`{"pid": 4242, "ingest": "http://127.0.0.1:8080"}`), 0o600)
	if pid, err := ServerPID(dir); err != nil || pid != 4242 {
		t.Fatalf("pid %d, %v", pid, err)
	}
	os.WriteFile(filepath.Join(dir, "run.json"), []byte(`{}`), 0o600)
	if _, err := ServerPID(dir); err == nil {
		t.Fatal("run.json without a pid accepted")
	}
}

// A paced run sends at the rate asked over every connection, never
// ahead of it, then an unpaced run of the same target follows; with the
// server's pid (this process, which serves the target) each reports the
// server's CPU and CPU per event, and the report their ratio.
func TestPacedRunAndSaturation(t *testing.T) {
	var mu sync.Mutex
	var sent []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		sent = append(sent, time.Now())
		mu.Unlock()
	}))
	defer srv.Close()
	cfg := Config{URL: srv.URL, Connections: 4, Duration: time.Second, Rate: 50, Saturation: true, ServerPID: os.Getpid()}
	t0 := time.Now() // the paced run starts after this
	results, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || results[0].Name != "target" || results[1].Name != "saturation" {
		t.Fatalf("results %+v", results)
	}
	paced, sat := results[0], results[1]
	// 50/s for one second: the 50 requests due before the deadline; a
	// slow machine may send fewer, never more.
	if paced.Requests > 50 || paced.Requests < 25 || paced.Rate != 50 || sat.Rate != 0 {
		t.Fatalf("paced run sent %d (rate %v); saturation rate %v", paced.Requests, paced.Rate, sat.Rate)
	}
	if sat.Requests <= 2*paced.Requests {
		t.Fatalf("unpaced run sent %d, paced %d", sat.Requests, paced.Requests)
	}
	mu.Lock()
	first := append([]time.Time(nil), sent[:paced.Requests]...)
	mu.Unlock()
	slices.SortFunc(first, func(a, b time.Time) int { return a.Compare(b) })
	// Never ahead of the pace: the n-th to arrive not before n/50 s after
	// the run began (however late the first one was).
	for n, at := range first {
		if due := t0.Add(time.Duration(n) * 20 * time.Millisecond); at.Before(due) {
			t.Fatalf("request %d arrived %v after the start, due at %v", n, at.Sub(t0), due.Sub(t0))
		}
	}
	if sat.ServerCPU <= 0 || sat.CPUPerEvent != sat.ServerCPU/time.Duration(sat.Events) {
		t.Fatalf("saturation cpu %v per event %v over %d events", sat.ServerCPU, sat.CPUPerEvent, sat.Events)
	}
	var out bytes.Buffer
	Report(&out, cfg, results)
	for _, want := range []string{"(paced at 50 requests/s)", "saturation (the target unpaced)", "server cpu ", " per event"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, out.String())
		}
	}
	// CPU is counted in 10 ms ticks: a paced second may count none.
	if ratio := strings.Contains(out.String(), "ratio paced/saturation server cpu per event:"); ratio != (paced.ServerCPU > 0) {
		t.Fatalf("ratio printed %v with paced cpu %v:\n%s", ratio, paced.ServerCPU, out.String())
	}
}
