package hook

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/internal/sink/httpsink"
	"github.com/sluicehq/sluice/internal/sink/kafkasink"
)

// Definitions of every type read the same from JSON and from YAML, and
// write back as they always have: the settings under their key, right
// after "type".
func TestDefinitionsReadAndWriteAsBefore(t *testing.T) {
	f := newFixture(t, true)
	for _, c := range []struct{ json, yaml string }{
		{`{"name":"h","events":["in.*"],"type":"http","http":{"url":"https://crm.example.com/in","timeout":"5s","headers":{"X-Version":"2"},"auth":{"type":"basic","username":"u","password":"pw"},"success_regex":"ok"}}`,
			"name: h\nevents: [in.*]\ntype: http\nhttp:\n  url: https://crm.example.com/in\n  timeout: 5s\n  headers: {X-Version: 2}\n  auth: {type: basic, username: u, password: pw}\n  success_regex: ok\n"},
		{`{"name":"q","events":["in.*"],"type":"rabbitmq_queue","rabbitmq":{"host":"mq.example.com","port":5671,"username":"u","password":"pw","tls":true,"queue":"events","timeout":"3s"}}`,
			"name: q\nevents: [in.*]\ntype: rabbitmq_queue\nrabbitmq: {host: mq.example.com, port: 5671, username: u, password: pw, tls: true, queue: events, timeout: 3s}\n"},
		{`{"name":"x","events":["in.*"],"type":"rabbitmq_exchange","rabbitmq":{"host":"mq.example.com","username":"u","exchange":"ev","exchange_type":"topic","durable":false,"routing_key":"{{event.key}}","timeout":"3s"}}`,
			"name: x\nevents: [in.*]\ntype: rabbitmq_exchange\nrabbitmq: {host: mq.example.com, username: u, exchange: ev, exchange_type: topic, durable: false, routing_key: '{{event.key}}', timeout: 3s}\n"},
		{`{"name":"k","events":["in.*"],"type":"kafka","kafka":{"brokers":["k1.example.com:9092","k2.example.com:9092"],"topic":"events","key":"{{event.id}}","compression":"zstd","sasl":"scram-sha-256","username":"u","password":"pw","timeout":"3s"}}`,
			"name: k\nevents: [in.*]\ntype: kafka\nkafka:\n  brokers: [k1.example.com:9092, k2.example.com:9092]\n  topic: events\n  key: '{{event.id}}'\n  compression: zstd\n  sasl: scram-sha-256\n  username: u\n  password: pw\n  timeout: 3s\n"},
	} {
		var fromJSON, fromYAML Hook
		if err := json.Unmarshal([]byte(c.json), &fromJSON); err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal([]byte(c.yaml), &fromYAML); err != nil {
			t.Fatal(err)
		}
		var out [2]string
		for i, h := range []Hook{fromJSON, fromYAML} {
			if err := f.m.dests.Resolve(&h); err != nil {
				t.Fatalf("%s: %v", c.json, err)
			}
			b, err := json.Marshal(h)
			if err != nil {
				t.Fatal(err)
			}
			out[i] = string(b)
		}
		if out[0] != out[1] {
			t.Fatalf("JSON and YAML differ:\n%s\n%s", out[0], out[1])
		}
		// The settings as given, in the JSON written back, after "type".
		var in map[string]json.RawMessage
		json.Unmarshal([]byte(c.json), &in)
		var typ string
		json.Unmarshal(in["type"], &typ)
		section := map[string]string{"http": "http", "rabbitmq_queue": "rabbitmq", "rabbitmq_exchange": "rabbitmq", "kafka": "kafka"}[typ]
		if !strings.Contains(out[0], `"type":"`+typ+`","`+section+`":`+string(in[section])+`,"max_batch_size":`) {
			t.Fatalf("written back:\n%s\nwant the section as given:\n%s", out[0], in[section])
		}
		// Created, it is returned the same with defaults and without
		// its password.
		created, err := f.m.Create(context.Background(), fromJSON, Start{})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(created)
		if strings.Contains(string(b), `"pw"`) || !strings.Contains(string(b), `"`+section+`":{`) {
			t.Fatalf("created %s", b)
		}
	}
}

