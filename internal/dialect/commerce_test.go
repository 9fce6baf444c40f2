package dialect

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/project"
	"github.com/sluicehq/sluice/internal/schema"
)

func commerceFixture(t testing.TB) (*Commerce, *project.Project, *project.Project) {
	projects := fixtureProjects(t)
	ctx := context.Background()
	id := uint32(31)
	if _, err := projects.Create(ctx, &id, "pii", project.Settings{HashPII: true, DefaultRegion: "RU"}); err != nil {
		t.Fatal(err)
	}
	pii, _ := projects.Get(id)
	if _, _, err := projects.RegisterSchema(ctx, 7, "order-shipped-v1",
		[]byte(`{"type":"object","required":["carrier"],"properties":{"carrier":{"enum":["dhl","ups"]}}}`)); err != nil {
		t.Fatal(err)
	}
	shop, _ := projects.Get(7)
	return &Commerce{Projects: projects, EventLimit: 32 << 10, Now: func() time.Time { return seedTime }}, shop, pii
}

func commerceRequest(body []byte) *Request {
	hr := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(string(body)))
	hr.Header.Set("Content-Type", "application/json")
	return &Request{HTTP: hr, Body: body, ClientIP: "127.0.0.1", ReceivedAt: seedTime}
}

// purchase20 is the heaviest built-in type: a purchase with a 20-item cart.
func purchase20() []byte {
	var cart []string
	for i := 0; i < 20; i++ {
		cart = append(cart, fmt.Sprintf(`{"productId":"sku-%04d-bg","quantity":%d,"itemPrice":%d.99}`, i, i%3+1, 10+i))
	}
	return []byte(`{"name":"Purchase","anonymousId":"80ddb140-35c6-11e9-bd56-eb1c05e6de18","userId":"u2783187492","messageId":"m-1",` +
		`"timestamp":"2018-10-28T10:56:10.723Z","properties":{"eventType":"purchase-v1","uniqueTransactionId":"4686570087","value":1234.56,` +
		`"currency":"RUB","hashedEmail":"f660ab912ec121d1b1e928a0bb4bc61b15f5ad44d5efdc4e1c92a25e99b8e44a","cart":[` + strings.Join(cart, ",") + `]}}`)
}

func TestCommercePurchase20(t *testing.T) {
	c, shop, _ := commerceFixture(t)
	ev, batch, err := c.decode(shop, commerceRequest(purchase20()))
	if err != nil || batch != nil {
		t.Fatal(err)
	}
	if ev.Key != "in.commerce.purchase-v1" || ev.DedupKey != "commerce:purchase:4686570087" || ev.Name != "Purchase" ||
		ev.Time != time.Date(2018, 10, 28, 10, 56, 10, 723e6, time.UTC).UnixMilli() || len(ev.Identities) != 3 {
		t.Fatalf("%+v", ev)
	}
	if string(ev.Data) != string(purchase20()) {
		t.Fatal("data is not the event as sent")
	}
}

func TestNumericValue(t *testing.T) {
	for s, want := range map[string]bool{`1`: true, `-2.5`: true, `"12.50"`: true, `" 7 "`: true, `"1e3"`: true, `"-3.5e2"`: true,
		`"0x10"`: false, `"NaN"`: false, `"Infinity"`: false, `"1e999"`: false, `"12,50"`: false, `""`: false, `true`: false, `"1."`: false} {
		if got := numericValue([]byte(s)); got != want {
			t.Errorf("numericValue(%s) = %v, want %v", s, got, want)
		}
	}
}

