package hook

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
)

// An erasure reaches the deliveries not yet made: a batch being retried
// sends the erased events no more, a batch of nothing but erased events
// is finished without a request, and a dead letter loses their messages
// (a replay sends the others).
func TestForgetReachesDeliveriesNotYetMade(t *testing.T) {
	f := newFixture(t, true)
	var down atomic.Bool
	down.Store(true)
	rc := newReceiver(t, func(n int, r *http.Request) (int, string, map[string]string) {
		if down.Load() {
			return 503, "down", nil
		}
		return 200, "ok", nil
	})
	h := httpHook(rc.URL)
	h.MaxBatchSize, h.RetryTimes, h.RetryPeriod = 3, intp(50), Duration(30*time.Millisecond)
	created, err := f.m.Create(context.Background(), h, Start{})
	if err != nil {
		t.Fatal(err)
	}
	ids := f.appendEvents("in.gen.calltrack.call", 7, 3)
	waitFor(t, "a failing attempt", func() bool { return len(rc.requests()) >= 1 })
	if err := f.m.Forget(context.Background(), 7, ids[1:2]); err != nil {
		t.Fatal(err)
	}
	down.Store(false)
	waitFor(t, "the batch delivered", func() bool {
		g, _ := f.m.Get(created.ID)
		return g.Cursor == ids[2]
	})
	last := rc.requests()[len(rc.requests())-1]
	if len(last.msgs) != 2 || last.msgs[0]["id"] != ids[0].String() || last.msgs[1]["id"] != ids[2].String() {
		t.Fatalf("delivered %v, want events %s and %s", last.msgs, ids[0], ids[2])
	}
	// A batch of erased events only: no request at all.
	before := len(rc.requests())
	down.Store(true)
	more := f.appendEvents("in.gen.calltrack.call", 7, 2)
	waitFor(t, "a failing attempt", func() bool { return len(rc.requests()) > before })
	f.m.Forget(context.Background(), 7, more)
	waitFor(t, "the erased batch finished", func() bool {
		g, _ := f.m.Get(created.ID)
		return g.Cursor == more[1]
	})
	n := len(rc.requests())
	time.Sleep(150 * time.Millisecond)
	if len(rc.requests()) != n {
		t.Fatal("the erased batch was sent again")
	}
}

func TestForgetEditsDeadLetters(t *testing.T) {
	f := newFixture(t, true)
	var down atomic.Bool
	down.Store(true)
	rc := newReceiver(t, func(n int, r *http.Request) (int, string, map[string]string) {
		if down.Load() {
			return 503, "down", nil
		}
		return 200, "ok", nil
	})
	h := httpHook(rc.URL)
	h.MaxBatchSize, h.RetryTimes = 3, intp(0)
	created, err := f.m.Create(context.Background(), h, Start{})
	if err != nil {
		t.Fatal(err)
	}
	ids := f.appendEvents("in.gen.calltrack.call", 7, 3)
	waitFor(t, "a dead letter", func() bool {
		dls, _ := f.m.DeadLetters(context.Background(), created.ID, DeadLetterQuery{})
		return len(dls) == 1
	})
	// Another project's event of the same id is not erased by this one.
	if err := f.m.Forget(context.Background(), 8, ids); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Forget(context.Background(), 7, []event.ID{ids[0], ids[2]}); err != nil {
		t.Fatal(err)
	}
	dls, _ := f.m.DeadLetters(context.Background(), created.ID, DeadLetterQuery{})
	if len(dls) != 1 || dls[0].Events != 1 {
		t.Fatalf("dead letters %+v", dls)
	}
	down.Store(false)
	if _, err := f.m.Replay(context.Background(), created.ID, DeadLetterQuery{}); err != nil {
		t.Fatal(err)
	}
	last := rc.requests()[len(rc.requests())-1]
	if len(last.msgs) != 1 || last.msgs[0]["id"] != ids[1].String() {
		t.Fatalf("replayed %v, want only %s", last.msgs, ids[1])
	}
}
