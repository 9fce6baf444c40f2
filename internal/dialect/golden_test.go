package dialect

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/project"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// seedTime is the instant of seed 001's example message.
var seedTime = time.UnixMilli(1540771658623)

// fixtureProjects opens a real project store with the projects the golden
// files refer to:
//
//	0   default
//	7   shop: webhook_auth token, token "abc123"
//	8   other: token "other-project-token"
//	99  calls: redirect_hosts example.com, *.shop.io
func fixtureProjects(t testing.TB) *project.Store {
	t.Helper()
	s, err := project.Open(filepath.Join(t.TempDir(), "state.db"), func() time.Time { return seedTime })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	mk := func(id uint32, name string, st project.Settings, secret string) {
		if _, err := s.Create(ctx, &id, name, st); err != nil {
			t.Fatal(err)
		}
		if secret != "" {
			if _, _, err := s.CreateToken(ctx, id, "t", secret); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk(7, "shop", project.Settings{WebhookAuth: project.WebhookAuthToken}, "abc123")
	mk(8, "other", project.Settings{}, "other-project-token")
	mk(99, "calls", project.Settings{RedirectHosts: []string{"example.com", "*.shop.io"}}, "")
	return s
}

// readHTTPFile parses a request written as in an HTTP/1.1 exchange, with
// plain newlines; Content-Length is filled in.
func readHTTPFile(t testing.TB, raw []byte) (*http.Request, []byte) {
	t.Helper()
	head, body, _ := bytes.Cut(raw, []byte("\n\n"))
	lines := strings.Split(string(head), "\n")
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	if len(body) > 0 {
		b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(b.String())))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	return req, got
}

// goldenOutcome is what a golden file records.
type goldenOutcome struct {
	Event    *event.Event      `json:"event,omitempty"`
	Pixel    bool              `json:"pixel,omitempty"`
	Location string            `json:"location,omitempty"`
	Status   int               `json:"status,omitempty"`
	Error    *Error            `json:"error,omitempty"`
	Header   map[string]string `json:"header,omitempty"`
}

func outcome(res *WebhookResult, err error) goldenOutcome {
	if err != nil {
		e, ok := err.(*Error)
		if !ok {
			return goldenOutcome{Error: &Error{Message: "NOT A DIALECT ERROR: " + err.Error()}}
		}
		return goldenOutcome{Status: e.Status, Error: e, Header: e.Header}
	}
	return goldenOutcome{Event: res.Event, Pixel: res.Pixel, Location: res.Location}
}

func TestWebhookGolden(t *testing.T) {
	projects := fixtureProjects(t)
	files, err := filepath.Glob("testdata/webhook/*.http")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".http")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			hr, body := readHTTPFile(t, raw)
			gen, _ := event.NewGenerator(0, func() time.Time { return seedTime })
			w := &Webhook{Projects: projects, NewUID: gen.Next}
			res, derr := w.Decode(&Request{HTTP: hr, Body: body, ClientIP: "109.252.93.158", ReceivedAt: seedTime})
			got, err := json.MarshalIndent(outcome(res, derr), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			goldenPath := strings.TrimSuffix(file, ".http") + ".golden.json"
			if *update {
				if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/dialect -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("decoded %s\n got %s\nwant %s", file, got, want)
			}
		})
	}
}
