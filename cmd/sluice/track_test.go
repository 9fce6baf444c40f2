package main

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func seedTrackExample(t *testing.T) string {
	b, err := os.ReadFile("../../internal/dialect/testdata/track_seed_example.json")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func basic(token string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(token+":"))
}

// The track dialect through the real server: authentication in every way
// it can fail, and a token of project A never writes into project B.
func TestTrackEndToEnd(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfg, []byte(`
projects:
  - id: 1
    name: shop-a
    tokens: [{name: a, secret: abc123}]
  - id: 2
    name: shop-b
    tokens: [{name: b, secret: token-of-b}]
`), 0o600)
	s := startServer(t, t.TempDir(), "--config", cfg)
	hit := seedTrackExample(t)
	post := func(path, auth, body string) response {
		t.Helper()
		hdr := []string{}
		if auth != "" {
			hdr = []string{"Authorization", auth}
		}
		return do(t, "POST", s.ingest+path, "application/json", body, hdr...)
	}

	// Refused: no header, the wrong scheme, an unknown token.
	for _, auth := range []string{"", "Digest username=abc123", basic("nope-nope"), "Bearer nope-nope", "Basic %%%"} {
		r := post("/track", auth, hit)
		if r.status != 401 || r.header.Get("WWW-Authenticate") != `Basic realm="sluice"` {
			t.Fatalf("auth %q: %d %v %s", auth, r.status, r.header, r.body)
		}
		var e struct{ Message string }
		if json.Unmarshal(r.body, &e) != nil || e.Message == "" {
			t.Fatalf("auth %q: body %s", auth, r.body)
		}
	}

	// The seed's own request, verbatim, with the seed's header.
	r := post("/track", "Basic YWJjMTIzOg==", hit)
	if r.status != 200 {
		t.Fatalf("seed example: %d %s", r.status, r.body)
	}
	var ans struct{ ID, Key string }
	json.Unmarshal(r.body, &ans)
	if ans.Key != "in.track.transaction.completed" || ans.ID == "" {
		t.Fatalf("answer %s", r.body)
	}
	// The same hit again is a duplicate of the first.
	r = post("/track", "Basic YWJjMTIzOg==", hit)
	var dup struct {
		ID        string
		Duplicate bool
	}
	json.Unmarshal(r.body, &dup)
	if r.status != 200 || !dup.Duplicate || dup.ID != ans.ID {
		t.Fatalf("repeat: %d %s", r.status, r.body)
	}
	// The same hitId under project B's token is B's own event: project
	// isolation, and dedup per project.
	r = post("/track", "Bearer token-of-b", hit)
	var ansB struct{ ID, Key string }
	json.Unmarshal(r.body, &ansB)
	if r.status != 200 || ansB.ID == ans.ID {
		t.Fatalf("project B: %d %s", r.status, r.body)
	}
	evsA := s.events(t, "project=1&key=in.track.*")
	evsB := s.events(t, "project=2&key=in.track.*")
	if len(evsA) != 1 || evsA[0].ID.String() != ans.ID || evsA[0].ProjectID != 1 {
		t.Fatalf("project 1 holds %+v", evsA)
	}
	if len(evsB) != 1 || evsB[0].ID.String() != ansB.ID || evsB[0].ProjectID != 2 {
		t.Fatalf("project 2 holds %+v", evsB)
	}
	if evsA[0].TD.IP != "127.0.0.1" || !strings.Contains(string(evsA[0].Data), `"ip":"123.22.334.55"`) {
		t.Fatalf("td.ip %q, data %s", evsA[0].TD.IP, evsA[0].Data)
	}

	// A revoked token stops working at once.
	out, errOut, code := sluice(t, []string{"SLUICE_DATA_DIR=" + s.dir, "SLUICE_ADMIN_TOKEN=" + testAdminToken}, "token", "list", "--project", "2", "--json")
	var toks []struct{ ID string }
	if code != 0 || json.Unmarshal([]byte(out), &toks) != nil || len(toks) != 1 {
		t.Fatalf("token list: %d %s %s", code, out, errOut)
	}
	if _, errOut, code := sluice(t, []string{"SLUICE_DATA_DIR=" + s.dir, "SLUICE_ADMIN_TOKEN=" + testAdminToken}, "token", "revoke", "--project", "2", toks[0].ID); code != 0 {
		t.Fatalf("revoke: %s", errOut)
	}
	if r := post("/track", "Bearer token-of-b", strings.Replace(hit, "4c59d330", "5c59d330", 1)); r.status != 401 {
		t.Fatalf("revoked token: %d %s", r.status, r.body)
	}

	// A batch: valid hits stored, invalid ones reported, in order.
	h2 := strings.Replace(hit, "4c59d330", "6c59d330", 1)
	bad := strings.Replace(strings.Replace(hit, "4c59d330", "7c59d330", 1), `"quantity": 1,`, `"quantity": 1.5,`, 1)
	r = post("/track/batch", basic("abc123"), `{"batch":[`+h2+`,`+bad+`,`+hit+`]}`)
	var batch struct {
		Accepted, Duplicates, Invalid int
		Results                       []struct {
			Status string
			ID     string
			Errors []struct{ Path, Message string }
		}
	}
	if err := json.Unmarshal(r.body, &batch); err != nil || r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	if batch.Accepted != 1 || batch.Invalid != 1 || batch.Duplicates != 1 ||
		batch.Results[0].Status != "accepted" || batch.Results[1].Status != "invalid" || batch.Results[2].Status != "duplicate" ||
		batch.Results[2].ID != ans.ID || batch.Results[1].Errors[0].Path != "event.transaction.lineItems[0].quantity" {
		t.Fatalf("batch answer %s", r.body)
	}
	if n := len(s.events(t, "project=1&key=in.track.*")); n != 2 {
		t.Fatalf("project 1 holds %d track events, want 2", n)
	}
}
