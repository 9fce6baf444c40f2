package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The commerce dialect through the real server: schemas from YAML and
// the admin API, every built-in type in one batch, purchases unique per
// project, and hash_pii keeping raw e-mail addresses and phone numbers
// off the disk.
func TestCommerceEndToEnd(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(cfg, []byte(`
projects:
  - id: 1
    name: shop-a
    tokens: [{name: a, secret: shop-a-token}]
    schemas:
      - type: order-shipped-v1
        schema:
          type: object
          required: [carrier]
          properties:
            carrier: {enum: [dhl, ups]}
  - id: 2
    name: shop-b
    settings: {hash_pii: true, default_region: RU}
    tokens: [{name: b, secret: shop-b-token}]
`), 0o600)
	s := startServer(t, t.TempDir(), "--config", cfg)
	post := func(token, body string) (int, map[string]any) {
		t.Helper()
		r := do(t, "POST", s.ingest+"/v1/events", "application/json", body, "Authorization", "Bearer "+token)
		var m map[string]any
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatalf("answer %d %q", r.status, r.body)
		}
		return r.status, m
	}
	admin := func(method, path, body string) response {
		return do(t, method, s.admin+path, "application/json", body, "Authorization", "Bearer "+testAdminToken)
	}

	// The thirteen built-in schemas are served.
	r := admin("GET", "/api/v1/schemas", "")
	var builtins struct{ Schemas []struct{ Type string } }
	if json.Unmarshal(r.body, &builtins) != nil || r.status != 200 || len(builtins.Schemas) != 13 {
		t.Fatalf("GET /api/v1/schemas: %d %s", r.status, r.body)
	}

	// One event of every built-in type, a custom one and the YAML-registered
	// type, in one batch: all accepted, keys by type.
	const emailHash = "f660ab912ec121d1b1e928a0bb4bc61b15f5ad44d5efdc4e1c92a25e99b8e44a"
	const phoneHash = "e0ddcaa553aa7832152ee9dda549102b47a9d7084dfd1a4130ed3f1c0f27be4a"
	cart := `"cart":[{"productId":"sku-4324-bg","quantity":2,"itemPrice":12.34}]`
	props := map[string]string{
		"add-to-cart-v1":             `"value":24.68,"currency":"RUB","productId":"sku-4324-bg","quantity":2,` + cart,
		"purchase-v1":                `"uniqueTransactionId":"123456","value":24.68,"currency":"RUB",` + cart,
		"remove-from-cart-v1":        `"value":12.34,"productId":"sku-4324-bg","quantity":1,` + cart,
		"sync-cart-v1":               cart,
		"add-to-wishlist-v1":         `"productId":"item-34454"`,
		"change-attr-v1":             `"attributeType":"Color","attributeValue":"Navy Blue"`,
		"filter-items-v1":            `"filterType":"Size","filterStringValue":"XL"`,
		"keyword-search-v1":          `"keywords":"my search string"`,
		"enter-promo-code-v1":        `"code":"WINTER"`,
		"sort-items-v1":              `"sortBy":"price","sortOrder":"DESC"`,
		"newsletter-subscription-v1": `"hashedEmail":"` + emailHash + `"`,
		"signup-v1":                  `"cuid":"crm-1","cuidType":"crm_id"`,
		"login-v1":                   `"cuid":"` + phoneHash + `","cuidType":"phone_hash"`,
		"order-shipped-v1":           `"carrier":"ups"`,
	}
	var items []string
	for typ, p := range props {
		items = append(items, `{"name":"`+typ+`","anonymousId":"anon-1","properties":{"eventType":"`+typ+`",`+p+`}}`)
	}
	items = append(items, `{"name":"Viewed Reviews","userId":"u-1","properties":{"value":"3.5"}}`)
	status, ans := post("shop-a-token", `{"batch":[`+strings.Join(items, ",")+`]}`)
	if status != 200 || ans["accepted"] != float64(len(items)) {
		t.Fatalf("batch: %d %v", status, ans)
	}
	stored := s.events(t, "project=1&key=in.commerce.*")
	keys := map[string]bool{}
	for _, e := range stored {
		keys[e.Key] = true
	}
	for typ := range props {
		if !keys["in.commerce."+typ] {
			t.Errorf("no in.commerce.%s stored: %v", typ, keys)
		}
	}
	if !keys["in.commerce.custom.viewed_reviews"] {
		t.Errorf("custom event missing: %v", keys)
	}

	// A second purchase with the same uniqueTransactionId: 200, duplicate,
	// nothing stored. Project B's purchase 123456 is its own.
	first := ""
	for _, e := range stored {
		if e.Key == "in.commerce.purchase-v1" {
			first = e.ID.String()
		}
	}
	purchase := `{"name":"Purchase","userId":"u-2","properties":{"eventType":"purchase-v1","uniqueTransactionId":"123456","value":1}}`
	status, ans = post("shop-a-token", purchase)
	if status != 200 || ans["duplicate"] != true || ans["id"] != first {
		t.Fatalf("repeat purchase: %d %v (first %s)", status, ans, first)
	}
	status, ans = post("shop-b-token", purchase)
	if status != 200 || ans["duplicate"] == true {
		t.Fatalf("project B purchase: %d %v", status, ans)
	}
	if n := len(s.events(t, "project=1&key=in.commerce.purchase-v1")); n != 1 {
		t.Fatalf("project 1 holds %d purchases", n)
	}

	// A new version registered through the API is taken at once; the old
	// one is untouched; a changed body for an existing version is refused.
	if r := admin("POST", "/api/v1/projects/1/schemas", `{"type":"order-shipped-v2","schema":{"type":"object","required":["parcels"],"properties":{"parcels":{"type":"integer","minimum":1}}}}`); r.status != 201 {
		t.Fatalf("register v2: %d %s", r.status, r.body)
	}
	if r := admin("POST", "/api/v1/projects/1/schemas", `{"type":"order-shipped-v1","schema":{"type":"object"}}`); r.status != 409 {
		t.Fatalf("re-register v1: %d %s", r.status, r.body)
	}
	status, ans = post("shop-a-token", `{"name":"Shipped","userId":"u-1","properties":{"eventType":"order-shipped-v2","parcels":0}}`)
	if status != 400 || errorPath(ans) != "properties.parcels" {
		t.Fatalf("v2 invalid: %d %v", status, ans)
	}
	if status, ans = post("shop-a-token", `{"name":"Shipped","userId":"u-1","properties":{"eventType":"order-shipped-v2","parcels":2}}`); status != 200 {
		t.Fatalf("v2 valid: %d %v", status, ans)
	}
	if status, ans = post("shop-a-token", `{"name":"Shipped","userId":"u-1","properties":{"eventType":"order-shipped-v1","carrier":"fedex"}}`); status != 400 || errorPath(ans) != "properties.carrier" {
		t.Fatalf("v1 still validates: %d %v", status, ans)
	}
	// Project B does not see project A's types.
	if status, ans = post("shop-b-token", `{"name":"Shipped","userId":"u-1","properties":{"eventType":"order-shipped-v2","parcels":2}}`); status != 400 || errorPath(ans) != "properties.eventType" {
		t.Fatalf("B with A's type: %d %v", status, ans)
	}

	// hash_pii: the raw values never reach disk.
	status, ans = post("shop-b-token", `{"name":"Login","properties":{"eventType":"login-v1","phone":"+7 (999) 000-00-00","email":"Secret.Person@Example.com"}}`)
	if status != 200 {
		t.Fatalf("hash_pii login: %d %v", status, ans)
	}
	evs := s.events(t, "project=2&key=in.commerce.login-v1")
	if len(evs) != 1 || !strings.Contains(string(evs[0].Data), `"cuid":"`+phoneHash+`"`) || len(evs[0].Identities) != 2 {
		t.Fatalf("stored %+v", evs)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"events.db", "events.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(s.dir, f))
		if strings.Contains(string(b), "000-00-00") || strings.Contains(strings.ToLower(string(b)), "secret.person") {
			t.Fatalf("raw PII found in %s", f)
		}
	}
}

func errorPath(ans map[string]any) string {
	errs, _ := ans["errors"].([]any)
	if len(errs) != 1 {
		return ""
	}
	p, _ := errs[0].(map[string]any)["path"].(string)
	return p
}
