package profile

import (
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"

	"github.com/sluicehq/sluice/internal/event"
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
		{"productId":"x","quantity":"2.9","itemPrice":true},
		{"productId":1.50,"quantity":true},
		{"productId":1e3,"quantity":" 3"},
		{"productId":false,"quantity":1e20},
		{"productId":"y","quantity":"99999999999999999999"},
		{"productId":"z","quantity":-1e20}]`
	want := []CartItem{
		{ProductID: "sku-1", Quantity: 2, Price: "19.90"},
		{ProductID: "sku-é", Quantity: 3, Price: "4.5"},
		{ProductID: "42", Quantity: 2},
		{Quantity: 1},
		{Quantity: -1, Price: "1e3"},
		{ProductID: "x", Quantity: 2},
		{ProductID: "1.5", Quantity: 1},
		{ProductID: "1000"},
		{ProductID: "false", Quantity: 9223372036854775807},
		{ProductID: "y", Quantity: 9223372036854775807},
		{ProductID: "z", Quantity: -9223372036854775808},
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

// The hand-encoded document decodes into what encoding/json's encoding
// of the same observation decodes into.
func TestObservationDocument(t *testing.T) {
	obs := []Observation{
		{IDs: []event.Identity{{Type: "email_hash", Value: h("a")}}},
		{IDs: []event.Identity{{Type: "user_id", Value: "u\"1\\\n\t\x01<&>\u2028é😀"}, {Type: "anonymous_id", Value: "bad\xff\xfeutf8"}},
			Attrs: map[string]string{"city": `"Moscow"`, "z": `{"a":[1,2]}`, "a\x00b": `null`, "": `""`}},
		{IDs: []event.Identity{{Type: "phone_hash", Value: h("p")}}, Facts: Facts{Revenue: &Money{Currency: "RUB", Amount: "12.50"}}},
		{IDs: []event.Identity{{Type: "phone_hash", Value: h("p")}}, Facts: Facts{Purchase: &Purchase{OrderID: "o1", Items: []CartItem{{ProductID: "p\"1", Quantity: -3, Price: "1e3"}, {}}}, Cart: &CartOp{Op: "clear"}}},
		{IDs: []event.Identity{{Type: "phone_hash", Value: h("p")}}, Facts: Facts{Purchase: &Purchase{Value: "3", Currency: "EUR"}, Wishlist: []string{"w1", "w\"2"}}},
		{IDs: []event.Identity{{Type: "phone_hash", Value: h("p")}}, Facts: Facts{Purchase: &Purchase{}, Cart: &CartOp{Op: "replace", Items: []CartItem{{ProductID: "x", Quantity: 1}}}}},
		{IDs: []event.Identity{{Type: "phone_hash", Value: h("p")}}, Facts: Facts{Wishlist: []string{}}},
	}
	for _, e := range append(randomEvents(rand.New(rand.NewPCG(1, 1)), 300), ev(1, 1, "in.commerce.purchase-v1", 5, `{"properties":{"eventType":"purchase-v1","uniqueTransactionId":"t","value":5,"currency":"RUB","cart":[{"productId":"a","quantity":2,"itemPrice":2.5}]}}`, "email_hash="+h("x"))) {
		if o, ok := Observe(e); ok {
			obs = append(obs, o)
		}
	}
	for i, o := range obs {
		checkDocument(t, i, &o)
	}
}

func checkDocument(t *testing.T, i int, o *Observation) {
	t.Helper()
	doc := o.document()
	if !json.Valid(doc) {
		t.Fatalf("observation %d: invalid JSON %s", i, doc)
	}
	std, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var got, want Observation
	if err := json.Unmarshal(doc, &got); err != nil {
		t.Fatalf("observation %d: %v in %s", i, err, doc)
	}
	if err := json.Unmarshal(std, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("observation %d decodes otherwise\n doc %s\nwant %s", i, doc, std)
	}
}

func FuzzObservationDocument(f *testing.F) {
	f.Add("user_id", "u1", "city", `"x"`, "p1", int64(2), "1.5", "w")
	f.Add("a\x00", "\xff\"\\", "\u2028", "{}", "", int64(-1), "", "")
	f.Fuzz(func(t *testing.T, typ, value, attr, attrValue, product string, qty int64, price, wish string) {
		o := Observation{IDs: []event.Identity{{Type: typ, Value: value}}, Attrs: map[string]string{attr: attrValue},
			Facts: Facts{Purchase: &Purchase{OrderID: value, Value: price, Items: []CartItem{{ProductID: product, Quantity: qty, Price: price}}},
				Cart: &CartOp{Op: product, Items: []CartItem{{ProductID: wish}}}, Wishlist: []string{wish}, Revenue: &Money{Currency: attr, Amount: price}}}
		checkDocument(t, 0, &o)
	})
}

// Amounts added in fixed point give what big.Rat gives.
func TestRevenueFixedPointAsBigRat(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	amounts := []string{"0", "-0", "0.0", "007.50", "1e3", "1.5E-2", "0.000000001", "99999999999", "9999999999.99999999", "-9999999999.99999999",
		"12.3456789", "-0.00000001", "3", "-3", "1.10000000", "123456789012345678901234567890"}
	for range 300 {
		a := fmt.Sprintf("%d.%0*d", r.IntN(2_000_000_000), 1+r.IntN(9), r.IntN(1_000_000_000))
		amounts = append(amounts, a, "-"+a, strconv.Itoa(r.IntN(1000)))
	}
	var fast traits
	slow := map[string]*big.Rat{}
	for i, a := range amounts {
		cur := []string{"RUB", "USD"}[i%2]
		fast.addRevenue(cur, a)
		add, ok := new(big.Rat).SetString(a)
		if !ok {
			t.Fatalf("%q", a)
		}
		if slow[cur] == nil {
			slow[cur] = new(big.Rat)
		}
		// decimal rounds each sum, and the next sum starts from it.
		slow[cur].Add(slow[cur], add)
		want := decimal(slow[cur])
		slow[cur].SetString(want)
		if got := fast.Revenue[cur]; got != want {
			t.Fatalf("after adding %q: %s, want %s", a, got, want)
		}
	}
	for _, c := range []struct {
		v    int64
		want string
	}{{0, "0"}, {-1, "-0.00000001"}, {150_000_000, "1.5"}, {-150_000_000, "-1.5"}, {100_000_000, "1"}, {12, "0.00000012"}} {
		if got := formatFixed(c.v); got != c.want {
			t.Errorf("formatFixed(%d) = %s, want %s", c.v, got, c.want)
		}
	}
}
