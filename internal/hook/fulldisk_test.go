package hook

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/tmpfs"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A batch the target took while hooks.db's disk is full cannot be
// recorded as delivered. The hook keeps running: once the state can be
// written again the batch is recorded (not sent again) and the events
// after it are delivered, without a restart.
func TestAFullHooksDiskRecoversWithoutRestart(t *testing.T) {
	dir := tmpfs.Mount(t, 4<<20, "a hook recovering by itself after hooks.db's disk was full")
	logs := &syncBuffer{}
	f := newFixtureWith(t, true, func(f *fixture) {
		f.hooksPath = filepath.Join(dir, "hooks.db")
		f.logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	arrived, filled := make(chan struct{}), make(chan struct{})
	rc := newReceiver(t, func(n int, r *http.Request) (int, string, map[string]string) {
		if n == 2 { // the disk fills while the target has the batch
			arrived <- struct{}{}
			<-filled
		}
		return 200, "ok", nil
	})
	hk := httpHook(rc.URL)
	hk.MaxBatchSize = 1
	h, err := f.m.Create(context.Background(), hk, Start{})
	if err != nil {
		t.Fatal(err)
	}
	ids := f.appendEvents("in.gen.calltrack.call", 7, 1)
	waitFor(t, "the first delivery recorded", func() bool { g, _ := f.m.Get(h.ID); return g.Cursor == ids[0] })

	ids = append(ids, f.appendEvents("in.gen.calltrack.call", 7, 1)...)
	<-arrived
	free := tmpfs.Fill(t, dir)
	close(filled)
	waitFor(t, "the failed commit", func() bool { return strings.Contains(logs.String(), "commit delivered batch") })
	time.Sleep(100 * time.Millisecond)
	if g, _ := f.m.Get(h.ID); g.Cursor != ids[0] || !g.Active {
		t.Fatalf("on a full disk: cursor %s (want %s), active %v", g.Cursor, ids[0], g.Active)
	}

	free()
	ids = append(ids, f.appendEvents("in.gen.calltrack.call", 7, 1)...)
	waitFor(t, "the third event", func() bool { return len(rc.requests()) >= 3 })
	waitFor(t, "the cursor past the third event", func() bool { g, _ := f.m.Get(h.ID); return g.Cursor == ids[2] })
	reqs := rc.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (the batch taken on the full disk is not sent again)", len(reqs))
	}
	for i, r := range reqs {
		if len(r.msgs) != 1 || r.msgs[0]["id"] != ids[i].String() {
			t.Fatalf("request %d: %v, want event %s", i, r.msgs, ids[i])
		}
	}
	if d, _ := f.m.Deliveries(context.Background(), h.ID, 10); len(d) != 3 || d[1].Status != 200 {
		t.Fatalf("attempt log %+v", d)
	}
}
