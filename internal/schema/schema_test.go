package schema

import (
	"bytes"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func decode(t *testing.T, s string) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestThirteenBuiltins(t *testing.T) {
	want := []string{"add-to-cart-v1", "add-to-wishlist-v1", "change-attr-v1", "enter-promo-code-v1", "filter-items-v1",
		"keyword-search-v1", "login-v1", "newsletter-subscription-v1", "purchase-v1", "remove-from-cart-v1",
		"signup-v1", "sort-items-v1", "sync-cart-v1"}
	if got := strings.Join(BuiltinTypes(), ","); got != strings.Join(want, ",") {
		t.Fatalf("built-ins %s", got)
	}
	for _, s := range Builtins() {
		if s.Title == "" || !bytes.Contains(s.Doc, []byte(`"const":"`+s.Type+`"`)) {
			t.Errorf("%s: title %q or eventType const missing", s.Type, s.Title)
		}
	}
}

func TestValidateListsEveryViolationWithPaths(t *testing.T) {
	s, _ := Builtin("purchase-v1")
	errs := s.Validate(decode(t, `{"eventType":"purchase-v1","uniqueTransactionId":"`+strings.Repeat("x", 65)+`","value":"90.55","currency":"RUR",
		"cart":[{"productId":"a","quantity":1,"itemPrice":1},{"productId":"b","quantity":0,"itemPrice":"12"},{"quantity":1.5}],
		"hashedEmail":"Test@TEST.com","cuid":"abc"}`), "properties")
	want := []string{
		"properties.value: must be a number (got a string)",
		"properties.currency: not an ISO 4217 currency code such as RUB, USD or EUR",
		"properties.cart[1].quantity: must be at least 1 (got 0)",
		"properties.cart[1].itemPrice: must be a number (got a string)",
		"properties.cart[2].productId: is required",
		"properties.cart[2].itemPrice: is required",
		"properties.cart[2].quantity: must be an integer (got a number)",
		"properties.hashedEmail: 'Test@TEST.com' does not match pattern '^[0-9a-f]{64}$'",
		"properties.uniqueTransactionId: must be at most 64 characters long (got 65)",
		"properties.cuidType: is required when cuid is present",
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Path+": "+e.Message)
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if ok := s.Validate(decode(t, `{"eventType":"purchase-v1","uniqueTransactionId":"123456","value":90.55,"currency":"RUB"}`), "properties"); ok != nil {
		t.Fatalf("valid purchase refused: %+v", ok)
	}
}

func TestCompileRefusesBadSchemas(t *testing.T) {
	for _, c := range []struct{ typ, doc string }{
		{"order-shipped-v1", `{"type":"objekt"}`},
		{"order-shipped-v1", `{"$ref":"https://example.com/remote.json"}`},
		{"order-shipped-v1", `[1]`},
		{"order-shipped-v1", `{`},
		{"Order-v1", `{}`},
		{"order-shipped", `{}`},
		{"order-v0", `{}`},
	} {
		if _, err := Compile(c.typ, []byte(c.doc)); err == nil {
			t.Errorf("%s %s compiled", c.typ, c.doc)
		}
	}
	s, err := Compile("order-shipped-v1", []byte(`{"type":"object","required":["carrier"],"properties":{"carrier":{"enum":["dhl","ups"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if errs := s.Validate(decode(t, `{"carrier":"fedex"}`), "properties"); len(errs) != 1 || errs[0].Path != "properties.carrier" {
		t.Fatalf("%+v", errs)
	}
}
