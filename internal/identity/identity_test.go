package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/event"
)

func TestNormalizePhone(t *testing.T) {
	cases := []struct{ raw, region, want string }{
		{"+7 (999) 000-00-00", "", "79990000000"}, // seed 002's rule
		{"+7 (999) 000-00-00", "IR", "79990000000"},
		{"09121122333", "IR", "989121122333"}, // seed 004's example in Iran
		{"+989121122333", "", "989121122333"},
		{"00989121122333", "", "989121122333"},
		{"8 (999) 000-00-00", "RU", "79990000000"},
		{"(415) 555-2671", "US", "14155552671"},
	}
	for _, c := range cases {
		got, err := NormalizePhone(c.raw, c.region)
		if err != nil || got != c.want {
			t.Errorf("NormalizePhone(%q, %q) = %q, %v; want %q", c.raw, c.region, got, err, c.want)
		}
	}
	for _, bad := range []struct{ raw, region string }{{"09121122333", ""}, {"", "IR"}, {"not a phone", "IR"}, {"+98917*******", ""}, {"12", "IR"}} {
		if got, err := NormalizePhone(bad.raw, bad.region); err == nil {
			t.Errorf("NormalizePhone(%q, %q) = %q, want an error", bad.raw, bad.region, got)
		}
	}
	h, err := HashPhone("+7 (999) 000-00-00", "")
	sum := sha256.Sum256([]byte("79990000000"))
	if err != nil || h != hex.EncodeToString(sum[:]) || !IsHash(h) {
		t.Fatalf("HashPhone = %q, %v", h, err)
	}
}

func TestHashEmail(t *testing.T) {
	h, err := HashEmail("  Test@TEST.com ")
	if err != nil || h != "f660ab912ec121d1b1e928a0bb4bc61b15f5ad44d5efdc4e1c92a25e99b8e44a" {
		t.Fatalf("HashEmail = %q, %v", h, err)
	}
	for _, bad := range []string{"", "not-an-email", "Reza <reza@example.com>", "a@", "@b.com"} {
		if _, err := HashEmail(bad); err == nil {
			t.Errorf("HashEmail(%q) accepted", bad)
		}
	}
}

func TestIsHash(t *testing.T) {
	if !IsHash(Hash("x")) || IsHash("F660AB912EC121D1B1E928A0BB4BC61B15F5AD44D5EFDC4E1C92A25E99B8E44A") || IsHash("abc") {
		t.Fatal("IsHash")
	}
}

func TestValidRegion(t *testing.T) {
	if !ValidRegion("IR") || !ValidRegion("ru") || ValidRegion("XX") || ValidRegion("") {
		t.Fatal("ValidRegion")
	}
}

func FuzzNormalizePhone(f *testing.F) {
	for _, s := range []string{"+7 (999) 000-00-00", "09121122333", "+98917*******", "", "00", "+"} {
		f.Add(s, "IR")
	}
	f.Fuzz(func(t *testing.T, raw, region string) {
		n, err := NormalizePhone(raw, region)
		if err != nil {
			return
		}
		for _, c := range n {
			if c < '0' || c > '9' {
				t.Fatalf("%q → %q: not digits", raw, n)
			}
		}
		// Normalising the normalised form with a + is stable.
		again, err := NormalizePhone("+"+n, "")
		if err != nil || again != n {
			t.Fatalf("%q → %q → %q, %v", raw, n, again, err)
		}
	})
}

func TestKindsAndOrder(t *testing.T) {
	for typ, want := range map[string]Strength{
		"custom_user_id": Strong, "user_id": Strong, "phone_hash": Strong, "cuid:crm_id": Strong,
		"email_hash": Weak, "metrix_user_id": Device, "anonymous_id": Device, "ga_client_id": Device, "uid": Device,
	} {
		if k, ok := Lookup(typ); !ok || k.Strength != want || k.Type != typ {
			t.Errorf("%s: %+v %v, want %s", typ, k, ok, want)
		}
	}
	for _, bad := range []string{"phone", "cuid:", "cuid:a b", "UID"} {
		if _, ok := Lookup(bad); ok {
			t.Errorf("%q is a type", bad)
		}
	}
	ids := Canonical([]event.Identity{
		{Type: "uid", Value: "1"}, {Type: "email_hash", Value: Hash("e")}, {Type: "cuid:b", Value: "x"},
		{Type: "user_id", Value: "u"}, {Type: "cuid:a", Value: "y"}, {Type: "custom_user_id", Value: "c"}, {Type: "uid", Value: "1"},
	})
	var got []string
	for _, id := range ids {
		got = append(got, id.Type)
	}
	if want := "custom_user_id user_id cuid:a cuid:b email_hash uid"; strings.Join(got, " ") != want {
		t.Fatalf("order %v, want %s", got, want)
	}
}

func TestCheckAndMergeable(t *testing.T) {
	for _, c := range []struct {
		id event.Identity
		ok bool
	}{
		{event.Identity{Type: "phone_hash", Value: Hash("79990000000")}, true},
		{event.Identity{Type: "phone_hash", Value: "79990000000"}, false},
		{event.Identity{Type: "user_id", Value: " "}, false},
		{event.Identity{Type: "user_id", Value: strings.Repeat("u", 257)}, false},
		{event.Identity{Type: "nope", Value: "x"}, false},
		{event.Identity{Type: "cuid:crm", Value: "17"}, true},
	} {
		if err := Check(c.id); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.id, err)
		}
	}
	u1 := []event.Identity{{Type: "user_id", Value: "u1"}, {Type: "anonymous_id", Value: "a"}}
	u2 := []event.Identity{{Type: "user_id", Value: "u2"}}
	if ok, clash := Mergeable(u1, u2); ok || clash.Type != "user_id" || clash.Values != [2]string{"u1", "u2"} {
		t.Fatalf("u1/u2: %v %+v", ok, clash)
	}
	anon := []event.Identity{{Type: "anonymous_id", Value: "b"}, {Type: "email_hash", Value: Hash("x")}}
	if ok, _ := Mergeable(u1, anon); !ok {
		t.Fatal("a strong profile and an anonymous one must merge")
	}
	if ok, _ := Mergeable(u1, []event.Identity{{Type: "user_id", Value: "u1"}, {Type: "phone_hash", Value: Hash("1")}}); !ok {
		t.Fatal("the same strong value must merge")
	}
}
