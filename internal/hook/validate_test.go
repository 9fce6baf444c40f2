package hook

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/project"
	"github.com/sluicehq/sluice/internal/sink/amqpsink"
	"github.com/sluicehq/sluice/internal/sink/httpsink"
	"github.com/sluicehq/sluice/internal/sink/kafkasink"
)

// Every field is checked when a hook is saved: each bad definition is
// refused with the path of the field at fault, and nothing is stored.
func TestBadDefinitionsAreRefusedWithTheirPath(t *testing.T) {
	f := newFixture(t, true)
	long := func(n int) string { return strings.Repeat("a", n) }
	rabbit := func(h *Hook) {
		h.Type, h.Settings = TypeRabbitMQQueue, nil
		h.Settings = &amqpsink.Settings{Host: "127.0.0.1", Username: "u", Queue: "q"}
	}
	kafka := func(h *Hook) {
		h.Type, h.Settings = TypeKafka, nil
		h.Settings = &kafkasink.Settings{Brokers: []string{"127.0.0.1:9092"}, Topic: "t"}
	}
	for _, c := range []struct {
		name string
		mut  func(h *Hook)
		path string
		msg  string // part of the message at path
	}{
		{"name empty", func(h *Hook) { h.Name = "" }, "name", "required"},
		{"name blank", func(h *Hook) { h.Name = "  " }, "name", "required"},
		{"name long", func(h *Hook) { h.Name = long(201) }, "name", "at most 200"},
		{"name newline", func(h *Hook) { h.Name = "a\nb" }, "name", "control character"},
		{"no events", func(h *Hook) { h.Events = nil }, "events", "at least one"},
		{"empty glob", func(h *Hook) { h.Events = []string{"in.*", ""} }, "events[1]", "empty"},
		{"too many globs", func(h *Hook) { h.Events = make([]string, 101); h.Events[0] = "in.*" }, "events", "at most 100"},
		{"filter syntax", func(h *Hook) { h.Filter = "event.data.amount >" }, "filter", "unexpected"},
		{"filter not bool", func(h *Hook) { h.Filter = `"text"` }, "filter", "bool"},
		{"filter long", func(h *Hook) { h.Filter = "true" + strings.Repeat(" ", 4096) }, "filter", "at most 4096 bytes"},
		{"filter 100M range", func(h *Hook) { h.Filter = "event.data.amount in 1..100000000" }, "filter", "100000000 elements; at most 1000"},
		{"filter 100M range in a predicate", func(h *Hook) { h.Filter = "any(1..100000000, # == event.data.amount)" }, "filter", "at most 1000"},
		{"filter dynamic range", func(h *Hook) { h.Filter = "len(0..event.data.amount) > 3" }, "filter", "literal bounds"},
		{"filter nested predicates", func(h *Hook) {
			h.Filter = "any(event.data.items, {any(event.data.items, {# == 1})})"
		}, "filter", "may not nest"},
		{"filter repeat", func(h *Hook) { h.Filter = `repeat(event.key, 1000000) != ""` }, "filter", "repeat() is not available"},
		{"filter too many nodes", func(h *Hook) { h.Filter = strings.Repeat("event.x==1||", 100) + "true" }, "filter", "exceeds maximum allowed nodes"},
		{"url unparsable", func(h *Hook) { httpOf(h).URL = "http://[::1" }, "http.url", "missing ']'"},
		{"url scheme", func(h *Hook) { httpOf(h).URL = "ftp://x" }, "http.url", "http:// or https://"},
		{"url no host", func(h *Hook) { httpOf(h).URL = "http:///path" }, "http.url", "no host"},
		{"url opaque", func(h *Hook) { httpOf(h).URL = "http:example.com" }, "http.url", "no host"},
		{"url credentials", func(h *Hook) { httpOf(h).URL = "https://user:pw@example.com/" }, "http.url", "set http.auth"},
		{"url port", func(h *Hook) { httpOf(h).URL = "http://example.com:70000/" }, "http.url", "port 70000"},
		{"url port zero", func(h *Hook) { httpOf(h).URL = "http://example.com:0/" }, "http.url", "port 0"},
		{"url bad host", func(h *Hook) { httpOf(h).URL = "http://exa$mple.com/" }, "http.url", "not a host name"},
		{"url fragment", func(h *Hook) { httpOf(h).URL = "http://example.com/#x" }, "http.url", "fragment"},
		{"url control", func(h *Hook) { httpOf(h).URL = "http://example.com/\n" }, "http.url", "control character"},
		{"url long", func(h *Hook) { httpOf(h).URL = "http://example.com/" + long(2048) }, "http.url", "at most 2048"},
		{"timeout", func(h *Hook) { httpOf(h).Timeout = Duration(time.Hour) }, "http.timeout", "1ms to 10m"},
		{"header CRLF", func(h *Hook) { httpOf(h).Headers = map[string]string{"X-Foo": "a\r\nX-Injected: 1"} }, `http.headers["X-Foo"]`, "CR, LF"},
		{"header NUL", func(h *Hook) { httpOf(h).Headers = map[string]string{"X-Foo": "a\x00"} }, `http.headers["X-Foo"]`, "control character"},
		{"header name", func(h *Hook) { httpOf(h).Headers = map[string]string{"X Foo": "a"} }, `http.headers["X Foo"]`, "not a header name"},
		{"header name colon", func(h *Hook) { httpOf(h).Headers = map[string]string{"X-Foo:": "a"} }, `http.headers["X-Foo:"]`, "not a header name"},
		{"header empty name", func(h *Hook) { httpOf(h).Headers = map[string]string{"": "a"} }, `http.headers[""]`, "not a header name"},
		{"header sluice sets", func(h *Hook) { httpOf(h).Headers = map[string]string{"webhook-signature": "v1,x"} }, `http.headers["webhook-signature"]`, "set by sluice"},
		{"header content-type", func(h *Hook) { httpOf(h).Headers = map[string]string{"content-type": "text/plain"} }, `http.headers["content-type"]`, "set by sluice"},
		{"header twice", func(h *Hook) { httpOf(h).Headers = map[string]string{"X-A": "1", "x-a": "2"} }, `http.headers["x-a"]`, "not case-sensitive"},
		{"header and auth", func(h *Hook) {
			httpOf(h).Headers = map[string]string{"Authorization": "Token x"}
			httpOf(h).Auth = &httpsink.Auth{Type: "bearer", Token: "t"}
		}, `http.headers["Authorization"]`, "set by http.auth"},
		{"header value long", func(h *Hook) { httpOf(h).Headers = map[string]string{"X-A": long(4097)} }, `http.headers["X-A"]`, "at most 4096"},
		{"too many headers", func(h *Hook) {
			httpOf(h).Headers = map[string]string{}
			for i := 0; i < 51; i++ {
				httpOf(h).Headers["X-"+itoa(i)] = "v"
			}
		}, "http.headers", "at most 50"},
		{"regex", func(h *Hook) { httpOf(h).SuccessRegex = "(" }, "http.success_regex", "missing closing )"},
		{"regex long", func(h *Hook) { httpOf(h).SuccessRegex = long(1025) }, "http.success_regex", "at most 1024"},
		{"auth type", func(h *Hook) { httpOf(h).Auth = &httpsink.Auth{Type: "digest"} }, "http.auth.type", "none, basic or bearer"},
		{"auth bearer token", func(h *Hook) { httpOf(h).Auth = &httpsink.Auth{Type: "bearer"} }, "http.auth.token", "required"},
		{"auth bearer token newline", func(h *Hook) { httpOf(h).Auth = &httpsink.Auth{Type: "bearer", Token: "a\r\nb"} }, "http.auth.token", "control character"},
		{"auth basic username", func(h *Hook) { httpOf(h).Auth = &httpsink.Auth{Type: "basic", Username: "a:b"} }, "http.auth.username", "':'"},
		{"auth none with token", func(h *Hook) { httpOf(h).Auth = &httpsink.Auth{Token: "t"} }, "http.auth.type", "basic or bearer"},
		{"type", func(h *Hook) { h.Type = "smtp" }, "type", "http, rabbitmq_queue"},
		{"two targets", func(h *Hook) {
			fromJSON(h, `{"name":"x","events":["in.*"],"type":"kafka","kafka":{"brokers":["127.0.0.1:9092"],"topic":"t"},"http":{"url":"http://x/"}}`)
		}, "http", "only for type http: type kafka sets kafka"},
		{"rabbitmq for kafka", func(h *Hook) {
			fromJSON(h, `{"name":"x","events":["in.*"],"type":"kafka","kafka":{"brokers":["127.0.0.1:9092"],"topic":"t"},"rabbitmq":{"host":"h"}}`)
		}, "rabbitmq", "only for types rabbitmq_queue and rabbitmq_exchange: type kafka sets kafka"},
		{"no target", func(h *Hook) { fromJSON(h, `{"name":"x","events":["in.*"],"type":"rabbitmq_queue"}`) },
			"rabbitmq", "required for type rabbitmq_queue (host, port, username, password, vhost"},
		{"unknown section", func(h *Hook) {
			fromJSON(h, `{"name":"x","events":["in.*"],"http":{"url":"http://x/"},"smtp":{"host":"x"}}`)
		},
			"smtp", "unknown field"},
		{"unknown setting", func(h *Hook) {
			fromJSON(h, `{"name":"x","events":["in.*"],"http":{"url":"http://x/","auth":{"type":"basic","pasword":"x"}}}`)
		},
			"http.auth.pasword", "unknown field"},
		{"setting of the wrong type", func(h *Hook) {
			fromJSON(h, `{"name":"x","events":["in.*"],"type":"kafka","kafka":{"brokers":"127.0.0.1:9092","topic":"t"}}`)
		},
			"kafka.brokers", "an array, not a JSON string"},
		{"settings of another type", func(h *Hook) { h.Type = TypeKafka }, "kafka", "settings of another delivery type"},
		{"max_batch_size", func(h *Hook) { h.MaxBatchSize = 20000 }, "max_batch_size", "1 to 10000"},
		{"max_batch_size negative", func(h *Hook) { h.MaxBatchSize = -1 }, "max_batch_size", "1 to 10000"},
		{"batch_timeout", func(h *Hook) { h.BatchTimeout = Duration(2 * time.Hour) }, "batch_timeout", "1ms to 1h"},
		{"retry_times", func(h *Hook) { h.RetryTimes = intp(101) }, "retry_times", "0 to 100"},
		{"retry_times negative", func(h *Hook) { h.RetryTimes = intp(-1) }, "retry_times", "0 to 100"},
		{"retry_period", func(h *Hook) { h.RetryPeriod = Duration(48 * time.Hour) }, "retry_period", "1ms to 24h"},
		{"retry_schedule", func(h *Hook) { h.RetrySchedule = "random" }, "retry_schedule", "fixed or exponential"},
		{"max_in_flight", func(h *Hook) { h.MaxInFlight = 65 }, "max_in_flight", "1 to 64"},
		{"stop_after_dead_letters", func(h *Hook) { h.StopAfterDeadLetters = 1001 }, "stop_after_dead_letters", "1 to 1000"},
		{"custom_data unknown", func(h *Hook) { h.CustomData = map[string]string{"x": "{{nope}}"} }, `custom_data["x"]`, "unknown parameter {{nope}}"},
		{"custom_data unclosed", func(h *Hook) { h.CustomData = map[string]string{"x": "{{uuid"} }, `custom_data["x"]`, "without }}"},
		{"custom_data key", func(h *Hook) { h.CustomData = map[string]string{"": "v"} }, `custom_data[""]`, "a key of 1 to 128"},
		{"custom_data long", func(h *Hook) { h.CustomData = map[string]string{"x": long(4097)} }, `custom_data["x"]`, "at most 4096"},
		{"custom_data too many", func(h *Hook) {
			h.CustomData = map[string]string{}
			for i := 0; i < 101; i++ {
				h.CustomData["k"+itoa(i)] = "v"
			}
		}, "custom_data", "at most 100"},
		{"rabbitmq host", func(h *Hook) { rabbit(h); rabbitOf(h).Host = "a/b" }, "rabbitmq.host", "host name"},
		{"rabbitmq port", func(h *Hook) { rabbit(h); rabbitOf(h).Port = 70000 }, "rabbitmq.port", "1 to 65535"},
		{"rabbitmq queue", func(h *Hook) { rabbit(h); rabbitOf(h).Queue = long(256) }, "rabbitmq.queue", "at most 255"},
		{"rabbitmq timeout", func(h *Hook) { rabbit(h); rabbitOf(h).Timeout = Duration(time.Hour) }, "rabbitmq.timeout", "1ms to 10m"},
		{"kafka broker port", func(h *Hook) { kafka(h); kafkaOf(h).Brokers = []string{"k:9092", "k:0"} }, "kafka.brokers[1]", "port 1 to 65535"},
		{"kafka topic", func(h *Hook) { kafka(h); kafkaOf(h).Topic = "a b" }, "kafka.topic", "a-z A-Z"},
		{"kafka key template", func(h *Hook) { kafka(h); kafkaOf(h).Key = "{{nope}}" }, "kafka.key", "unknown parameter"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := httpHook("http://127.0.0.1:1/")
			c.mut(&h)
			_, err := f.m.Create(context.Background(), h, Start{})
			var he *Error
			if !errors.As(err, &he) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want a field error", err)
			}
			for _, fe := range he.Fields {
				if fe.Path == c.path && strings.Contains(fe.Message, c.msg) {
					return
				}
			}
			t.Fatalf("want %s: …%s…, got %v", c.path, c.msg, he.Fields)
		})
	}
	if len(f.m.List()) != 0 {
		t.Fatal("a refused hook was saved")
	}
}

