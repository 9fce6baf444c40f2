package ingest

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/internal/eventlog"
)

// Concurrent requests with the same hitId store exactly one event, and
// every answer names it.
func TestTrackConcurrentDuplicatesStoreOne(t *testing.T) {
	srv, l := goldenServer(t, trackClock)
	hit, err := os.ReadFile("../dialect/testdata/track_seed_example.json")
	if err != nil {
		t.Fatal(err)
	}
	const n = 24
	type answer struct {
		ID        string `json:"id"`
		Duplicate bool   `json:"duplicate"`
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest("POST", "/track", strings.NewReader(string(hit)))
			req.Header.Set("Authorization", "Basic YWJjMTIzOg==")
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != 200 {
				t.Errorf("status %d: %s", rec.Code, rec.Body)
				return
			}
			json.Unmarshal(rec.Body.Bytes(), &answers[i])
		}()
	}
	wg.Wait()
	stored := 0
	for _, a := range answers {
		if a.ID != answers[0].ID || a.ID == "" {
			t.Fatalf("answers name different ids: %+v", answers)
		}
		if !a.Duplicate {
			stored++
		}
	}
	recs, err := l.Read(context.Background(), eventlog.Query{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if stored != 1 || len(recs) != 1 || recs[0].ID.String() != answers[0].ID {
		t.Fatalf("%d answers without duplicate, %d stored", stored, len(recs))
	}
}
