package project

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/pgmigrate"
	"github.com/sluicehq/sluice/internal/pgtest"
)

// backend is where a test's stores live: a place (a directory, a
// database) and how to open a Store on it.
type backend struct {
	name  string
	place func(t *testing.T) string
	open  func(t *testing.T, place string) *Store
}

var backends = []backend{
	{"sqlite", func(t *testing.T) string { return t.TempDir() }, func(t *testing.T, dir string) *Store {
		t.Helper()
		s, err := Open(filepath.Join(dir, "state.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
	{"postgres", func(t *testing.T) string { return pgtest.Start(t) }, func(t *testing.T, dsn string) *Store {
		t.Helper()
		pool, err := pgxpool.New(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		if err := pgmigrate.Apply(context.Background(), pool, Migrations); err != nil {
			t.Fatal(err)
		}
		s, err := New(NewPostgres(pool), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

func TestMain(m *testing.M) { pgtest.Main(m) }

// forBackends runs test on every backend: the store tests are the
// conformance suite of Backend.
func forBackends(t *testing.T, test func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b) })
	}
}

func TestDefaultProjectAlwaysExists(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		dir := be.place(t)
		s := be.open(t, dir)
		p, ok := s.Get(0)
		if !ok || p.Name != "default" {
			t.Fatalf("default project: %+v %v", p, ok)
		}
		if err := s.Delete(context.Background(), 0); !errors.Is(err, ErrInvalid) {
			t.Fatalf("delete default: %v", err)
		}
		s.Close()
		s2 := be.open(t, dir) // reopening keeps exactly one default
		if len(s2.List()) != 1 {
			t.Fatalf("projects after reopen: %+v", s2.List())
		}
	})
}

func TestCreateUpdateDelete(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.open(t, be.place(t))
		p, err := s.Create(ctx, nil, "shop", Settings{WebhookAuth: "token", RedirectHosts: []string{"Example.COM", "*.shop.io"}})
		if err != nil {
			t.Fatal(err)
		}
		if p.ID != 1 || p.Settings.RedirectHosts[0] != "example.com" {
			t.Fatalf("created %+v", p)
		}
		id := uint32(99)
		if _, err := s.Create(ctx, &id, "crm", Settings{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(ctx, &id, "again", Settings{}); !errors.Is(err, ErrExists) {
			t.Fatalf("duplicate id: %v", err)
		}
		next, _ := s.Create(ctx, nil, "next", Settings{})
		if next.ID != 100 {
			t.Fatalf("next id %d, want 100", next.ID)
		}
		for _, bad := range []Settings{{WebhookAuth: "magic"}, {RedirectHosts: []string{"https://x.com/"}}, {RedirectHosts: []string{""}}} {
			if _, err := s.Create(ctx, nil, "bad", bad); !errors.Is(err, ErrInvalid) {
				t.Errorf("settings %+v: %v", bad, err)
			}
		}
		if _, err := s.Create(ctx, nil, " ", Settings{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("blank name: %v", err)
		}
		name := "shop2"
		up, err := s.Update(ctx, 1, &name, nil)
		if err != nil || up.Name != "shop2" || up.Settings.WebhookAuth != "token" {
			t.Fatalf("update: %+v %v", up, err)
		}
		if got, _ := s.Get(1); got.Name != "shop2" {
			t.Fatalf("snapshot not refreshed: %+v", got)
		}
		if _, err := s.Update(ctx, 12345, &name, nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update missing: %v", err)
		}
		if err := s.Delete(ctx, 99); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Get(99); ok {
			t.Fatal("deleted project still there")
		}
		if err := s.Delete(ctx, 99); !errors.Is(err, ErrNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
	})
}

func TestTokens(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		dir := be.place(t)
		s := be.open(t, dir)
		a, _ := s.Create(ctx, nil, "a", Settings{})
		b, _ := s.Create(ctx, nil, "b", Settings{})
		tok, secret, err := s.CreateToken(ctx, a.ID, "crm", "")
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^sl_[0-9a-f]{40}$`).MatchString(secret) {
			t.Fatalf("secret %q", secret)
		}
		if tok.Hint != secret[:7]+"…" || tok.ProjectID != a.ID {
			t.Fatalf("token %+v", tok)
		}
		if p, id, ok := s.Authenticate(secret); !ok || p != a.ID || id != tok.ID {
			t.Fatalf("authenticate: %d %s %v", p, id, ok)
		}
		if !s.AuthenticateFor(a.ID, secret) || s.AuthenticateFor(b.ID, secret) {
			t.Fatal("a token of project a must authenticate for a only")
		}
		for _, wrong := range []string{"", secret + "x", secret[:len(secret)-1], "abc123"} {
			if _, _, ok := s.Authenticate(wrong); ok {
				t.Errorf("%q authenticated", wrong)
			}
		}
		// An imported secret, as a sender moving to sluice keeps its token.
		if _, _, err := s.CreateToken(ctx, b.ID, "legacy", "abc123"); err != nil {
			t.Fatal(err)
		}
		if p, _, ok := s.Authenticate("abc123"); !ok || p != b.ID {
			t.Fatal("imported secret")
		}
		if _, _, err := s.CreateToken(ctx, a.ID, "steal", "abc123"); !errors.Is(err, ErrExists) {
			t.Fatalf("same secret in another project: %v", err)
		}
		if _, _, err := s.CreateToken(ctx, a.ID, "short", "abc"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("short secret: %v", err)
		}
		if _, _, err := s.CreateToken(ctx, 777, "x", ""); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token for missing project: %v", err)
		}
		// The secret is never stored: only its hash.
		all, err := s.db.AllTokens(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n, h := 0, HashSecret(secret)
		for _, st := range all {
			if st.Name == secret || st.Hint == secret || strings.Contains(string(st.Hash[:]), secret) {
				t.Fatalf("secret found in the database: %+v", st)
			}
			if st.Hash == h {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("hash stored %d times", n)
		}
		meta, _ := s.db.AllMeta(ctx)
		for k, v := range meta {
			if strings.Contains(v, secret) {
				t.Fatalf("secret in meta %s", k)
			}
		}

		rev, err := s.RevokeToken(ctx, a.ID, tok.ID)
		if err != nil || rev.RevokedAt == nil {
			t.Fatalf("revoke: %+v %v", rev, err)
		}
		if _, _, ok := s.Authenticate(secret); ok {
			t.Fatal("revoked token still works")
		}
		if _, err := s.RevokeToken(ctx, b.ID, tok.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("revoke through another project: %v", err)
		}
		list, _ := s.Tokens(ctx, a.ID)
		if len(list) != 1 || list[0].RevokedAt == nil {
			t.Fatalf("list %+v", list)
		}
		s.Close()
		s2 := be.open(t, dir)
		if _, _, ok := s2.Authenticate(secret); ok {
			t.Fatal("revoked token works after reopen")
		}
		if p, _, ok := s2.Authenticate("abc123"); !ok || p != b.ID {
			t.Fatal("token lost on reopen")
		}
		// Deleting a project removes its tokens.
		if err := s2.Delete(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := s2.Authenticate("abc123"); ok {
			t.Fatal("token of a deleted project still works")
		}
	})
}

func TestProvisionIsIdempotent(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.open(t, be.place(t))
		h := HashSecret("from-hash-only")
		specs := []Spec{
			{ID: 7, Name: "shop", Settings: Settings{WebhookAuth: "token"}, Tokens: []TokenSpec{
				{Name: "crm", Secret: "abc123"},
				{Name: "ci", SHA256: hex.EncodeToString(h[:])},
			}},
			{ID: 0, Name: "default"},
		}
		log := slog.New(slog.DiscardHandler)
		for i := 0; i < 3; i++ {
			if err := s.Provision(ctx, specs, log); err != nil {
				t.Fatalf("pass %d: %v", i, err)
			}
		}
		if len(s.List()) != 2 {
			t.Fatalf("projects: %+v", s.List())
		}
		toks, _ := s.Tokens(ctx, 7)
		if len(toks) != 2 {
			t.Fatalf("tokens: %+v", toks)
		}
		if p, _, ok := s.Authenticate("from-hash-only"); !ok || p != 7 {
			t.Fatal("token provisioned by hash")
		}
		// Changed settings are applied; a revoked token stays revoked.
		var crm string
		for _, tk := range toks {
			if tk.Name == "crm" {
				crm = tk.ID
			}
		}
		if _, err := s.RevokeToken(ctx, 7, crm); err != nil {
			t.Fatal(err)
		}
		specs[0].Settings.WebhookAuth = "none"
		if err := s.Provision(ctx, specs, log); err != nil {
			t.Fatal(err)
		}
		if p, _ := s.Get(7); p.Settings.AuthMode() != "none" {
			t.Fatalf("settings not updated: %+v", p.Settings)
		}
		if _, _, ok := s.Authenticate("abc123"); ok {
			t.Fatal("provisioning revived a revoked token")
		}
		// A secret of another project is refused.
		bad := []Spec{{ID: 8, Name: "other", Tokens: []TokenSpec{{Name: "x", SHA256: hex.EncodeToString(h[:])}}}}
		if err := s.Provision(ctx, bad, log); err == nil {
			t.Fatal("secret of project 7 provisioned into project 8")
		}
		for _, sp := range []Spec{
			{ID: 9, Name: ""},
			{ID: 9, Name: "x", Tokens: []TokenSpec{{Name: "t"}}},
			{ID: 9, Name: "x", Tokens: []TokenSpec{{Name: "t", Secret: "abcdef", SHA256: "00"}}},
			{ID: 9, Name: "x", Tokens: []TokenSpec{{Name: "t", SHA256: "zz"}}},
		} {
			if err := s.Provision(ctx, []Spec{sp}, log); err == nil {
				t.Errorf("spec %+v accepted", sp)
			}
		}
	})
}

func TestRedirectAllowed(t *testing.T) {
	s := Settings{RedirectHosts: []string{"example.com", "*.shop.io"}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]bool{
		"example.com": true, "EXAMPLE.com": true, "example.com.": true,
		"evil-example.com": false, "example.com.evil.io": false, "sub.example.com": false,
		"a.shop.io": true, "a.b.shop.io": true, "shop.io": false, "xshop.io": false, "": false,
	}
	for host, want := range cases {
		if got := s.RedirectAllowed(host); got != want {
			t.Errorf("RedirectAllowed(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestDecodeSettingsStrict(t *testing.T) {
	if _, err := DecodeSettings([]byte(`{"webhook_auth":"token","redirect_host":["x"]}`)); err == nil || !regexp.MustCompile(`redirect_host`).MatchString(err.Error()) {
		t.Fatalf("unknown key: %v", err)
	}
	s, err := DecodeSettings([]byte(`{"webhook_auth":"token"}`))
	if err != nil || s.WebhookAuth != "token" {
		t.Fatalf("%+v %v", s, err)
	}
}

func TestParseFieldPath(t *testing.T) {
	cases := map[string][]string{
		"event.user.loyaltyLevel":                   {"event", "user", "loyaltyLevel"},
		`integrations["Google Analytics"].clientId`: {"integrations", "Google Analytics", "clientId"},
		`["a.b"]`:      {"a.b"},
		`x["y \"z\""]`: {"x", `y "z"`},
		"event.transaction.lineItems.product.margin": {"event", "transaction", "lineItems", "product", "margin"},
	}
	for in, want := range cases {
		got, err := ParseFieldPath(in)
		if err != nil || strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("ParseFieldPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ".", "a.", "a..b", `a[b]`, `a[""]`, `a["x`} {
		if _, err := ParseFieldPath(bad); err == nil {
			t.Errorf("ParseFieldPath(%q) accepted", bad)
		}
	}
}

func TestTrackSettingsValidate(t *testing.T) {
	ok := Settings{Track: TrackSettings{
		CustomDimensions: []CustomField{{Name: "loyalty", Path: "event.user.loyalty"}, {Name: "segment"}},
		CustomMetrics:    []CustomField{{Name: "margin", Path: "event.transaction.lineItems.product.margin"}},
	}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if ok.Track.CustomDimensions[1].Where() != "event.segment" {
		t.Fatal("default path")
	}
	for _, bad := range []Settings{
		{Track: TrackSettings{CustomDimensions: []CustomField{{Name: ""}}}},
		{Track: TrackSettings{CustomMetrics: []CustomField{{Name: "m", Path: "a..b"}}}},
		{Track: TrackSettings{CustomDimensions: []CustomField{{Name: "x", Path: "event.a"}}, CustomMetrics: []CustomField{{Name: "y", Path: "event.a"}}}},
	} {
		if bad.Validate() == nil {
			t.Errorf("accepted %+v", bad.Track)
		}
	}
	if _, err := DecodeSettings([]byte(`{"track":{"custom_dimension":[]}}`)); err == nil || !strings.Contains(err.Error(), "custom_dimension") {
		t.Fatalf("unknown track key: %v", err)
	}
}

func TestAppIDs(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		dir := be.place(t)
		s := be.open(t, dir)
		def, _ := s.Get(0)
		if !regexp.MustCompile(`^app_[0-9a-f]{12}$`).MatchString(def.Settings.AppID) {
			t.Fatalf("default project app id %q", def.Settings.AppID)
		}
		a, err := s.Create(ctx, nil, "a", Settings{})
		if err != nil || a.Settings.AppID == "" || a.Settings.AppID == def.Settings.AppID {
			t.Fatalf("generated app id: %+v %v", a, err)
		}
		b, err := s.Create(ctx, nil, "b", Settings{AppID: "my-app"})
		if err != nil || b.Settings.AppID != "my-app" {
			t.Fatalf("chosen app id: %+v %v", b, err)
		}
		if _, err := s.Create(ctx, nil, "c", Settings{AppID: "my-app"}); !errors.Is(err, ErrExists) {
			t.Fatalf("taken app id: %v", err)
		}
		if _, err := s.Create(ctx, nil, "c", Settings{AppID: "x"}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("short app id: %v", err)
		}
		if p, ok := s.ByAppID("my-app"); !ok || p.ID != b.ID {
			t.Fatalf("ByAppID: %+v %v", p, ok)
		}
		// Replacing settings without an app id keeps the project's.
		up, err := s.Update(ctx, a.ID, nil, &Settings{WebhookAuth: "token"})
		if err != nil || up.Settings.AppID != a.Settings.AppID {
			t.Fatalf("update lost the app id: %+v %v", up, err)
		}
		if _, err := s.Update(ctx, a.ID, nil, &Settings{AppID: "my-app"}); !errors.Is(err, ErrExists) {
			t.Fatalf("update to a taken app id: %v", err)
		}
		s.Close()
		s2 := be.open(t, dir)
		if p, ok := s2.ByAppID(a.Settings.AppID); !ok || p.ID != a.ID {
			t.Fatal("app id lost on reopen")
		}
		off := false
		if (&Settings{}).S2SEnabled() != true || (&Settings{S2S: &off}).S2SEnabled() {
			t.Fatal("S2SEnabled")
		}
		if _, err := s2.Create(ctx, nil, "r", Settings{DefaultRegion: "zz"}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("bad region: %v", err)
		}
		r, err := s2.Create(ctx, nil, "r", Settings{DefaultRegion: "ir"})
		if err != nil || r.Settings.DefaultRegion != "IR" {
			t.Fatalf("region: %+v %v", r, err)
		}
	})
}

func TestEventTypes(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.open(t, be.place(t))
		p, _ := s.Create(ctx, nil, "app", Settings{})
		et, err := s.CreateEventType(ctx, EventType{ProjectID: p.ID, Slug: "aewqd", Kind: KindAction, Name: "Purchase"})
		if err != nil || et.CreatedAt.IsZero() {
			t.Fatalf("create: %+v %v", et, err)
		}
		if _, err := s.CreateEventType(ctx, EventType{ProjectID: p.ID, Slug: "aewqd", Kind: KindRevenue}); !errors.Is(err, ErrExists) {
			t.Fatalf("duplicate slug: %v", err)
		}
		for _, bad := range []EventType{{ProjectID: p.ID, Slug: "", Kind: KindAction}, {ProjectID: p.ID, Slug: "a b", Kind: KindAction}, {ProjectID: p.ID, Slug: "x", Kind: "click"}} {
			if _, err := s.CreateEventType(ctx, bad); !errors.Is(err, ErrInvalid) {
				t.Errorf("%+v: %v", bad, err)
			}
		}
		if _, err := s.CreateEventType(ctx, EventType{ProjectID: 999, Slug: "x", Kind: KindAction}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing project: %v", err)
		}
		if got, ok := s.EventType(p.ID, "aewqd"); !ok || got.Kind != KindAction || got.Name != "Purchase" {
			t.Fatalf("lookup %+v", got)
		}
		if _, ok := s.EventType(0, "aewqd"); ok {
			t.Fatal("an event type leaked into another project")
		}
		up, err := s.UpdateEventType(ctx, EventType{ProjectID: p.ID, Slug: "aewqd", Kind: KindRevenue, Name: "Paid"})
		if err != nil || up.Kind != KindRevenue || !up.CreatedAt.Equal(et.CreatedAt) {
			t.Fatalf("update %+v %v", up, err)
		}
		list, _ := s.EventTypes(p.ID)
		if len(list) != 1 || list[0].Kind != KindRevenue {
			t.Fatalf("list %+v", list)
		}
		if err := s.DeleteEventType(ctx, p.ID, "aewqd"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteEventType(ctx, p.ID, "aewqd"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
		s.CreateEventType(ctx, EventType{ProjectID: p.ID, Slug: "gone", Kind: KindAction})
		if err := s.Delete(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.EventType(p.ID, "gone"); ok {
			t.Fatal("event types outlived their project")
		}
	})
}

func TestProvisionEventTypesAndAppID(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		s := be.open(t, be.place(t))
		log := slog.New(slog.DiscardHandler)
		specs := []Spec{{ID: 5, Name: "app", Settings: Settings{DefaultRegion: "IR", HashPII: true}, EventTypes: []EventTypeSpec{
			{Slug: "slug1", Kind: "action", Name: "Opened"}, {Slug: "buy", Kind: "revenue"},
		}}}
		for i := 0; i < 2; i++ {
			if err := s.Provision(ctx, specs, log); err != nil {
				t.Fatal(err)
			}
		}
		p, _ := s.Get(5)
		generated := p.Settings.AppID
		if generated == "" || !p.Settings.HashPII {
			t.Fatalf("%+v", p.Settings)
		}
		list, _ := s.EventTypes(5)
		if len(list) != 2 {
			t.Fatalf("event types %+v", list)
		}
		specs[0].EventTypes[0].Name = "Opened app"
		if err := s.Provision(ctx, specs, log); err != nil {
			t.Fatal(err)
		}
		if et, _ := s.EventType(5, "slug1"); et.Name != "Opened app" {
			t.Fatalf("not updated: %+v", et)
		}
		if p, _ := s.Get(5); p.Settings.AppID != generated {
			t.Fatal("provisioning replaced the generated app id")
		}
		bad := []Spec{{ID: 6, Name: "x", EventTypes: []EventTypeSpec{{Slug: "a", Kind: "action"}, {Slug: "a", Kind: "action"}}}}
		if err := s.Provision(ctx, bad, log); err == nil {
			t.Fatal("a slug declared twice was accepted")
		}
	})
}

func TestSchemaRegistry(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		dir := be.place(t)
		s := be.open(t, dir)
		p, _ := s.Create(ctx, nil, "shop", Settings{})
		doc := []byte(`{"type":"object","required":["carrier"],"properties":{"carrier":{"type":"string"}}}`)
		r, created, err := s.RegisterSchema(ctx, p.ID, "order-shipped-v1", doc)
		if err != nil || !created || r.Compiled() == nil || r.Type != "order-shipped-v1" {
			t.Fatalf("register: %+v %v %v", r, created, err)
		}
		// The same document again is a no-op; another one is refused.
		if _, created, err := s.RegisterSchema(ctx, p.ID, "order-shipped-v1", []byte(`{ "type": "object", "required": ["carrier"], "properties": {"carrier": {"type": "string"}} }`)); err != nil || created {
			t.Fatalf("same body: %v %v", created, err)
		}
		if _, _, err := s.RegisterSchema(ctx, p.ID, "order-shipped-v1", []byte(`{"type":"object"}`)); !errors.Is(err, ErrExists) {
			t.Fatalf("changed body: %v", err)
		}
		// Versions coexist.
		if _, _, err := s.RegisterSchema(ctx, p.ID, "order-shipped-v2", []byte(`{"type":"object"}`)); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []struct{ typ, doc string }{
			{"purchase-v1", `{}`}, {"order-shipped-v3", `{"type":"objekt"}`}, {"Bad", `{}`}, {"order-shipped-v3", `not json`},
		} {
			_, _, err := s.RegisterSchema(ctx, p.ID, bad.typ, []byte(bad.doc))
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s %s: %v", bad.typ, bad.doc, err)
			}
		}
		_, _, err = s.RegisterSchema(ctx, p.ID, "order-shipped-v3", []byte(`{"type":"objekt"}`))
		if err == nil || !strings.Contains(err.Error(), "/type") || !strings.Contains(err.Error(), "must be one of") {
			t.Fatalf("the compiler's message is lost: %v", err)
		}
		list, _ := s.Schemas(p.ID)
		if len(list) != 2 {
			t.Fatalf("list %+v", list)
		}
		if _, ok := s.Schema(0, "order-shipped-v1"); ok {
			t.Fatal("a schema leaked into another project")
		}
		s.Close()
		s2 := be.open(t, dir)
		if r, ok := s2.Schema(p.ID, "order-shipped-v1"); !ok || r.Compiled() == nil {
			t.Fatal("schema lost on reopen")
		}
		if err := s2.DeleteSchema(ctx, p.ID, "order-shipped-v1"); err != nil {
			t.Fatal(err)
		}
		if err := s2.DeleteSchema(ctx, p.ID, "order-shipped-v1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("delete twice: %v", err)
		}
		// Provisioning from YAML-shaped maps, idempotently.
		spec := []Spec{{ID: p.ID, Name: "shop", Schemas: []SchemaSpec{{Type: "refund-v1", Schema: map[string]any{
			"type": "object", "required": []any{"amount"}, "properties": map[string]any{"amount": map[string]any{"type": "number", "minimum": 0}},
		}}}}}
		for i := 0; i < 2; i++ {
			if err := s2.Provision(ctx, spec, slog.New(slog.DiscardHandler)); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := s2.Schema(p.ID, "refund-v1"); !ok {
			t.Fatal("provisioned schema missing")
		}
	})
}

// Two Stores on one backend (two nodes on one database, two handles on
// one state.db): a change through either takes effect in the other
// within a second, by Watch.
func TestChangesReachTheOtherNode(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		place := be.place(t)
		a, b := be.open(t, place), be.open(t, place)
		go b.Watch(ctx, 50*time.Millisecond, slog.New(slog.DiscardHandler))
		within := func(what string, ok func() bool) {
			t.Helper()
			deadline := time.Now().Add(time.Second)
			for !ok() {
				if time.Now().After(deadline) {
					t.Fatalf("%s: not seen by the other node within a second", what)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		p, err := a.Create(ctx, nil, "shop", Settings{WebhookAuth: WebhookAuthToken})
		if err != nil {
			t.Fatal(err)
		}
		within("a new project", func() bool { got, ok := b.Get(p.ID); return ok && got.Settings.WebhookAuth == WebhookAuthToken })
		tok, secret, err := a.CreateToken(ctx, p.ID, "crm", "")
		if err != nil {
			t.Fatal(err)
		}
		within("a new token", func() bool { pid, _, ok := b.Authenticate(secret); return ok && pid == p.ID })
		if _, err := a.RevokeToken(ctx, p.ID, tok.ID); err != nil {
			t.Fatal(err)
		}
		within("a revoked token", func() bool { _, _, ok := b.Authenticate(secret); return !ok })
		name := "shop2"
		if _, err := a.Update(ctx, p.ID, &name, nil); err != nil {
			t.Fatal(err)
		}
		within("a renamed project", func() bool { got, _ := b.Get(p.ID); return got.Name == "shop2" })
		if _, err := a.CreateEventType(ctx, EventType{ProjectID: p.ID, Slug: "buy", Kind: KindRevenue}); err != nil {
			t.Fatal(err)
		}
		within("an event type", func() bool { _, ok := b.EventType(p.ID, "buy"); return ok })
		if _, _, err := a.RegisterSchema(ctx, p.ID, "lead-v1", []byte(`{"type":"object"}`)); err != nil {
			t.Fatal(err)
		}
		within("a schema", func() bool { _, ok := b.Schema(p.ID, "lead-v1"); return ok })
		if err := a.Delete(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
		within("a deleted project", func() bool { _, ok := b.Get(p.ID); return !ok })
		// A project made by the other node meanwhile: an id given twice
		// is refused, an automatic one takes the next free id.
		id := uint32(40)
		if _, err := b.Create(ctx, &id, "b's", Settings{}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Create(ctx, &id, "a's", Settings{}); !errors.Is(err, ErrExists) {
			t.Fatalf("an id taken on the other node: %v", err)
		}
		next, err := a.Create(ctx, nil, "next", Settings{})
		if err != nil || next.ID != 41 {
			t.Fatalf("next %+v %v", next, err)
		}
	})
}

// Nodes that start at once agree on the first value stored.
func TestSetMetaOnce(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		place := be.place(t)
		a, b := be.open(t, place), be.open(t, place)
		if v, err := a.SetMetaOnce(ctx, "k", "first"); err != nil || v != "first" {
			t.Fatalf("%q %v", v, err)
		}
		if v, err := b.SetMetaOnce(ctx, "k", "second"); err != nil || v != "first" {
			t.Fatalf("%q %v", v, err)
		}
		// An emptied value (a reset) takes a new one.
		if err := b.SetMeta(ctx, "k", ""); err != nil {
			t.Fatal(err)
		}
		if v, _ := b.SetMetaOnce(ctx, "k", "third"); v != "third" {
			t.Fatalf("after a reset: %q", v)
		}
		if v, _ := a.Meta(ctx, "k"); v != "third" {
			t.Fatalf("meta %q", v)
		}
	})
}

// A database of the first schema is brought up to date, keeping what it
// holds.
func TestPostgresUpgradeFromFirstSchema(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pgmigrate.ApplyUpTo(ctx, pool, Migrations, 1); err != nil {
		t.Fatal(err)
	}
	h := HashSecret("sl_kept-secret")
	for _, q := range []string{
		`INSERT INTO projects (id, name, settings, created_at) VALUES (0, 'default', '{"app_id":"app_000000000001"}', 1), (5, 'old', '{"webhook_auth":"token","app_id":"app_000000000005"}', 2)`,
		`INSERT INTO meta (key, value) VALUES ('admin_token_sha256', 'abc')`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO tokens (id, project_id, name, hash, hint, created_at) VALUES ('tok_1', 5, 'crm', $1, 'sl_kept…', 3)`, h[:]); err != nil {
		t.Fatal(err)
	}
	if err := pgmigrate.Apply(ctx, pool, Migrations); err != nil {
		t.Fatal(err)
	}
	s, err := New(NewPostgres(pool), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := s.Get(5); !ok || p.Name != "old" || p.Settings.AuthMode() != WebhookAuthToken || p.Settings.AppID != "app_000000000005" {
		t.Fatalf("%+v %v", p, ok)
	}
	if pid, tid, ok := s.Authenticate("sl_kept-secret"); !ok || pid != 5 || tid != "tok_1" {
		t.Fatal("a token of the first schema no longer authenticates")
	}
	if v, _ := s.Meta(ctx, "admin_token_sha256"); v != "abc" {
		t.Fatalf("meta %q", v)
	}
	if _, err := s.Create(ctx, nil, "new", Settings{}); err != nil {
		t.Fatal(err)
	}
}

// A deleted version keeps its immutability: registered again, only the
// same document is taken (the events stored under the type were checked
// against it), and the rule survives a reopen of the store.
func TestDeletedSchemaVersionStaysImmutable(t *testing.T) {
	forBackends(t, func(t *testing.T, be backend) {
		ctx := context.Background()
		place := be.place(t)
		s := be.open(t, place)
		p, _ := s.Create(ctx, nil, "shop", Settings{})
		first := []byte(`{"type":"object","required":["carrier"]}`)
		if _, _, err := s.RegisterSchema(ctx, p.ID, "order-shipped-v1", first); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteSchema(ctx, p.ID, "order-shipped-v1"); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.RegisterSchema(ctx, p.ID, "order-shipped-v1", []byte(`{"type":"array"}`))
		var fe interface{ FieldErrors() event.FieldErrors }
		if !errors.Is(err, ErrExists) || !errors.As(err, &fe) || len(fe.FieldErrors()) != 1 || fe.FieldErrors()[0] != (event.FieldError{Path: "schema",
			Message: "order-shipped-v1 was registered with a different schema and deleted; versions are immutable: register the next version instead"}) {
			t.Fatalf("another document after a delete: %v", err)
		}
		s.Close()
		s = be.open(t, place)
		if _, _, err := s.RegisterSchema(ctx, p.ID, "order-shipped-v1", []byte(`{"type":"array"}`)); !errors.Is(err, ErrExists) {
			t.Fatalf("after a reopen: %v", err)
		}
		if _, created, err := s.RegisterSchema(ctx, p.ID, "order-shipped-v1", []byte(`{ "type": "object", "required": ["carrier"] }`)); err != nil || !created {
			t.Fatalf("the same document again: %v %v", created, err)
		}
		if _, ok := s.Schema(p.ID, "order-shipped-v1"); !ok {
			t.Fatal("not registered again")
		}
	})
}
