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
