package ingest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/eventlog/sqlite"
	"github.com/sluicehq/sluice/internal/project"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// trackClock is the fixed instant of the track goldens: the seed's sentAt
// plus two seconds, so skew correction has something to show.
var trackClock = time.Date(2019, 2, 21, 10, 56, 12, 723_000_000, time.UTC)

// s2sClock is the fixed instant of the s2s goldens: after the seed's
// examples (2023), so their times are in range.
var s2sClock = time.UnixMilli(1680004800000).UTC()

// goldenServer is a real ingest handler over a real SQLite log, with a
// fixed clock so ids and times are reproducible. Projects:
//
//	7  shop: tokens "abc123", "revoked-token" (revoked)
//	8  other: token "other-project-token"
//	10 guarded: webhook_auth token, token "webhook-token"
//	11 crm-orders: webhook_dedup_field order.id; 12 crm-flat: order_id
//	99 calls: redirect_hosts example.com, *.shop.io
//	13 calltracker: identity_fields caller → phone, client.email → email,
//	   crm_id → cuid:crm; default_region RU. 14: the same with hash_pii
//	9  custom: token "custom-token"; dimension loyaltyLevel (event.loyaltyLevel),
//	   metrics margin (event.transaction.margin) and item_margin
//	   (event.transaction.lineItems.product.margin)
//	20 s2s app: app_id "app-golden", key "s2s-key", default_region IR;
//	   event types slug1, aewqd (action) and buy (revenue)
//	21 s2s app with hash_pii: app_id "app-hashed", key "s2s-hashed-key", region IR, slug1
//	22 s2s switched off: app_id "app-off", key "s2s-off-key"
//	30 commerce shop: token "shop-token"; registered order-shipped-v1
//	   (carrier dhl|ups required, trackingNumber) and order-shipped-v2
//	   (carrier any string, parcels ≥ 1 required)
//	31 commerce shop with hash_pii, default_region RU: token "pii-token"
func goldenServer(t *testing.T, at time.Time) (*Server, *sqlite.Log) {
	t.Helper()
	return goldenServerIn(t, at, t.TempDir())
}

