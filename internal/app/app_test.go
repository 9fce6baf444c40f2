package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/project"
)

func TestNewLoggerFormats(t *testing.T) {
	var buf bytes.Buffer
	NewLogger("info", "auto", &buf).Info("hello", "k", 1) // not a terminal: JSON
	if !strings.HasPrefix(buf.String(), `{"time":`) || !strings.Contains(buf.String(), `"msg":"hello"`) {
		t.Fatalf("auto on a buffer: %q", buf.String())
	}
	buf.Reset()
	NewLogger("info", "text", &buf).Info("hello", "k", 1)
	if !strings.Contains(buf.String(), "msg=hello k=1") {
		t.Fatalf("text: %q", buf.String())
	}
	buf.Reset()
	NewLogger("warn", "json", &buf).Info("dropped")
	if buf.Len() != 0 {
		t.Fatalf("info logged at warn level: %q", buf.String())
	}
}

func TestAdminToken(t *testing.T) {
	ctx := context.Background()
	st, err := project.Open(filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	if _, _, err := AdminToken(ctx, st, "short"); err == nil {
		t.Fatal("a short SLUICE_ADMIN_TOKEN was accepted")
	}
	h, gen, err := AdminToken(ctx, st, "from-the-environment-0123")
	if err != nil || gen != "" || h != sha256.Sum256([]byte("from-the-environment-0123")) {
		t.Fatalf("env token: %x %q %v", h, gen, err)
	}
	if stored, _ := st.Meta(ctx, metaAdminToken); stored != "" {
		t.Fatal("the environment's token was persisted")
	}

	h1, tok, err := AdminToken(ctx, st, "")
	if err != nil || !strings.HasPrefix(tok, "sla_") || len(tok) != 4+48 || h1 != sha256.Sum256([]byte(tok)) {
		t.Fatalf("generated: %q %v", tok, err)
	}
	stored, _ := st.Meta(ctx, metaAdminToken)
	if stored != hex.EncodeToString(h1[:]) || strings.Contains(stored, tok) {
		t.Fatalf("stored %q", stored)
	}
	h2, again, err := AdminToken(ctx, st, "")
	if err != nil || again != "" || h2 != h1 {
		t.Fatalf("second start: %q %v", again, err)
	}
	newTok, err := ResetAdminToken(ctx, st)
	if err != nil || newTok == tok || !strings.HasPrefix(newTok, "sla_") {
		t.Fatalf("reset: %q %v", newTok, err)
	}
	h3, _, _ := AdminToken(ctx, st, "")
	if h3 != sha256.Sum256([]byte(newTok)) {
		t.Fatal("reset token not in effect")
	}
}

func TestDialAddr(t *testing.T) {
	cases := map[string]string{
		"0.0.0.0:8080":    "127.0.0.1:8080",
		"[::]:8080":       "127.0.0.1:8080",
		"127.0.0.1:9":     "127.0.0.1:9",
		"10.1.2.3:80":     "10.1.2.3:80",
		"[2001:db8::1]:1": "[2001:db8::1]:1",
	}
	for in, want := range cases {
		a, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatal(err)
		}
		if got := dialAddr(a); got != want {
			t.Errorf("dialAddr(%s) = %s, want %s", in, got, want)
		}
	}
}

// The registry is valid, and every type has its own settings key or
// shares one on purpose (the two RabbitMQ types).
func TestDestinations(t *testing.T) {
	d, err := hook.NewDestinations(Destinations())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"http", "rabbitmq_queue", "rabbitmq_exchange", "kafka", "google_analytics", "bigquery", "clickhouse"}
	if got := d.Types(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("types %v, want %v", got, want)
	}
}

// Provisioned hooks are checked against the destinations before anything
// opens: the error names the hook and the field.
func TestCheckHooks(t *testing.T) {
	for yml, want := range map[string]string{
		"- {id: ok, name: ok, events: [a], http: {url: 'http://x/'}}":                           "",
		"- {id: x, name: x, events: [a], http: {url: 'ftp://x'}}":                               "hooks.provision[0] (x): invalid hook: http.url: an http:// or https:// URL",
		"- {id: x, name: x, events: [a], type: smtp, smtp: {host: x}}":                          "hooks.provision[0] (x): invalid hook: type: http, rabbitmq_queue, rabbitmq_exchange, kafka, google_analytics, bigquery or clickhouse",
		"- {id: x, name: x, events: [a], type: kafka, kafka: {brokers: [k:1], topic: t, x: 1}}": "kafka.x: unknown field",
		"- {id: x, name: x, events: [a], http: {url: 'http://x/', headers: {X-Version: 2}}}":    "",
	} {
		var cfg config.Config
		if err := yaml.Unmarshal([]byte(yml), &cfg.Hooks.Provision); err != nil {
			t.Fatalf("%s: %v", yml, err)
		}
		err := CheckHooks(&cfg)
		if (want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", yml, err, want)
		}
	}
}
