package ga4sink

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/identity"
	"github.com/sluicehq/sluice/internal/sink"
)

// The mapping from sluice's events to GA4's (docs/destinations.md has it
// as tables). The track dialect's Completed Transaction and the typed
// commerce events become GA4's recommended events with their parameters;
// every other event goes under its sanitised name. Every event also
// carries the hook's custom_data, the project's custom dimensions and
// metrics (those not named in user_properties) and sluice_event_id.

// Track and commerce keys and fields the mapping reads.
const (
	trackTransactionKey = "in.track.transaction.completed"
	commercePrefix      = "in.commerce."
	s2sRevenuePrefix    = "in.s2s.revenue."
	EventIDParam        = "sluice_event_id"
)

// commerceEvents are the typed commerce events with a GA4 name.
var commerceEvents = map[string]string{
	"purchase-v1": "purchase", "add-to-cart-v1": "add_to_cart", "remove-from-cart-v1": "remove_from_cart",
	"add-to-wishlist-v1": "add_to_wishlist", "keyword-search-v1": "search", "signup-v1": "sign_up", "login-v1": "login",
}

// param is one event (or item) parameter or user property, in the order
// written.
type param struct {
	name  string
	str   string
	num   string // a JSON number, when the value is one
	isNum bool
	items [][]param
}

func str(n, s string) param { return param{name: n, str: s} }

func num(n, raw string) param { return param{name: n, num: raw, isNum: true} }

// gaEvent is one mapped event with what its request needs.
type gaEvent struct {
	eventID   string
	name      string
	params    []param
	clientID  string
	userID    string
	timeMs    int64
	userProps []param
}

// mapEvent maps one hook message.
func mapEvent(msg []byte, md sink.Meta, userProps map[string]bool) *gaEvent {
	m := gjson.ParseBytes(msg)
	data := m.Get("data")
	key, dialect := m.Get("key").String(), m.Get("dialect").String()
	ev := &gaEvent{eventID: m.Get("id").String(), timeMs: m.Get("time").Int()}
	switch {
	case key == trackTransactionKey:
		ev.name, ev.params = "purchase", trackPurchase(data)
	case dialect == "commerce" && strings.HasPrefix(key, commercePrefix) && commerceEvents[strings.TrimPrefix(key, commercePrefix)] != "":
		typ := strings.TrimPrefix(key, commercePrefix)
		ev.name, ev.params = commerceEvents[typ], commerceParams(typ, data.Get("properties"))
	case dialect == "s2s" && strings.HasPrefix(key, s2sRevenuePrefix):
		ev.name = sanitize(data.Get("name").String())
		ev.params = appendNumber(ev.params, "value", data.Get("revenue"))
		ev.params = appendString(ev.params, "currency", data.Get("currency"))
	default:
		ev.name = sanitize(m.Get("name").String())
	}
	if ev.name == "" { // a name of nothing but punctuation: the key's last segment
		ev.name = sanitize(key[strings.LastIndexByte(key, '.')+1:])
	}
	m.Get("custom_data").ForEach(func(k, v gjson.Result) bool {
		ev.params = append(ev.params, str(k.String(), v.String()))
		return true
	})
	for _, c := range md.Custom {
		v := gjson.ParseBytes(c.Value)
		p := str(c.Name, v.String())
		if v.IsArray() || v.IsObject() {
			p = str(c.Name, v.Raw)
		}
		if c.Metric && v.Type == gjson.Number {
			p = num(c.Name, v.Raw)
		}
		if userProps[c.Name] {
			ev.userProps = append(ev.userProps, p)
		} else {
			ev.params = append(ev.params, p)
		}
	}
	ev.params = append(ev.params, str(EventIDParam, ev.eventID))
	ev.clientID, ev.userID = identities(m, md)
	return ev
}

