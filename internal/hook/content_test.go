package hook

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/internal/event"
)

// include_content: the raw request rides along as "content" (base64 with
// content_encoding when it is not UTF-8), not when it is older than the
// content retention, and never for a hook without the option. Which
// projects keep raw requests follows the hooks that want them.
func TestIncludeContent(t *testing.T) {
	f := newFixture(t, true)
	if f.m.KeepContent(7) || f.m.KeepContent(8) {
		t.Fatal("raw requests kept with no hook asking")
	}
	with := newReceiver(t, nil)
	without := newReceiver(t, nil)
	pid := uint32(7)
	h := httpHook(with.URL)
	h.ProjectID, h.IncludeContent, h.MaxBatchSize = &pid, true, 10
	hk, err := f.m.Create(context.Background(), h, Start{})
	if err != nil {
		t.Fatal(err)
	}
	plain := httpHook(without.URL)
	plain.MaxBatchSize = 10
	if _, err := f.m.Create(context.Background(), plain, Start{}); err != nil {
		t.Fatal(err)
	}
	if !f.m.KeepContent(7) || f.m.KeepContent(8) {
		t.Fatal("KeepContent does not follow the hook's project")
	}
	now := time.Now().UnixMilli()
	batch := &event.Content{Body: []byte(`{"batch":[{"a":1},{"a":2}]}`), ReceivedAt: now}
	binary := &event.Content{Body: []byte{0xff, 0xfe, 'x'}, ReceivedAt: now}
	old := &event.Content{Body: []byte("amount=5"), ReceivedAt: time.Now().Add(-73 * time.Hour).UnixMilli()}
	mk := func(n int, c *event.Content) *event.Event {
		return &event.Event{Key: "in.gen.calltrack.call", Channel: event.ChannelHTTP, Service: "calltrack", Name: "call", ProjectID: 7,
			Data: json.RawMessage(`{"n":` + itoa(n) + `}`), Time: now, Dialect: "webhook", ReceivedAt: now, Content: c}
	}
	if _, err := f.log.Append(context.Background(), []*event.Event{mk(0, batch), mk(1, batch), mk(2, binary), mk(3, old), mk(4, nil)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "five messages each", func() bool { return countMsgs(with) == 5 && countMsgs(without) == 5 })
	var msgs []map[string]any
	for _, r := range with.requests() {
		msgs = append(msgs, r.msgs...)
	}
	for i, want := range []string{string(batch.Body), string(batch.Body)} {
		if msgs[i]["content"] != want || msgs[i]["content_encoding"] != nil {
			t.Fatalf("message %d content %v", i, msgs[i]["content"])
		}
	}
	if msgs[2]["content"] != base64.StdEncoding.EncodeToString(binary.Body) || msgs[2]["content_encoding"] != "base64" {
		t.Fatalf("binary content %v %v", msgs[2]["content"], msgs[2]["content_encoding"])
	}
	for _, i := range []int{3, 4} { // too old; none kept
		if _, ok := msgs[i]["content"]; ok {
			t.Fatalf("message %d has content %v", i, msgs[i]["content"])
		}
	}
	for _, r := range without.requests() {
		for _, m := range r.msgs {
			if _, ok := m["content"]; ok {
				t.Fatal("a hook without include_content got content")
			}
		}
	}
	// Turning the option off (or deleting the hook) stops keeping them.
	h.IncludeContent = false
	if _, err := f.m.Update(context.Background(), hk.ID, h); err != nil {
		t.Fatal(err)
	}
	if f.m.KeepContent(7) {
		t.Fatal("KeepContent after the option was turned off")
	}
}

func countMsgs(rc *receiver) int {
	n := 0
	for _, r := range rc.requests() {
		n += len(r.msgs)
	}
	return n
}

// Lag is the hook's scope after its cursor: counted, not capped, and the
// age of the oldest such event.
func TestLagCountsTheHooksScope(t *testing.T) {
	f := newFixture(t, true)
	rc := newReceiver(t, nil)
	pid := uint32(7)
	h := httpHook(rc.URL)
	h.ProjectID, h.Active = &pid, false
	hk, err := f.m.Create(context.Background(), h, Start{})
	if err != nil {
		t.Fatal(err)
	}
	f.appendEvents("in.gen.calltrack.call", 7, 12)
	f.appendEvents("in.gen.calltrack.call", 8, 5) // another project
	time.Sleep(20 * time.Millisecond)
	q, _ := f.m.lagQueryOf(hk.ID)
	f.m.measureLag(context.Background(), hk.ID, q)
	if n := testutil.ToFloat64(f.m.met.lagEvents.WithLabelValues(hk.ID)); n != 12 {
		t.Fatalf("lag %v events, want 12", n)
	}
	if s := testutil.ToFloat64(f.m.met.lagSeconds.WithLabelValues(hk.ID)); s < 0.01 || s > 5 {
		t.Fatalf("lag %v s", s)
	}
}
