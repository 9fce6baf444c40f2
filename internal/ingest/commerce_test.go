package ingest

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

func postCommerce(t *testing.T, srv *Server, token, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest("POST", "/v1/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	var ans map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
		t.Fatalf("answer is not JSON: %q", rec.Body)
	}
	return rec.Code, ans
}

func errorPaths(ans map[string]any) string {
	var paths []string
	errs, _ := ans["errors"].([]any)
	for _, e := range errs {
		paths = append(paths, e.(map[string]any)["path"].(string))
	}
	sort.Strings(paths)
	return strings.Join(paths, " ")
}

// Each rule of issue 5, broken alone in an otherwise valid event: 400 with
// exactly the offending paths. The golden files hold the full answers;
// this table says what each must be.
func TestCommerceRules(t *testing.T) {
	srv, l := goldenServer(t, commerceClock)
	const hash = "f660ab912ec121d1b1e928a0bb4bc61b15f5ad44d5efdc4e1c92a25e99b8e44a"
	cart := `"cart":[{"productId":"a","quantity":1,"itemPrice":1.5}]`
	for _, c := range []struct {
		name, props, want string
	}{
		{"quantity positive", `"eventType":"add-to-cart-v1","value":1,"productId":"a","quantity":0`, "properties.quantity"},
		{"quantity integer", `"eventType":"add-to-cart-v1","value":1,"productId":"a","quantity":1.5`, "properties.quantity"},
		{"value number", `"eventType":"add-to-cart-v1","value":"1","productId":"a","quantity":1`, "properties.value"},
		{"itemPrice number", `"eventType":"sync-cart-v1","cart":[{"productId":"a","quantity":1,"itemPrice":"1"}]`, "properties.cart[0].itemPrice"},
		{"cart item fields", `"eventType":"sync-cart-v1","cart":[{}]`, "properties.cart[0].itemPrice properties.cart[0].productId properties.cart[0].quantity"},
		{"currency", `"eventType":"sync-cart-v1","currency":"RUR",` + cart, "properties.currency"},
		{"transaction id length", `"eventType":"purchase-v1","value":1,"uniqueTransactionId":"` + strings.Repeat("t", 65) + `"`, "properties.uniqueTransactionId"},
		{"filter both", `"eventType":"filter-items-v1","filterType":"Color","filterNumericValue":4,"filterStringValue":"red"`, "properties"},
		{"filter neither", `"eventType":"filter-items-v1","filterType":"Color"`, "properties"},
		{"sortOrder", `"eventType":"sort-items-v1","sortBy":"price","sortOrder":"asc"`, "properties.sortOrder"},
		{"cuid needs cuidType", `"eventType":"newsletter-subscription-v1","cuid":"c-1"`, "properties.cuidType"},
		{"login cuid hex", `"eventType":"login-v1","cuid":"79990000000","cuidType":"phone_hash"`, "properties.cuid"},
		{"login cuidType", `"eventType":"login-v1","cuid":"` + hash + `","cuidType":"crm_id"`, "properties.cuidType"},
		{"hashedEmail hex", `"eventType":"add-to-wishlist-v1","productId":"a","hashedEmail":"` + strings.ToUpper(hash) + `"`, "properties.hashedEmail"},
		{"raw email in hashedEmail", `"eventType":"signup-v1","hashedEmail":"a@b.example"`, "properties.hashedEmail"},
		{"raw email without hash_pii", `"eventType":"signup-v1","hashedEmail":"` + hash + `","email":"a@b.example"`, "properties.email"},
		{"unknown eventType", `"eventType":"refund-v1"`, "properties.eventType"},
		{"custom value", `"value":"12,50"`, "properties.value"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, ans := postCommerce(t, srv, "shop-token", `{"name":"E","userId":"u-1","properties":{`+c.props+`}}`)
			if status != 400 || errorPaths(ans) != c.want {
				t.Fatalf("status %d, paths %q, want 400 %q: %v", status, errorPaths(ans), c.want, ans)
			}
		})
	}
	recs, _ := l.Read(context.Background(), eventlog.Query{Limit: 10})
	if len(recs) != 0 {
		t.Fatalf("%d events stored from invalid requests", len(recs))
	}
	// The hints name the CLI.
	_, ans := postCommerce(t, srv, "shop-token", `{"name":"S","properties":{"eventType":"signup-v1","hashedEmail":"Test@TEST.com"}}`)
	if msg := ans["errors"].([]any)[0].(map[string]any)["message"].(string); !strings.Contains(msg, "sluice hash email") {
		t.Fatalf("hint: %s", msg)
	}
	_, ans = postCommerce(t, srv, "shop-token", `{"name":"L","properties":{"eventType":"login-v1","cuid":"+7 999 000-00-00","cuidType":"phone_hash"}}`)
	if msg := ans["errors"].([]any)[0].(map[string]any)["message"].(string); !strings.Contains(msg, "sluice hash phone") {
		t.Fatalf("hint: %s", msg)
	}
	// The unknown-type answer lists every built-in type and the project's own.
	_, ans = postCommerce(t, srv, "shop-token", `{"name":"E","userId":"u","properties":{"eventType":"refund-v1"}}`)
	msg := ans["errors"].([]any)[0].(map[string]any)["message"].(string)
	for _, typ := range []string{"add-to-cart-v1", "purchase-v1", "login-v1", "sync-cart-v1", "order-shipped-v1", "order-shipped-v2"} {
		if !strings.Contains(msg, typ) {
			t.Errorf("%s missing from %q", typ, msg)
		}
	}
}