// trackPurchase is the track dialect's Completed Transaction as GA4's
// purchase.
func trackPurchase(data gjson.Result) []param {
	tr := data.Get("event.transaction")
	var ps []param
	ps = appendString(ps, "transaction_id", tr.Get("orderId"))
	ps = appendNumber(ps, "value", tr.Get("total"))
	cur := tr.Get("currency")
	if cur.String() == "" {
		cur = data.Get("event.website.currency")
	}
	ps = appendString(ps, "currency", cur)
	ps = appendNumber(ps, "shipping", tr.Get("shippingCost"))
	ps = appendString(ps, "coupon", tr.Get("voucher"))
	var items [][]param
	tr.Get("lineItems").ForEach(func(_, li gjson.Result) bool {
		p := li.Get("product")
		var it []param
		it = appendString(it, "item_id", p.Get("id"))
		it = appendString(it, "item_name", p.Get("name"))
		it = appendString(it, "item_category", p.Get("category"))
		it = appendString(it, "item_brand", p.Get("manufacturer"))
		price := p.Get("unitSalePrice")
		if !price.Exists() {
			price = p.Get("unitPrice")
		}
		it = appendNumber(it, "price", price)
		it = appendNumber(it, "quantity", li.Get("quantity"))
		if full, sale := p.Get("unitPrice"), p.Get("unitSalePrice"); full.Type == gjson.Number && sale.Type == gjson.Number && full.Float() > sale.Float() {
			it = append(it, num("discount", strconv.FormatFloat(full.Float()-sale.Float(), 'f', -1, 64)))
		}
		items = append(items, it)
		return true
	})
	if items != nil {
		ps = append(ps, param{name: "items", items: items})
	}
	return ps
}

// commerceParams are the GA4 parameters of a typed commerce event.
func commerceParams(typ string, props gjson.Result) []param {
	var ps []param
	switch typ {
	case "purchase-v1":
		ps = appendString(ps, "transaction_id", props.Get("uniqueTransactionId"))
	case "keyword-search-v1":
		return appendString(ps, "search_term", props.Get("keywords"))
	case "signup-v1", "login-v1":
		switch {
		case props.Get("cuidType").String() != "":
			return appendString(ps, "method", props.Get("cuidType"))
		case props.Get("hashedEmail").String() != "":
			return append(ps, str("method", "email"))
		}
		return ps
	}
	ps = appendNumber(ps, "value", props.Get("value"))
	ps = appendString(ps, "currency", props.Get("currency"))
	cartItem := func(c gjson.Result) []param {
		var it []param
		it = appendString(it, "item_id", c.Get("productId"))
		it = appendNumber(it, "price", c.Get("itemPrice"))
		return appendNumber(it, "quantity", c.Get("quantity"))
	}
	var items [][]param
	if typ == "purchase-v1" {
		props.Get("cart").ForEach(func(_, c gjson.Result) bool {
			items = append(items, cartItem(c))
			return true
		})
	} else if id := props.Get("productId"); id.Exists() {
		// The product the event is about; its price from the cart.
		it := appendString(nil, "item_id", id)
		props.Get("cart").ForEach(func(_, c gjson.Result) bool {
			if c.Get("productId").String() == id.String() {
				it = appendNumber(it, "price", c.Get("itemPrice"))
				return false
			}
			return true
		})
		it = appendNumber(it, "quantity", props.Get("quantity"))
		items = append(items, it)
	}
	if items != nil {
		ps = append(ps, param{name: "items", items: items})
	}
	return ps
}

// appendString adds v as a string parameter when it is a non-empty
// string or a number (ids written as numbers).
func appendString(ps []param, n string, v gjson.Result) []param {
	if (v.Type == gjson.String && v.Str != "") || v.Type == gjson.Number {
		return append(ps, str(n, v.String()))
	}
	return ps
}

// appendNumber adds v as a number parameter when it is one.
func appendNumber(ps []param, n string, v gjson.Result) []param {
	if v.Type == gjson.Number {
		return append(ps, num(n, v.Raw))
	}
	return ps
}

// userIDTypes are the identities that are a user id in GA4's sense (not
// hashed contact details).
var userIDTypes = []string{identity.TypeUserID, identity.TypeCustomUserID}

// identities are the event's GA client id and user id. The client id is
// the hit's GA client id, else the profile's, else one derived from the
// user: the first identity of the event (identities are in canonical
// order), else the profile id, else the event id, as "<a>.<b>", the
// first two 32-bit numbers of SHA-256("sluice:" + type + ":" + value),
// so that one user's events keep one client id and nothing readable is
// sent.
func identities(m gjson.Result, md sink.Meta) (clientID, userID string) {
	ids := m.Get("identities").Array()
	find := func(types ...string) string {
		for _, t := range types {
			for _, id := range ids {
				if id.Get("type").String() == t && id.Get("value").String() != "" {
					return id.Get("value").String()
				}
			}
		}
		return ""
	}
	clientID, userID = find(identity.TypeGAClientID), find(userIDTypes...)
	if md.Profile != nil {
		for _, t := range append([]string{identity.TypeGAClientID}, userIDTypes...) {
			for _, id := range md.Profile.Identities {
				if id.Type != t {
					continue
				}
				if t == identity.TypeGAClientID && clientID == "" {
					clientID = id.Value
				}
				if t != identity.TypeGAClientID && userID == "" {
					userID = id.Value
				}
			}
		}
	}
	if clientID == "" {
		seed := "event:" + m.Get("id").String()
		switch {
		case len(ids) > 0:
			seed = ids[0].Get("type").String() + ":" + ids[0].Get("value").String()
		case md.Profile != nil:
			seed = "profile:" + md.Profile.ID
		}
		clientID = DerivedClientID(seed)
	}
	return clientID, userID
}

