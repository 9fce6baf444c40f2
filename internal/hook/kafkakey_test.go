package hook

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/identity"
	"github.com/sluicehq/sluice/internal/profile"
	"github.com/sluicehq/sluice/internal/sink/kafkasink"
)

// A Kafka hook's default record key is the user's resolved profile id,
// so one user's events share a partition whatever identity they came
// with; an event of no known user is keyed by its id.
func TestKafkaKeyIsTheResolvedProfile(t *testing.T) {
	f := newFixture(t, true)
	ps, err := profile.Open(filepath.Join(f.dir, "profiles.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	f.m.Close()
	f.profiles = ps
	f.open(true)
	now := time.Now().UnixMilli()
	user := &event.Event{ID: 1, Key: "in.s2s.user", Channel: event.ChannelHTTP, Service: "s2s", Name: "user", ProjectID: 7, Time: now, Dialect: "s2s",
		ReceivedAt: now, Data: json.RawMessage(`{"type":"user","id":"m1","time":1}`),
		Identities: []event.Identity{{Type: identity.TypeCustomUserID, Value: "alice"}, {Type: identity.TypeMetrixUserID, Value: "dev-1"}}}
	if err := ps.Apply(context.Background(), "test", 1, []*event.Event{user}); err != nil {
		t.Fatal(err)
	}
	alice, err := ps.Find(context.Background(), 7, identity.TypeCustomUserID, "alice")
	if err != nil {
		t.Fatal(err)
	}

	c := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "keys"))
	defer c.Close()
	pid := uint32(7)
	h := brokerHook(TypeKafka)
	h.ProjectID = &pid
	h.Settings = &kafkasink.Settings{Brokers: c.ListenAddrs(), Topic: "keys"}
	if _, err := f.m.Create(context.Background(), h, Start{}); err != nil {
		t.Fatal(err)
	}
	var evs []*event.Event
	for i, id := range []event.Identity{{Type: identity.TypeCustomUserID, Value: "alice"}, {Type: identity.TypeMetrixUserID, Value: "dev-1"}, {Type: identity.TypeCustomUserID, Value: "bob"}} {
		evs = append(evs, &event.Event{Key: "in.gen.calltrack.call", Channel: event.ChannelHTTP, Service: "calltrack", Name: "call", ProjectID: 7,
			Data: json.RawMessage(`{"n":` + itoa(i) + `}`), Time: now, Dialect: "webhook", ReceivedAt: now, Identities: []event.Identity{id}})
	}
	res, err := f.log.Append(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("keys"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	keys := map[string]string{} // event id → record key
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(keys) < 3 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == "sluice-event-id" {
					keys[string(h.Value)] = string(r.Key)
				}
			}
		})
	}
	want := []string{alice.ID, alice.ID, res[2].ID.String()}
	for i, r := range res {
		if keys[r.ID.String()] != want[i] {
			t.Fatalf("event %d keyed %q, want %q (all: %v)", i, keys[r.ID.String()], want[i], keys)
		}
	}
}