// Seed 002: {name: "EVENT_NAME"} alone is a complete custom event, and
// hashedEmail and cuid are optional for newsletter-subscription-v1 and
// signup-v1. An event without identity is stored without one.
func TestCommerceEventsWithoutIdentity(t *testing.T) {
	srv, l := goldenServer(t, commerceClock)
	for _, body := range []string{
		`{"name":"EVENT_NAME"}`,
		`{"name":"Subscription","properties":{"eventType":"newsletter-subscription-v1"}}`,
		`{"name":"Signup","properties":{"eventType":"signup-v1"}}`,
	} {
		if status, ans := postCommerce(t, srv, "shop-token", body); status != 200 || ans["id"] == nil {
			t.Fatalf("%s: status %d %v", body, status, ans)
		}
	}
	recs, err := l.Read(context.Background(), eventlog.Query{})
	if err != nil || len(recs) != 3 {
		t.Fatalf("%d stored, %v", len(recs), err)
	}
	for i, key := range []string{"in.commerce.custom.event_name", "in.commerce.newsletter-subscription-v1", "in.commerce.signup-v1"} {
		e, err := event.Decode(recs[i].Body)
		if err != nil || e.Key != key || len(e.Identities) != 0 {
			t.Fatalf("event %d: %+v %v", i, e, err)
		}
	}
	// Identities that are there are still checked: a bad one is refused.
	if status, ans := postCommerce(t, srv, "shop-token", `{"name":"Signup","properties":{"eventType":"signup-v1","cuid":"c"}}`); status != 400 || errorPaths(ans) != "properties.cuidType" {
		t.Fatalf("status %d %v", status, ans)
	}
}

// With hash_pii, raw e-mail addresses and phone numbers never reach disk.
func TestCommerceHashPIIStoresOnlyHashes(t *testing.T) {
	srv, l := goldenServer(t, commerceClock)
	status, ans := postCommerce(t, srv, "pii-token", `{"name":"Login","properties":{"eventType":"login-v1","phone":"+7 (999) 000-00-00","email":"Test@TEST.com"}}`)
	if status != 200 {
		t.Fatalf("%d %v", status, ans)
	}
	recs, _ := l.Read(context.Background(), eventlog.Query{Limit: 10})
	if len(recs) != 1 {
		t.Fatalf("%d stored", len(recs))
	}
	body := string(recs[0].Body)
	for _, raw := range []string{"Test@TEST.com", "test@test.com", "999", "+7"} {
		if strings.Contains(body, raw) {
			t.Fatalf("raw %q stored: %s", raw, body)
		}
	}
	e, _ := event.Decode(recs[0].Body)
	want := map[string]string{"email_hash": "f660ab912ec121d1b1e928a0bb4bc61b15f5ad44d5efdc4e1c92a25e99b8e44a",
		"phone_hash": "e0ddcaa553aa7832152ee9dda549102b47a9d7084dfd1a4130ed3f1c0f27be4a"}
	if len(e.Identities) != 2 {
		t.Fatalf("identities %+v", e.Identities)
	}
	for _, id := range e.Identities {
		if want[id.Type] != id.Value {
			t.Fatalf("identity %+v", id)
		}
	}
}

// Concurrent purchases with one uniqueTransactionId store one event, and
// every answer names it.
func TestCommerceConcurrentPurchasesStoreOne(t *testing.T) {
	srv, l := goldenServer(t, commerceClock)
	const n = 24
	ids := make([]string, n)
	dups := make([]bool, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, ans := postCommerce(t, srv, "shop-token",
				`{"name":"Purchase","anonymousId":"a","properties":{"eventType":"purchase-v1","uniqueTransactionId":"tx-1","value":`+strings.Repeat("9", i%3+1)+`}}`)
			if status != 200 {
				t.Errorf("%d %v", status, ans)
				return
			}
			ids[i], _ = ans["id"].(string)
			dups[i], _ = ans["duplicate"].(bool)
		}()
	}
	wg.Wait()
	stored := 0
	for i := range ids {
		if ids[i] != ids[0] || ids[i] == "" {
			t.Fatalf("answers name different ids: %v", ids)
		}
		if !dups[i] {
			stored++
		}
	}
	recs, _ := l.Read(context.Background(), eventlog.Query{Limit: 100})
	if stored != 1 || len(recs) != 1 || recs[0].ID.String() != ids[0] {
		t.Fatalf("%d answers without duplicate, %d stored", stored, len(recs))
	}
}