// DerivedClientID is the client id of a user without a GA client id.
func DerivedClientID(seed string) string {
	h := sha256.Sum256([]byte("sluice:" + seed))
	return fmt.Sprintf("%d.%d", binary.BigEndian.Uint32(h[:4]), binary.BigEndian.Uint32(h[4:8]))
}

// problems are why ev cannot be sent: the protocol's limits.
func (ev *gaEvent) problems(nowMs int64) []string {
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	if p := eventName(ev.name); p != "" {
		add("%s", p)
	}
	if n := len(ev.params); n > MaxParamsPerEvent {
		add("%d parameters (custom_data and the project's custom fields count); GA4 takes at most %d", n, MaxParamsPerEvent)
	}
	for _, p := range ev.params {
		checkParam(p, "", add)
	}
	if n := len(ev.userProps); n > MaxUserProperties {
		add("%d user properties; GA4 takes at most %d", n, MaxUserProperties)
	}
	for _, p := range ev.userProps {
		if pr := userPropertyName(p.name); pr != "" {
			add("%s", pr)
		}
		if !p.isNum && len([]rune(p.str)) > MaxUserPropertyValue {
			add("user property %s is %d characters long; GA4 takes at most %d", p.name, len([]rune(p.str)), MaxUserPropertyValue)
		}
	}
	if len(ev.userID) > MaxUserIDLength {
		add("user_id is %d bytes long; GA4 takes at most %d", len(ev.userID), MaxUserIDLength)
	}
	if age := nowMs - ev.timeMs; age > MaxTimestampAge.Milliseconds() {
		add("it happened %s ago; GA4 takes events (timestamp_micros) up to 72 hours old", shortAge(age))
	}
	return out
}

func checkParam(p param, in string, add func(string, ...any)) {
	if pr := paramName(p.name); pr != "" {
		add("%s%s", in, pr)
	}
	switch {
	case p.items != nil:
		if n := len(p.items); n > MaxItemsPerEvent {
			add("%d items; GA4 takes at most %d", n, MaxItemsPerEvent)
		}
		for i, it := range p.items {
			custom := 0
			for _, ip := range it {
				if !standardItemParams[ip.name] {
					custom++
				}
				checkParam(ip, fmt.Sprintf("items[%d]: ", i), add)
			}
			if custom > MaxItemCustomParams {
				add("items[%d] has %d custom parameters; GA4 takes at most %d", i, custom, MaxItemCustomParams)
			}
			if !slices.ContainsFunc(it, func(ip param) bool { return ip.name == "item_id" || ip.name == "item_name" }) {
				add("items[%d] has neither item_id nor item_name", i)
			}
		}
	case !p.isNum:
		if n := len([]rune(p.str)); n > MaxParamValue {
			add("%sparameter %s is %d characters long; GA4 takes at most %d", in, p.name, n, MaxParamValue)
		}
	}
}

// standardItemParams are GA4's item parameters; the others are custom.
var standardItemParams = map[string]bool{
	"item_id": true, "item_name": true, "affiliation": true, "coupon": true, "discount": true, "index": true, "item_brand": true,
	"item_category": true, "item_category2": true, "item_category3": true, "item_category4": true, "item_category5": true,
	"item_list_id": true, "item_list_name": true, "item_variant": true, "location_id": true, "price": true, "quantity": true,
}

func shortAge(ms int64) string {
	h := ms / 3600000
	if h >= 48 {
		return fmt.Sprintf("%d days", h/24)
	}
	return fmt.Sprintf("%d hours", h)
}

// appendParams writes ps as a JSON object.
func appendParams(b []byte, ps []param) []byte {
	b = append(b, '{')
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, p.name)
		b = append(b, ':')
		switch {
		case p.items != nil:
			b = append(b, '[')
			for j, it := range p.items {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendParams(b, it)
			}
			b = append(b, ']')
		case p.isNum:
			b = append(b, p.num...)
		default:
			b = appendJSONString(b, p.str)
		}
	}
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}
