package profile

import (
	"reflect"
	"testing"

	"github.com/tidwall/gjson"
)

// The cart is read in one parse; each field reads as gjson's String,
// Int and numberText read it (the reading before).
func TestCartItems(t *testing.T) {
	raw := `[{"productId":"sku-1","quantity":2,"itemPrice":19.90},
		{"productId":"sku-\u00e9","quantity":"3","itemPrice":" 4.5 "},
		{"productId":42,"quantity":2.7,"itemPrice":"free"},
		{"quantity":1},
		{"productId":null,"quantity":-1,"itemPrice":1e3},
		{"productId":"x","quantity":"2.9","itemPrice":true}]`
	want := []CartItem{
		{ProductID: "sku-1", Quantity: 2, Price: "19.90"},
		{ProductID: "sku-é", Quantity: 3, Price: "4.5"},
		{ProductID: "42", Quantity: 2},
		{Quantity: 1},
		{Quantity: -1, Price: "1e3"},
		{ProductID: "x", Quantity: 2},
	}
	got := cartItems(gjson.Parse(raw), "productId", "quantity", "itemPrice")
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("cart items\n got %+v\nwant %+v", got, want)
	}
	// As the gjson reading gave them.
	var before []CartItem
	gjson.Parse(raw).ForEach(func(_, it gjson.Result) bool {
		before = append(before, CartItem{ProductID: it.Get("productId").String(), Quantity: it.Get("quantity").Int(), Price: numberText(it.Get("itemPrice"))})
		return true
	})
	if !reflect.DeepEqual(got, before) {
		t.Fatalf("cart items differ from gjson's reading\n got %+v\n gjson %+v", got, before)
	}
	for _, none := range []string{``, `{}`, `"cart"`, `[1,"a",null]`} {
		items := cartItems(gjson.Parse(none), "productId", "quantity", "itemPrice")
		for _, it := range items {
			if it != (CartItem{}) {
				t.Fatalf("cart %q gives %+v", none, items)
			}
		}
	}
}

func TestIsDecimal(t *testing.T) {
	for s, want := range map[string]bool{"0": true, "-1": true, "19.90": true, "1e3": true, "1.5E-2": true, "2e+10": true,
		"": false, "-": false, ".5": false, "1.": false, "1e": false, "1e+": false, "+1": false, "1.2.3": false, " 1": false, "0x10": false, "NaN": false} {
		if got := isDecimal(s); got != want {
			t.Errorf("isDecimal(%q) = %v, want %v", s, got, want)
		}
	}
}
