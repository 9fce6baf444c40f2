package schema

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Every built-in schema has a fast path.
func TestBuiltinsHaveAFastPath(t *testing.T) {
	for _, s := range Builtins() {
		if s.fast == nil {
			t.Errorf("%s has no fast path", s.Type)
		}
	}
}

func decodeNum(t testing.TB, b []byte) any {
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// The fast path agrees with the library on what it accepts, and accepts
// the valid events of the seed.
func TestFastPathAgrees(t *testing.T) {
	const h = "f660ab912ec121d1b1e928a0bb4bc61b15f5ad44d5efdc4e1c92a25e99b8e44a"
	for _, c := range []struct {
		typ, doc string
		valid    bool
	}{
		{"purchase-v1", `{"eventType":"purchase-v1","uniqueTransactionId":"t-1","value":90.55,"currency":"RUB","cart":[{"productId":"a","quantity":1,"itemPrice":65.87}]}`, true},
		{"purchase-v1", `{"eventType":"purchase-v1","uniqueTransactionId":"t-1","value":90.55,"currency":"RUR"}`, false},
		{"purchase-v1", `{"eventType":"purchase-v1","uniqueTransactionId":"","value":1}`, false},
		{"purchase-v1", `{"eventType":"purchase-v1","uniqueTransactionId":"t","value":"1"}`, false},
		{"purchase-v1", `{"eventType":"purchase-v1","uniqueTransactionId":"t","value":1,"cart":[{"productId":"a","quantity":1.5,"itemPrice":1}]}`, false},
		{"purchase-v1", `{"eventType":"purchase-v1","uniqueTransactionId":"t","value":1,"cart":[{"productId":"a","quantity":2.0,"itemPrice":1}]}`, true},
		{"purchase-v1", `{"eventType":"purchase-v1","uniqueTransactionId":"t","value":1,"cart":[{"productId":"a","quantity":0,"itemPrice":1}]}`, false},
		{"purchase-v1", `{"eventType":"purchase-v1","uniqueTransactionId":"t","value":1,"cuid":"c"}`, false},
		{"purchase-v1", `{"eventType":"purchase-v1","uniqueTransactionId":"t","value":1,"hashedEmail":"` + h + `"}`, true},
		{"purchase-v1", `{"eventType":"purchase-v1","uniqueTransactionId":"t","value":1,"hashedEmail":"` + h[:63] + `"}`, false},
		{"filter-items-v1", `{"eventType":"filter-items-v1","filterType":"c","filterStringValue":"r"}`, true},
		{"filter-items-v1", `{"eventType":"filter-items-v1","filterType":"c","filterStringValue":"r","filterNumericValue":1}`, false},
		{"filter-items-v1", `{"eventType":"filter-items-v1","filterType":"c"}`, false},
		{"sort-items-v1", `{"eventType":"sort-items-v1","sortBy":"price","sortOrder":"ASC"}`, true},
		{"sort-items-v1", `{"eventType":"sort-items-v1","sortBy":"price","sortOrder":"asc"}`, false},
		{"login-v1", `{"eventType":"login-v1","cuid":"` + h + `","cuidType":"phone_hash"}`, true},
	} {
		s, _ := Builtin(c.typ)
		lib := len(s.Validate(decodeNum(t, []byte(c.doc)), "properties")) == 0
		if lib != c.valid {
			t.Fatalf("%s %s: the library says valid=%v", c.typ, c.doc, lib)
		}
		if fast := s.ValidFast([]byte(c.doc)); fast != c.valid {
			t.Errorf("%s %s: fast says %v, want %v", c.typ, c.doc, fast, c.valid)
		}
	}
	// A registered schema with a keyword the fast path does not know goes
	// to the library only.
	s, err := Compile("order-shipped-v1", []byte(`{"type":"object","additionalProperties":false,"properties":{"carrier":{"enum":["dhl","ups"]}}}`))
	if err != nil || s.fast != nil {
		t.Fatalf("fast path for additionalProperties: %v", err)
	}
	s, _ = Compile("order-shipped-v2", []byte(`{"type":"object","required":["carrier"],"properties":{"carrier":{"enum":["dhl","ups"]},"n":{"type":["integer","null"]}}}`))
	if s.fast == nil || !s.ValidFast([]byte(`{"carrier":"dhl","n":null}`)) || s.ValidFast([]byte(`{"carrier":"fedex"}`)) {
		t.Fatal("registered schema's fast path")
	}
}

// FuzzFastPathNeverAcceptsWhatTheLibraryRefuses holds the fast path to
// its promise, for every built-in schema.
func FuzzFastPathNeverAcceptsWhatTheLibraryRefuses(f *testing.F) {
	f.Add("purchase-v1", []byte(`{"eventType":"purchase-v1","uniqueTransactionId":"t-1","value":90.55,"currency":"RUB","cart":[{"productId":"a","quantity":1,"itemPrice":65.87}]}`))
	f.Add("add-to-cart-v1", []byte(`{"eventType":"add-to-cart-v1","value":1,"productId":"p","quantity":2,"cart":[]}`))
	f.Add("filter-items-v1", []byte(`{"eventType":"filter-items-v1","filterType":"c","filterNumericValue":1e3}`))
	f.Add("signup-v1", []byte(`{"eventType":"signup-v1","cuid":"c","cuidType":"crm"}`))
	f.Fuzz(func(t *testing.T, typ string, doc []byte) {
		s, ok := Builtin(typ)
		if !ok || !json.Valid(doc) {
			return
		}
		var compact bytes.Buffer
		json.Compact(&compact, doc)
		if !s.ValidFast(compact.Bytes()) {
			return
		}
		if errs := s.Validate(decodeNum(t, compact.Bytes()), "properties"); len(errs) > 0 {
			t.Fatalf("%s: the fast path accepted %s, the library refuses it: %v", typ, compact.Bytes(), errs)
		}
	})
}