// Unknown keys are refused as the strict decoders refuse them: a scalar
// at once, an object when the destinations resolve it.
func TestUnknownKeys(t *testing.T) {
	var h Hook
	if err := json.Unmarshal([]byte(`{"name":"x","batch_size":5}`), &h); err == nil || err.Error() != `batch_size: unknown field` {
		t.Fatalf("json: %v", err)
	}
	if err := yaml.Unmarshal([]byte("name: x\nbatch_size: 5\n"), &h); err == nil || !strings.Contains(err.Error(), "line 2: field batch_size not found") {
		t.Fatalf("yaml: %v", err)
	}
	var s Spec
	if err := yaml.Unmarshal([]byte("id: a\nsigning_secret: whsec_x\nstart_from: now\nname: x\nhttp: {url: 'http://x/'}\n"), &s); err != nil ||
		s.ID != "a" || s.SigningSecret != "whsec_x" || s.StartFrom != "now" || s.Name != "x" || len(s.sections) != 1 {
		t.Fatalf("spec %+v %v", s, err)
	}
}

// Secrets sealed by a version before destinations (password and token
// beside the signing secrets) still authenticate after an upgrade.
func TestSecretsSealedByAnEarlierVersion(t *testing.T) {
	f := newFixture(t, true)
	rc := newReceiver(t, nil)
	h := httpHook(rc.URL)
	httpOf(&h).Auth = &httpsink.Auth{Type: "bearer"}
	if err := f.m.dests.Resolve(&h); err != nil {
		t.Fatal(err)
	}
	f.m.defaults(&h)
	h.ID = "hk_old"
	legacy, _ := json.Marshal(map[string]any{"token": "old-token", "signing": []string{NewSecret()}})
	nonce := make([]byte, f.m.seal.aead.NonceSize())
	rand.Read(nonce)
	sh, err := f.m.seal.stored(&row{hook: h, secrets: secrets{Signing: []string{NewSecret()}}})
	if err != nil {
		t.Fatal(err)
	}
	sh.Secrets = f.m.seal.aead.Seal(nonce, nonce, legacy, nil)
	if err := f.m.store.Insert(context.Background(), sh); err != nil {
		t.Fatal(err)
	}
	f.m.Close()
	f.open(true)
	f.appendEvents("in.gen.calltrack.call", 7, 1)
	waitFor(t, "a delivery", func() bool { return len(rc.requests()) == 1 })
	if got := rc.requests()[0].header.Get("Authorization"); got != "Bearer old-token" {
		t.Fatalf("Authorization %q", got)
	}
}

// A stored hook whose type is no longer registered is kept as stored,
// stopped, with the reason; it is shown with its settings as they were.
func TestAStoredHookOfAnUnknownTypeIsStoppedAndKept(t *testing.T) {
	f := newFixture(t, true)
	h := brokerHook(TypeKafka)
	h.Settings = &kafkasink.Settings{Brokers: []string{"127.0.0.1:1"}, Topic: "t"}
	created, err := f.m.Create(context.Background(), h, Start{})
	if err != nil {
		t.Fatal(err)
	}
	f.m.Close()
	cfg := Config{Path: filepath.Join(f.dir, "hooks.db"), KeyPath: filepath.Join(f.dir, "hooks.key"), Destinations: testDestinations()[:1]}
	m, err := Open(cfg, f.log, f.ps, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Start(context.Background())
	f.m = m
	g, err := m.Get(created.ID)
	if err != nil || g.Active || !strings.Contains(g.StoppedReason, "the definition is no longer valid") || !strings.Contains(g.StoppedReason, "type: http") {
		t.Fatalf("%+v %v", g, err)
	}
	b, err := json.Marshal(g)
	if err != nil || !strings.Contains(string(b), `"type":"kafka","kafka":{"brokers":["127.0.0.1:1"],"topic":"t"`) {
		t.Fatalf("%s %v", b, err)
	}
}
