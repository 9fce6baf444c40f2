package profile

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/valyala/fastjson"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/identity"
)

// Observation is what one event says about its person: the identities it
// carries, the attributes it sets and the facts the traits are made of.
// Profiles are a fold of observations in their canonical order, so the
// same events give the same profiles whatever order they arrived in.
type Observation struct {
	EventID   event.ID          `json:"-"`
	ProjectID uint32            `json:"-"`
	Time      int64             `json:"-"`
	Digest    string            `json:"-"`
	Key       string            `json:"-"`
	IDs       []event.Identity  `json:"ids"`
	Attrs     map[string]string `json:"attrs,omitempty"` // name → JSON value
	Facts     Facts             `json:"facts,omitzero"`
	doc       []byte            // its stored document, when encoded ahead
}

// Facts are what an event adds to the traits.
type Facts struct {
	// Revenue is money the person spent (s2s revenue, commerce
	// purchase-v1, track Completed Transaction).
	Revenue *Money `json:"revenue,omitempty"`
	// Purchase marks the event as a purchase.
	Purchase *Purchase `json:"purchase,omitempty"`
	// Cart changes the current cart.
	Cart *CartOp `json:"cart,omitempty"`
	// Wishlist adds products to the wishlist.
	Wishlist []string `json:"wishlist,omitempty"`
}

// Money is an amount (a decimal number, as sent) in a currency.
type Money struct {
	Currency string `json:"currency"`
	Amount   string `json:"amount"`
}

// Purchase is one order.
type Purchase struct {
	OrderID  string     `json:"orderId,omitempty"`
	Value    string     `json:"value,omitempty"`
	Currency string     `json:"currency,omitempty"`
	Items    []CartItem `json:"items,omitempty"`
}

// CartItem is a product in a cart or an order.
type CartItem struct {
	ProductID string `json:"productId"`
	Quantity  int64  `json:"quantity"`
	Price     string `json:"price,omitempty"`
}

// CartOp is how an event changes the cart: it replaces it (sync-cart-v1,
// or any cart event that carries the cart), adds or removes items, or
// clears it (a purchase).
type CartOp struct {
	Op    string     `json:"op"` // replace, add, remove, clear
	Items []CartItem `json:"items,omitempty"`
}

// order is an observation's place in the canonical order: event time,
// then the digest of its content, then its id (which only tells apart
// events that say exactly the same thing).
type order struct {
	Time   int64    `json:"t"`
	Digest string   `json:"d"`
	ID     event.ID `json:"i"`
}

func (o *Observation) order() order { return order{Time: o.Time, Digest: o.Digest, ID: o.EventID} }

func (a order) zero() bool { return a == order{} }

func (a order) less(b order) bool { return a.compare(b) < 0 }

