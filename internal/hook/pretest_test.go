package hook

import (
	"context"
	"strings"
	"testing"
)

// The pre-test without a sample sends the newest stored event the hook
// takes among the newest PretestExamine events of the log, skipping other
// projects' and non-matching ones; beyond them it sends a synthetic one.
func TestPreTestLooksAtTheNewestEventsOfTheLog(t *testing.T) {
	f := newFixture(t, true)
	rc := newReceiver(t, nil)
	pid := uint32(7)
	hk := httpHook(rc.URL)
	hk.Active, hk.ProjectID, hk.Filter = false, &pid, "event.data.amount < 100"
	h, err := f.m.Create(context.Background(), hk, Start{})
	if err != nil {
		t.Fatal(err)
	}
	sent := func() string {
		t.Helper()
		res, err := f.m.Test(context.Background(), h.ID, nil)
		if err != nil || !res.Delivered {
			t.Fatalf("%+v %v", res, err)
		}
		if res.Event == "synthetic" {
			return "synthetic"
		}
		return res.Event + " " + res.Request.Body[strings.Index(res.Request.Body, `"data":`):strings.Index(res.Request.Body, `,"id"`)]
	}
	f.appendEvents("in.gen.calltrack.call", 7, 3)
	if got := sent(); got != `stored "data":{"amount":2,"city":"Moscow"}` {
		t.Fatalf("newest of three: %s", got)
	}
	f.appendEvents("in.gen.calltrack.call", 8, 3) // another project
	f.appendEvents("in.gen.other.call", 7, 3)     // another key
	if got := sent(); got != `stored "data":{"amount":2,"city":"Moscow"}` {
		t.Fatalf("after others: %s", got)
	}
	// The matching events fall out of the newest PretestExamine.
	f.appendEvents("in.gen.other.call", 7, PretestExamine-7) // amount 2 is the PretestExamine-th newest
	if got := sent(); got != `stored "data":{"amount":2,"city":"Moscow"}` {
		t.Fatalf("at the edge: %s", got)
	}
	f.appendEvents("in.gen.other.call", 7, 1)
	if got := sent(); got != "synthetic" {
		t.Fatalf("beyond the edge: %s", got)
	}
	ids := f.appendEvents("in.gen.calltrack.call", 7, 150) // amounts 0..149: the newest that matches is 99
	if got := sent(); got != `stored "data":{"amount":99,"city":"Moscow"}` {
		t.Fatalf("newest match: %s (head %v)", got, ids[len(ids)-1])
	}
}