// FuzzCommerceDecode: any body, for a plain project and a hash_pii one,
// gives events or a precise 4xx, never a panic; with hash_pii no raw
// "email" or "phone" property is ever stored.
func FuzzCommerceDecode(f *testing.F) {
	f.Add(purchase20(), false)
	f.Add([]byte(`{"name":"Login","properties":{"eventType":"login-v1","phone":"+7 (999) 000-00-00","email":"A@B.example"}}`), true)
	f.Add([]byte(`{"batch":[{"name":"x","userId":"u"},{"name":"y"},[1],{"name":"z","anonymousId":"a","properties":{"eventType":"filter-items-v1","filterType":"c","filterStringValue":"r"}}]}`), false)
	f.Add([]byte(`{"name":"S","properties":{"eventType":"order-shipped-v1","carrier":"fedex","cuid":"c"}}`), false)
	f.Add([]byte(`{"name":"E","userId":"u","timestamp":"2018-10-28T10:56:10Z","properties":{"value":"12.5","hashedEmail":"x@y"}}`), true)
	f.Add([]byte(`{"name":"A","properties":{"eventType":"add-to-cart-v1","value":1e400,"productId":"a","quantity":99999999999999999999999,"cart":[{"productId":"a","quantity":1e400,"itemPrice":-1e309}]}}`), false)
	f.Add([]byte(`{"name":"C","properties":{"value":1e400,"x":[{"y":-2e308}]}}`), false)
	c, shop, pii := commerceFixture(f)
	f.Fuzz(func(t *testing.T, body []byte, hashed bool) {
		p := shop
		if hashed {
			p = pii
		}
		ev, items, err := c.decode(p, commerceRequest(body))
		if err != nil {
			checkRefusal(t, err, false)
			return
		}
		check := func(e *event.Event) {
			if err := e.Validate(); err != nil {
				t.Fatalf("invalid event: %v", err)
			}
			if !strings.HasPrefix(e.Key, CommercePrefix) || e.ProjectID != p.ID {
				t.Fatalf("event %+v", e)
			}
			if !json.Valid(e.AppendJSON(nil)) {
				t.Fatal("event encodes to invalid JSON")
			}
			if hashed {
				var doc struct {
					Properties map[string]json.RawMessage `json:"properties"`
				}
				if json.Unmarshal(e.Data, &doc) == nil {
					if _, ok := doc.Properties["email"]; ok && string(doc.Properties["email"]) != "null" {
						t.Fatalf("raw email stored: %s", e.Data)
					}
					if _, ok := doc.Properties["phone"]; ok && string(doc.Properties["phone"]) != "null" {
						t.Fatalf("raw phone stored: %s", e.Data)
					}
				}
			}
		}
		if ev != nil {
			check(ev)
			return
		}
		for _, it := range items {
			if (it.Event == nil) == (len(it.Errors) == 0) {
				t.Fatalf("batch item %+v", it)
			}
			if it.Event != nil {
				check(it.Event)
			}
		}
	})
}

// BenchmarkCommercePurchase20 validates and converts a purchase-v1 with a
// 20-item cart against its JSON Schema (~1.9 KB).
func BenchmarkCommercePurchase20(b *testing.B) {
	c, shop, _ := commerceFixture(b)
	body := purchase20()
	r := commerceRequest(body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.decode(shop, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBaselineCommerceUnmarshal decodes the same event with
// encoding/json into a map: the same-run yardstick.
func BenchmarkBaselineCommerceUnmarshal(b *testing.B) {
	body := purchase20()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// Which numbers must be 64-bit integers follows the event's schema:
// properties, items and prefixItems, additionalProperties, local $refs,
// allOf/anyOf/oneOf and type lists; a schema that refers to itself is
// walked once per value. Every other number must be a 64-bit float.
func TestCommerceNumbersFollowTheSchema(t *testing.T) {
	sch, err := schema.Compile("numbers-v1", []byte(`{"type":"object","$defs":{"n":{"type":["integer","null"]},"self":{"$ref":"#/$defs/self2"},"self2":{"$ref":"#/$defs/self"}},
		"properties":{"a":{"$ref":"#/$defs/n"},"b":{"allOf":[{"minimum":0},{"anyOf":[{"type":"integer"}]}]},"c":{"type":"number"},
			"t":{"type":"array","prefixItems":[{"type":"number"}],"items":{"oneOf":[{"type":"integer"}]}},"loop":{"$ref":"#/$defs/self"},
			"o":{"type":"object","additionalProperties":{"type":"integer"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	const big, inf = "99999999999999999999999", "1e400"
	for _, c := range []struct{ props, want string }{
		{`{"a":` + big + `,"b":` + big + `,"c":` + big + `}`, "properties.a: integer; properties.b: integer"},
		{`{"t":[` + big + `,` + big + `,1e19],"o":{"x":` + big + `,"y":1}}`, "properties.t[1]: integer; properties.t[2]: integer; properties.o.x: integer"},
		{`{"c":` + inf + `,"loop":` + big + `,"other":[{"d":-` + inf + `}]}`, "properties.c: float; properties.other[0].d: float"},
		{`{"a":9223372036854775807,"c":1.7976931348623157e308,"t":[1e30]}`, ""},
	} {
		var got []string
		for _, fe := range commerceNumbers([]byte(c.props), sch) {
			got = append(got, fe.Path+": "+map[string]string{integerRange: "integer", numberRange: "float"}[fe.Message])
		}
		if strings.Join(got, "; ") != c.want {
			t.Errorf("%s: %q, want %q", c.props, strings.Join(got, "; "), c.want)
		}
	}
}

func TestNumberProblem(t *testing.T) {
	for _, c := range []struct {
		n       string
		integer bool
		want    string
	}{
		{"1", true, ""}, {"-9223372036854775808", true, ""}, {"9223372036854775808", true, integerRange}, {"1e19", true, integerRange},
		{"1e400", true, integerRange}, {"1.5e400", false, numberRange}, {"-1e400", false, numberRange}, {"1e-400", false, ""},
		{"9223372036854775808", false, ""}, {"1.5", true, ""}, {"123456789012345", true, ""}, {"1.7976931348623159e308", false, numberRange},
	} {
		if got := numberProblem([]byte(c.n), c.integer); got != c.want {
			t.Errorf("numberProblem(%s, %v) = %q, want %q", c.n, c.integer, got, c.want)
		}
	}
}