func (a order) compare(b order) int {
	if c := cmp.Compare(a.Time, b.Time); c != 0 {
		return c
	}
	if c := strings.Compare(a.Digest, b.Digest); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// Observe reads an event's observation; ok is false for an event without
// identities, which changes no profile.
func Observe(e *event.Event) (Observation, bool) {
	var ids []event.Identity
	for _, id := range e.Identities {
		if identity.Check(id) == nil {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return Observation{}, false
	}
	sum := sha256.New()
	sum.Write([]byte(e.Key))
	sum.Write([]byte{0})
	sum.Write(e.Data)
	o := Observation{
		EventID: e.ID, ProjectID: e.ProjectID, Time: e.Time, Key: e.Key,
		Digest: hex.EncodeToString(sum.Sum(nil)[:8]),
		IDs:    identity.Canonical(ids),
	}
	data := gjson.ParseBytes(e.Data)
	switch {
	case e.Key == "in.s2s.user":
		o.Attrs = s2sUserAttributes(data)
	case strings.HasPrefix(e.Key, "in.s2s.revenue."):
		o.Facts.Revenue = money(data.Get("currency").String(), data.Get("revenue"))
	case strings.HasPrefix(e.Key, "in.commerce."):
		observeCommerce(&o, data)
	case e.Key == "in.track.transaction.completed":
		observeTrackTransaction(&o, data)
	}
	if strings.HasPrefix(e.Key, "in.track.") {
		// The hit's user fields, but the identities themselves.
		o.Attrs = merge(o.Attrs, objectAttributes(data.Get("event.user"), "", map[string]bool{"userId": true, "anonymousId": true, "emailHash": true}))
	}
	return o, true
}

// s2sUserAttributes are a user message's fields: customAttributes
// flattened as customAttributes.<name>, phone as phoneNumber.
func s2sUserAttributes(msg gjson.Result) map[string]string {
	attrs := map[string]string{}
	msg.ForEach(func(k, v gjson.Result) bool {
		switch k.String() {
		case "type", "id", "time":
		case "customAttributes":
			v.ForEach(func(ck, cv gjson.Result) bool {
				attrs["customAttributes."+ck.String()] = cv.Raw
				return true
			})
		case "phone":
			attrs["phoneNumber"] = v.Raw
		default:
			attrs[k.String()] = v.Raw
		}
		return true
	})
	return attrs
}

// commerceProfileTypes are the commerce types whose properties describe
// the person.
var commerceProfileTypes = map[string]bool{"signup-v1": true, "newsletter-subscription-v1": true, "login-v1": true, "change-attr-v1": true}

// commerceIdentityFields are properties that are identities, not attributes.
var commerceIdentityFields = map[string]bool{"eventType": true, "hashedEmail": true, "cuid": true, "cuidType": true, "hashedPhone": true}

// commerceFields are the properties observeCommerce reads, in one pass.
var commerceFields = []string{"eventType", "currency", "value", "cart", "uniqueTransactionId", "productId", "quantity"}

func observeCommerce(o *Observation, data gjson.Result) {
	props := data.Get("properties")
	var f [7]gjson.Result
	pick(props, commerceFields, f[:])
	typ, currency, value, cart, txID, product, quantity := f[0].String(), f[1].String(), f[2], f[3], f[4], f[5], f[6]
	if commerceProfileTypes[typ] {
		o.Attrs = objectAttributes(props, "", commerceIdentityFields)
		if typ == "newsletter-subscription-v1" {
			o.Attrs["newsletterSubscribed"] = "true"
		}
	}
	switch typ {
	case "purchase-v1":
		o.Facts.Revenue = money(currency, value)
		items := cartItems(cart, "productId", "quantity", "itemPrice")
		o.Facts.Purchase = &Purchase{OrderID: txID.String(), Value: numberText(value), Currency: currency, Items: items}
		o.Facts.Cart = &CartOp{Op: "clear"}
	case "sync-cart-v1":
		o.Facts.Cart = &CartOp{Op: "replace", Items: cartItems(cart, "productId", "quantity", "itemPrice")}
	case "add-to-cart-v1", "remove-from-cart-v1":
		if cart.IsArray() {
			// The event carries the cart as it now is: it wins.
			o.Facts.Cart = &CartOp{Op: "replace", Items: cartItems(cart, "productId", "quantity", "itemPrice")}
			break
		}
		op := "add"
		if typ == "remove-from-cart-v1" {
			op = "remove"
		}
		o.Facts.Cart = &CartOp{Op: op, Items: []CartItem{{ProductID: product.String(), Quantity: quantity.Int()}}}
	case "add-to-wishlist-v1":
		if p := product.String(); p != "" {
			o.Facts.Wishlist = []string{p}
		}
	}
}

// pick reads the members of obj named in names into out, in one pass
// over obj: the first of each name, as Get reads it (a missing one stays
// the zero Result, as Get answers).
func pick(obj gjson.Result, names []string, out []gjson.Result) {
	if !obj.IsObject() {
		return
	}
	obj.ForEach(func(k, v gjson.Result) bool {
		for i, n := range names {
			if k.Str == n {
				if !out[i].Exists() {
					out[i] = v
				}
				break
			}
		}
		return true
	})
}

func observeTrackTransaction(o *Observation, hit gjson.Result) {
	tx := hit.Get("event.transaction")
	currency := tx.Get("currency").String()
	total := tx.Get("total")
	if !total.Exists() {
		total = hit.Get("event.value")
	}
	o.Facts.Revenue = money(currency, total)
	var items []CartItem
	tx.Get("lineItems").ForEach(func(_, li gjson.Result) bool {
		items = append(items, CartItem{ProductID: li.Get("product.id").String(), Quantity: li.Get("quantity").Int(),
			Price: numberText(li.Get("product.unitSalePrice"))})
		return true
	})
	o.Facts.Purchase = &Purchase{OrderID: tx.Get("orderId").String(), Value: numberText(total), Currency: currency, Items: items}
}

// objectAttributes are the members of obj as attributes (name → JSON),
// but those skipped.
func objectAttributes(obj gjson.Result, prefix string, skip map[string]bool) map[string]string {
	if !obj.IsObject() {
		return nil
	}
	attrs := map[string]string{}
	obj.ForEach(func(k, v gjson.Result) bool {
		if !skip[k.String()] && v.Type != gjson.Null {
			attrs[prefix+k.String()] = v.Raw
		}
		return true
	})
	return attrs
}

func merge(a, b map[string]string) map[string]string {
	if len(b) == 0 {
		return a
	}
	if a == nil {
		return b
	}
	for k, v := range b {
		a[k] = v
	}
	return a
}

func cartItems(arr gjson.Result, id, qty, price string) []CartItem {
	if !arr.IsArray() {
		return nil
	}
	// One parse of the cart (gjson reads each item twice more: its
	// fields one scan each); the schemas make its fields strings and
	// numbers, read here as gjson's String, Int and numberText would.
	p := cartParsers.Get()
	defer cartParsers.Put(p)
	v, err := p.Parse(arr.Raw)
	if err != nil {
		return nil
	}
	vs, _ := v.Array()
	items := make([]CartItem, 0, len(vs))
	for _, it := range vs {
		items = append(items, CartItem{ProductID: valueText(it.Get(id)), Quantity: jsonInt(it.Get(qty)), Price: jsonNumberText(it.Get(price))})
	}
	return items
}

var cartParsers fastjson.ParserPool

// valueText is v as text, as gjson's String reads it: a string's value
// (the schemas' case, read here), anything else through gjson.
func valueText(v *fastjson.Value) string {
	if v == nil {
		return ""
	}
	if v.Type() == fastjson.TypeString {
		b, _ := v.StringBytes()
		return string(b)
	}
	return gjson.ParseBytes(v.MarshalTo(nil)).String()
}

// jsonInt is v as an integer, as gjson's Int reads it: an integer
// number's (the schemas' case, read here), anything else through gjson.
func jsonInt(v *fastjson.Value) int64 {
	if v == nil {
		return 0
	}
	if v.Type() == fastjson.TypeNumber {
		if n, err := v.Int64(); err == nil {
			return n
		}
	}
	return gjson.ParseBytes(v.MarshalTo(nil)).Int()
}

// jsonNumberText is numberText for a parsed value.
func jsonNumberText(v *fastjson.Value) string {
	if v == nil {
		return ""
	}
	var s string
	switch v.Type() {
	case fastjson.TypeNumber:
		s = string(v.MarshalTo(nil))
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		s = strings.TrimSpace(string(b))
	default:
		return ""
	}
	if !isDecimal(s) {
		return ""
	}
	return s
}

// money reads an amount, a JSON number or a numeric string; nil when it
// is neither or has no currency.
func money(currency string, v gjson.Result) *Money {
	amount := numberText(v)
	if amount == "" {
		return nil
	}
	if currency == "" {
		currency = "XXX" // ISO 4217's "no currency"
	}
	return &Money{Currency: strings.ToUpper(currency), Amount: amount}
}

// numberText is a number as decimal text ("" when v is not a number).
func numberText(v gjson.Result) string {
	var s string
	switch v.Type {
	case gjson.Number:
		s = v.Raw
	case gjson.String:
		s = strings.TrimSpace(v.String())
	default:
		return ""
	}
	if !isDecimal(s) {
		return ""
	}
	return s
}

// isDecimal reports whether s is -?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func isDecimal(s string) bool {
	i := 0
	digits := func() bool {
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	if !digits() {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(s)
}

// jsonText is a string as JSON.
func jsonText(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