// A number that does not fit what reads it is refused at its path, as
// track refuses one: a 64-bit integer where the event's schema (built in
// or registered) types it integer, a 64-bit float anywhere (quantity
// 99999999999999999999999 and 1e400, and value 1e400, were stored). In a
// batch the event fails alone.
func TestCommerceNumbersWithin64Bits(t *testing.T) {
	const integer = "must be an integer within 64 bits, from -9223372036854775808 to 9223372036854775807"
	const float = "must be a number within the range of a 64-bit float (at most about 1.8e308 either way)"
	const cart = `"eventType":"add-to-cart-v1","value":1,"productId":"a",`
	for _, c := range []struct {
		name, event string
		errors      string // "" for stored
	}{
		{"quantity beyond 64 bits", `{"name":"A","properties":{` + cart + `"quantity":99999999999999999999999}}`,
			`[{"path":"properties.quantity","message":"` + integer + `"}]`},
		{"quantity 1e400", `{"name":"A","properties":{` + cart + `"quantity":1e400}}`,
			`[{"path":"properties.quantity","message":"` + integer + `"}]`},
		{"purchase value 1e400", `{"name":"P","properties":{"eventType":"purchase-v1","uniqueTransactionId":"t-1","value":1e400}}`,
			`[{"path":"properties.value","message":"` + float + `"}]`},
		{"cart item", `{"name":"S","properties":{"eventType":"sync-cart-v1","cart":[{"productId":"a","quantity":1,"itemPrice":1},{"productId":"b","quantity":-9223372036854775809,"itemPrice":-1e309}]}}`,
			`[{"path":"properties.cart[1].quantity","message":"` + integer + `"},{"path":"properties.cart[1].itemPrice","message":"` + float + `"}]`},
		{"registered schema's integer", `{"name":"O","properties":{"eventType":"order-shipped-v2","carrier":"dhl","parcels":1e19}}`,
			`[{"path":"properties.parcels","message":"` + integer + `"}]`},
		{"custom value", `{"name":"C","properties":{"value":1e400}}`,
			`[{"path":"properties.value","message":"` + float + `"}]`},
		{"custom nested", `{"name":"C","properties":{"x":{"y z":[1,-2e308]}}}`,
			`[{"path":"properties.x[\"y z\"][1]","message":"` + float + `"}]`},
		{"largest integer", `{"name":"A","properties":{` + cart + `"quantity":9223372036854775807}}`, ""},
		{"whole number as a float", `{"name":"A","properties":{"eventType":"add-to-cart-v1","value":99999999999999999999999,"productId":"a","quantity":1e2}}`, ""},
		{"custom big number", `{"name":"C","properties":{"count":99999999999999999999999,"tiny":1e-400,"max":1.7976931348623157e308}}`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, l := goldenServer(t, commerceClock)
			a := send(t, srv, "POST", "/v1/events", c.event, map[string]string{"Authorization": "Bearer shop-token", "Content-Type": "application/json"})
			recs, err := l.Read(context.Background(), eventlog.Query{Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if c.errors == "" {
				if a.Status != 200 || len(recs) != 1 {
					t.Fatalf("status %d %s, %d stored", a.Status, a.Raw, len(recs))
				}
				return
			}
			if want := `{"message":"invalid event","errors":` + c.errors + "}\n"; a.Status != 400 || a.Raw != want || len(recs) != 0 {
				t.Fatalf("status %d %s(%d stored)\nwant 400 %s", a.Status, a.Raw, len(recs), want)
			}
			a = send(t, srv, "POST", "/v1/events", `{"batch":[{"name":"ok"},`+c.event+`]}`,
				map[string]string{"Authorization": "Bearer shop-token", "Content-Type": "application/json"})
			recs, err = l.Read(context.Background(), eventlog.Query{Limit: 10})
			if err != nil || len(recs) != 1 {
				t.Fatalf("%d stored, %v", len(recs), err)
			}
			want := `{"accepted":1,"duplicates":0,"invalid":1,"results":[{"status":"accepted","id":"` + recs[0].ID.String() + `","key":"in.commerce.custom.ok"},` +
				`{"status":"invalid","errors":` + c.errors + `}]}` + "\n"
			if a.Status != 200 || a.Raw != want {
				t.Fatalf("status %d %s\nwant 200 %s", a.Status, a.Raw, want)
			}
		})
	}
}
