package profile

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/event"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// scenario is a golden scenario's input: events across dialects, in the
// order they arrive.
type scenario struct {
	Rule   string `json:"rule"`
	Events []struct {
		Key  string          `json:"key"`
		Time int64           `json:"time"`
		IDs  []string        `json:"ids"`
		Data json.RawMessage `json:"data"`
	} `json:"events"`
}

// TestScenarios folds each testdata/scenarios/*.events.json, event by
// event, and compares every profile with its .golden.json; then folds the
// same events in the reverse order and in one batch, which must give the
// same profiles.
func TestScenarios(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		files, _ := filepath.Glob("testdata/scenarios/*.events.json")
		if len(files) == 0 {
			t.Fatal("no scenarios")
		}
		for _, file := range files {
			name := strings.TrimSuffix(filepath.Base(file), ".events.json")
			t.Run(name, func(t *testing.T) {
				raw, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				var sc scenario
				if err := json.Unmarshal(raw, &sc); err != nil {
					t.Fatal(err)
				}
				var evs []*event.Event
				for i, e := range sc.Events {
					evs = append(evs, ev(event.ID(1+i), 1, e.Key, e.Time, string(e.Data), e.IDs...))
				}
				fold := func(batches ...[]*event.Event) string {
					s := be.open(t)
					for _, b := range batches {
						apply(t, s, b...)
					}
					return dump(t, s, 1)
				}
				var one [][]*event.Event
				for _, e := range evs {
					one = append(one, []*event.Event{e})
				}
				got := fold(one...)
				var rev [][]*event.Event
				for i := len(evs) - 1; i >= 0; i-- {
					rev = append(rev, []*event.Event{evs[i]})
				}
				if r := fold(rev...); r != got {
					t.Fatalf("arriving in reverse order gives other profiles:\n%s\nnot\n%s", r, got)
				}
				if b := fold(evs); b != got {
					t.Fatalf("in one batch the profiles differ:\n%s\nnot\n%s", b, got)
				}
				golden := "testdata/scenarios/" + name + ".golden.json"
				if *update {
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (go test ./internal/profile -run Scenarios -update)", err)
				}
				if !bytes.Equal([]byte(got), want) {
					t.Fatalf("%s: %s\n got %s\nwant %s", name, sc.Rule, got, want)
				}
			})
		}
	})
}