// What the bounds allow is saved.
func TestDefinitionsWithinTheBoundsAreSaved(t *testing.T) {
	f := newFixture(t, true)
	for _, filter := range []string{
		"event.data.amount in 1..1000",
		"event.data.amount in -5..5",
		`any(event.data.items, .price > 100) && event.key startsWith "in."`,
		`filter(event.data.items, .price > 1) | map(.price) | sum() > 10`,
		`profile.city == "Qom" || event.data.city matches "^Mos"`,
	} {
		h := httpHook("https://crm.example.com:8443/hook?x=1")
		h.Filter = filter
		httpOf(&h).Headers = map[string]string{"X-Team": "crm", "Authorization": "Token abc", "X-Tab": "a\tb"}
		if _, err := f.m.Create(context.Background(), h, Start{}); err != nil {
			t.Errorf("%s: %v", filter, err)
		}
	}
}

// A hook for a project that does not exist is refused as tokens and
// schemas of that project are, on create, update and clone; nothing
// changes.
func TestHookForAMissingProjectIsRefused(t *testing.T) {
	f := newFixture(t, true)
	missing := uint32(777)
	h := httpHook("http://127.0.0.1:1/")
	h.ProjectID = &missing
	_, err := f.m.Create(context.Background(), h, Start{})
	_, tokErr := f.ps.Tokens(context.Background(), missing)
	var he *Error
	if !errors.As(err, &he) || !errors.Is(err, project.ErrNotFound) || he.Message != tokErr.Error() ||
		len(he.Fields) != 1 || he.Fields[0].Path != "project_id" || he.Fields[0].Message != "project 777 does not exist" {
		t.Fatalf("create: %v (tokens: %v)", err, tokErr)
	}
	if len(f.m.List()) != 0 {
		t.Fatal("stored")
	}
	pid := uint32(7)
	h.ProjectID = &pid
	ok, err := f.m.Create(context.Background(), h, Start{})
	if err != nil {
		t.Fatal(err)
	}
	h.ProjectID, h.Name = &missing, "renamed"
	if _, err := f.m.Update(context.Background(), ok.ID, h); !errors.Is(err, project.ErrNotFound) {
		t.Fatalf("update: %v", err)
	}
	if g, _ := f.m.Get(ok.ID); *g.ProjectID != 7 || g.Name != "crm" {
		t.Fatalf("the update was stored: %+v", g)
	}
	// The project goes: the hook stays, but no copy of it can be made.
	other := uint32(9)
	if _, err := f.ps.Create(context.Background(), &other, "gone soon", project.Settings{}); err != nil {
		t.Fatal(err)
	}
	h.ProjectID, h.Name = &other, "on 9"
	on9, err := f.m.Create(context.Background(), h, Start{})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ps.Delete(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Clone(context.Background(), on9.ID); !errors.Is(err, project.ErrNotFound) {
		t.Fatalf("clone: %v", err)
	}
	if n := len(f.m.List()); n != 2 {
		t.Fatalf("%d hooks", n)
	}
}

// A stored hook outside today's bounds (saved by an older version) is
// not started: it is stopped, and stopped_reason names the field.
func TestAStoredHookOutsideTheBoundsIsStoppedWithItsReason(t *testing.T) {
	f := newFixture(t, true)
	h := httpHook("http://127.0.0.1:1/")
	if err := f.m.dests.Resolve(&h); err != nil {
		t.Fatal(err)
	}
	f.m.defaults(&h)
	h.ID, h.Active = "hk_legacy", true
	httpOf(&h).Headers = map[string]string{"X-Foo": "a\r\nb"}
	if err := f.m.insert(context.Background(), &row{hook: h, secrets: secrets{Signing: []string{NewSecret()}}}); err != nil {
		t.Fatal(err)
	}
	f.m.Close()
	f.open(true)
	g, err := f.m.Get("hk_legacy")
	if err != nil || g.Active || !strings.Contains(g.StoppedReason, `http.headers["X-Foo"]: the value has a CR, LF`) {
		t.Fatalf("%+v %v", g, err)
	}
	f.m.Close()
	f.open(true) // it stays stopped, with its reason
	if g, _ := f.m.Get("hk_legacy"); g.Active || !strings.Contains(g.StoppedReason, "no longer valid") {
		t.Fatalf("%+v", g)
	}
}

// The write-only secrets are not in a stored definition: a bearer hook
// still starts after a restart, and an update that leaves its token out
// keeps the stored one (as the API returns it, without the token).
func TestWriteOnlySecretsAreKeptThroughRestartAndUpdate(t *testing.T) {
	f := newFixture(t, true)
	rc := newReceiver(t, nil)
	hk := httpHook(rc.URL)
	httpOf(&hk).Auth = &httpsink.Auth{Type: "bearer", Token: "target-token"}
	h, err := f.m.Create(context.Background(), hk, Start{})
	if err != nil {
		t.Fatal(err)
	}
	f.m.Close()
	f.open(true)
	if g, _ := f.m.Get(h.ID); !g.Active || g.StoppedReason != "" {
		t.Fatalf("after a restart: %+v", g)
	}
	f.appendEvents("in.gen.calltrack.call", 7, 1)
	waitFor(t, "a delivery after the restart", func() bool { return len(rc.requests()) == 1 })
	got, _ := f.m.Get(h.ID)
	got.Name = "renamed"
	if httpOf(&got).Auth.Token != "" {
		t.Fatal("the token was returned")
	}
	if _, err := f.m.Update(context.Background(), h.ID, got); err != nil {
		t.Fatalf("update without the token: %v", err)
	}
	f.appendEvents("in.gen.calltrack.call", 7, 1)
	waitFor(t, "a delivery after the update", func() bool { return len(rc.requests()) == 2 })
	for _, r := range rc.requests() {
		if r.header.Get("Authorization") != "Bearer target-token" {
			t.Fatalf("Authorization %q", r.header.Get("Authorization"))
		}
	}
	// A bearer hook without any token is still refused.
	hk2 := httpHook(rc.URL)
	httpOf(&hk2).Auth = &httpsink.Auth{Type: "bearer"}
	if _, err := f.m.Create(context.Background(), hk2, Start{}); err == nil {
		t.Fatal("a bearer hook without a token was saved")
	}
}

// fromJSON replaces h by the definition in js, as the API decodes it.
func fromJSON(h *Hook, js string) {
	*h = Hook{}
	if err := json.Unmarshal([]byte(js), h); err != nil {
		panic(err)
	}
}