// goldenServerIn is goldenServer with its databases in dir.
func goldenServerIn(t *testing.T, at time.Time, dir string) (*Server, *sqlite.Log) {
	t.Helper()
	clock := func() time.Time { return at }
	gen, _ := event.NewGenerator(0, clock)
	l, err := sqlite.Open(sqlite.Config{Path: filepath.Join(dir, "events.db"), Now: clock}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := project.Open(filepath.Join(dir, "state.db"), clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); ps.Close() })
	ctx := context.Background()
	mk := func(id uint32, name string, st project.Settings, secrets ...string) {
		if _, err := ps.Create(ctx, &id, name, st); err != nil {
			t.Fatal(err)
		}
		for _, sec := range secrets {
			tok, _, err := ps.CreateToken(ctx, id, "t", sec)
			if err != nil {
				t.Fatal(err)
			}
			if sec == "revoked-token" {
				if _, err := ps.RevokeToken(ctx, id, tok.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	mk(7, "shop", project.Settings{}, "abc123", "revoked-token")
	mk(10, "guarded", project.Settings{WebhookAuth: project.WebhookAuthToken}, "webhook-token")
	mk(11, "crm-orders", project.Settings{WebhookDedupField: "order.id"})
	mk(99, "calls", project.Settings{RedirectHosts: []string{"example.com", "*.shop.io"}})
	callers := map[string]string{"caller": "phone", "client.email": "email", "crm_id": "cuid:crm"}
	mk(13, "calltracker", project.Settings{DefaultRegion: "RU", IdentityFields: callers})
	mk(14, "calltracker-pii", project.Settings{DefaultRegion: "RU", IdentityFields: callers, HashPII: true})
	mk(12, "crm-flat", project.Settings{WebhookDedupField: "order_id"})
	mk(8, "other", project.Settings{}, "other-project-token")
	mk(9, "custom", project.Settings{Track: project.TrackSettings{
		CustomDimensions: []project.CustomField{{Name: "loyaltyLevel"}},
		CustomMetrics: []project.CustomField{
			{Name: "margin", Path: "event.transaction.margin"},
			{Name: "item_margin", Path: "event.transaction.lineItems.product.margin"},
		},
	}}, "custom-token")
	off := false
	mk(20, "app", project.Settings{AppID: "app-golden", DefaultRegion: "IR"}, "s2s-key")
	mk(21, "app-hashed", project.Settings{AppID: "app-hashed", DefaultRegion: "IR", HashPII: true}, "s2s-hashed-key")
	mk(22, "app-off", project.Settings{AppID: "app-off", S2S: &off}, "s2s-off-key")
	for _, et := range []project.EventType{
		{ProjectID: 20, Slug: "slug1", Kind: project.KindAction}, {ProjectID: 20, Slug: "aewqd", Kind: project.KindAction},
		{ProjectID: 20, Slug: "buy", Kind: project.KindRevenue}, {ProjectID: 21, Slug: "slug1", Kind: project.KindAction},
	} {
		if _, err := ps.CreateEventType(ctx, et); err != nil {
			t.Fatal(err)
		}
	}
	mk(30, "commerce-shop", project.Settings{}, "shop-token")
	mk(31, "commerce-pii", project.Settings{HashPII: true, DefaultRegion: "RU"}, "pii-token")
	for typ, doc := range map[string]string{
		"order-shipped-v1": `{"title":"Order shipped","type":"object","required":["eventType","carrier"],
			"properties":{"eventType":{"const":"order-shipped-v1"},"carrier":{"enum":["dhl","ups"]},"trackingNumber":{"type":"string"}}}`,
		"order-shipped-v2": `{"type":"object","required":["carrier","parcels"],
			"properties":{"carrier":{"type":"string"},"parcels":{"type":"integer","minimum":1}}}`,
	} {
		if _, _, err := ps.RegisterSchema(ctx, 30, typ, []byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	return New(Config{Now: clock}, l, testDialects(ps, gen, clock), nil, nil), l
}

// parseExchanges reads requests written as in an HTTP/1.1 exchange, with
// plain newlines, separated by lines "###"; Content-Length is filled in.
func parseExchanges(t *testing.T, raw []byte) []*http.Request {
	t.Helper()
	var out []*http.Request
	for _, part := range bytes.Split(raw, []byte("\n###\n")) {
		head, body, _ := bytes.Cut(part, []byte("\n\n"))
		var b strings.Builder
		for _, l := range strings.Split(string(head), "\n") {
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
		req.RemoteAddr = "203.0.113.7:51000"
		out = append(out, req)
	}
	return out
}

type goldenExchange struct {
	Request string            `json:"request"`
	Status  int               `json:"status"`
	Header  map[string]string `json:"header,omitempty"`
	Body    json.RawMessage   `json:"body,omitempty"`
}

type goldenOutcome struct {
	Exchanges []goldenExchange `json:"exchanges"`
	Stored    []*event.Event   `json:"stored"`
}

// TestTrackGolden runs each testdata/track/*.http through the handler and
// compares every answer and the stored events with its .golden.json.
func TestTrackGolden(t *testing.T) { runGolden(t, "testdata/track", trackClock) }

// webhookClock is the instant of seed 001's example message.
var webhookClock = time.UnixMilli(1540771658623).UTC()

// TestWebhookGolden does the same for testdata/webhook.
func TestWebhookGolden(t *testing.T) { runGolden(t, "testdata/webhook", webhookClock) }

// TestS2SGolden does the same for testdata/s2s.
func TestS2SGolden(t *testing.T) { runGolden(t, "testdata/s2s", s2sClock) }

// commerceClock is the fixed instant of the commerce goldens.
var commerceClock = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// TestCommerceGolden does the same for testdata/commerce.
func TestCommerceGolden(t *testing.T) { runGolden(t, "testdata/commerce", commerceClock) }

func runGolden(t *testing.T, dir string, at time.Time) {
	files, err := filepath.Glob(dir + "/*.http")
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
			srv, l := goldenServer(t, at)
			var out goldenOutcome
			for _, req := range parseExchanges(t, raw) {
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, req)
				ex := goldenExchange{Request: req.Method + " " + req.URL.RequestURI(), Status: rec.Code}
				for _, h := range []string{"WWW-Authenticate", "Allow", "Content-Type", "Location", "Set-Cookie", "Cache-Control"} {
					if v := rec.Header().Get(h); v != "" {
						if ex.Header == nil {
							ex.Header = map[string]string{}
						}
						ex.Header[h] = v
					}
				}
				body, _ := io.ReadAll(rec.Body)
				switch {
				case rec.Header().Get("Content-Type") == "image/gif":
					if !bytes.HasPrefix(body, []byte("GIF89a")) {
						t.Fatalf("%s: not a GIF: %q", name, body)
					}
					body, _ = json.Marshal(fmt.Sprintf("a GIF of %d bytes", len(body)))
				case rec.Code == http.StatusFound && len(body) == 0:
					body = nil
				case !json.Valid(body):
					t.Fatalf("%s: answer is not JSON: %q", name, body)
				}
				ex.Body = body
				out.Exchanges = append(out.Exchanges, ex)
			}
			recs, err := l.Read(context.Background(), eventlog.Query{Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			out.Stored = []*event.Event{}
			for _, r := range recs {
				e, err := event.Decode(r.Body)
				if err != nil {
					t.Fatal(err)
				}
				out.Stored = append(out.Stored, e)
			}
			got, err := json.MarshalIndent(out, "", "  ")
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
				t.Fatalf("%v (run go test ./internal/ingest -run Golden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s\n got %s\nwant %s", file, got, want)
			}
		})
	}
}
