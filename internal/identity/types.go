package identity

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/sluicehq/sluice/internal/event"
)

// Strength says how surely an identity names one person, and so what it
// may do to profiles (docs/profiles.md has the rules as a table).
type Strength int

const (
	// Device identities name a browser, an app install or a cookie: they
	// attach to the profile they appear with and never hold two profiles
	// apart.
	Device Strength = iota + 1
	// Weak identities (an e-mail hash) are a person's, but may be shared
	// or recycled: like a device, they attach, and two profiles that
	// share one merge unless a strong identity keeps them apart.
	Weak
	// Strong identities name exactly one person: two different values of
	// one strong type never end up in one profile.
	Strong
)

func (s Strength) String() string {
	switch s {
	case Strong:
		return "strong"
	case Weak:
		return "weak"
	case Device:
		return "device"
	}
	return "unknown"
}

// More identity types on canonical events (see types).
const (
	// TypeUID is the webhook dialect's uid (query, body or cookie), when
	// the sender brought one.
	TypeUID = "uid"
	// CuidPrefix starts a commerce cuid's type: cuid:<cuidType>.
	CuidPrefix = "cuid:"
)

// Kind describes one identity type.
type Kind struct {
	Type     string
	Strength Strength
	// Hashed types hold SHA-256 as 64 lowercase hex digits.
	Hashed bool
	// From says which fields of which dialects carry it.
	From string
}

// kinds is the table of identity types, strongest first. cuid:<type> is
// one row for every commerce cuid type.
var kinds = []Kind{
	{Type: TypeCustomUserID, Strength: Strong, From: "s2s customUserId"},
	{Type: TypeUserID, Strength: Strong, From: "track event.user.userId, commerce userId"},
	{Type: TypePhoneHash, Strength: Strong, Hashed: true, From: "s2s phone fields, commerce cuid with cuidType phone_hash, webhook identity_fields"},
	{Type: CuidPrefix + "<type>", Strength: Strong, From: "commerce properties.cuid with properties.cuidType"},
	{Type: TypeEmailHash, Strength: Weak, Hashed: true, From: "track event.user.emailHash, commerce hashedEmail, s2s e-mail fields, webhook identity_fields"},
	{Type: TypeMetrixUserID, Strength: Device, From: "s2s metrixUserId"},
	{Type: TypeAnonymousID, Strength: Device, From: "track event.user.anonymousId, commerce anonymousId"},
	{Type: TypeGAClientID, Strength: Device, From: `track integrations["Google Analytics"].clientId`},
	{Type: TypeUID, Strength: Device, From: "the webhook dialect's uid, when the sender brought one"},
}

// Kinds returns the table of identity types, strongest first.
func Kinds() []Kind { return append([]Kind(nil), kinds...) }

// cuidTypeRE is what a commerce cuidType may be.
var cuidTypeRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Lookup returns the kind of an identity type; cuid:<type> for any
// well-formed cuid type.
func Lookup(typ string) (Kind, bool) {
	if t, ok := strings.CutPrefix(typ, CuidPrefix); ok {
		if !cuidTypeRE.MatchString(t) {
			return Kind{}, false
		}
		k := kinds[3]
		k.Type = typ
		return k, true
	}
	for _, k := range kinds {
		if k.Type == typ {
			return k, true
		}
	}
	return Kind{}, false
}

// rank orders types: strongest first, then in the table's order, cuid
// types by name among themselves.
func rank(typ string) (int, string) {
	if strings.HasPrefix(typ, CuidPrefix) {
		return 3, typ
	}
	for i, k := range kinds {
		if k.Type == typ {
			return i, ""
		}
	}
	return len(kinds), typ
}

// Less orders identities canonically: by the table's order of their types
// (strongest first), then by type and value. Profiles use it wherever an
// order must not depend on how events arrived.
func Less(a, b event.Identity) bool {
	ra, sa := rank(a.Type)
	rb, sb := rank(b.Type)
	if ra != rb {
		return ra < rb
	}
	if sa != sb {
		return sa < sb
	}
	return a.Value < b.Value
}

// maxValue bounds an identity's value.
const maxValue = 256

// Check reports what is wrong with an identity as stored on an event:
// an unknown type, an empty, over-long or non-text value, a hash that is
// not 64 lowercase hex digits.
func Check(id event.Identity) error {
	k, ok := Lookup(id.Type)
	if !ok {
		return fmt.Errorf("unknown identity type %q", id.Type)
	}
	switch {
	case strings.TrimSpace(id.Value) == "":
		return fmt.Errorf("%s: empty value", id.Type)
	case len(id.Value) > maxValue:
		return fmt.Errorf("%s: longer than %d bytes", id.Type, maxValue)
	case !utf8.ValidString(id.Value):
		return fmt.Errorf("%s: not UTF-8 text", id.Type)
	case k.Hashed && !IsHash(id.Value):
		return fmt.Errorf("%s: must be SHA-256 as 64 lowercase hex digits", id.Type)
	}
	return nil
}

// Canonical returns ids without duplicates, in canonical order (Less).
func Canonical(ids []event.Identity) []event.Identity {
	if len(ids) < 2 {
		return ids
	}
	out := append([]event.Identity(nil), ids...)
	sort.Slice(out, func(i, j int) bool { return Less(out[i], out[j]) })
	n := 1
	for i := 1; i < len(out); i++ {
		if out[i] != out[n-1] {
			out[n] = out[i]
			n++
		}
	}
	return out[:n]
}

// Clash is what keeps two sets of identities from being one person: a
// strong type with a different value in each.
type Clash struct {
	Type   string
	Values [2]string
}

// Mergeable reports whether two profiles holding identities a and b may be
// one (the merge rule): unless a strong type has different values in
// them. It returns the first clash in canonical order.
func Mergeable(a, b []event.Identity) (bool, *Clash) {
	strongOf := func(ids []event.Identity) map[string][]string {
		m := map[string][]string{}
		for _, id := range ids {
			if k, ok := Lookup(id.Type); ok && k.Strength == Strong {
				m[id.Type] = append(m[id.Type], id.Value)
			}
		}
		return m
	}
	sa, sb := strongOf(a), strongOf(b)
	types := make([]string, 0, len(sa))
	for t := range sa {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return Less(event.Identity{Type: types[i]}, event.Identity{Type: types[j]}) })
	for _, t := range types {
		for _, va := range sa[t] {
			for _, vb := range sb[t] {
				if va != vb {
					return false, &Clash{Type: t, Values: [2]string{va, vb}}
				}
			}
		}
	}
	return true, nil
}

// Field kinds a project's identity_fields may name besides the identity
// types: a raw phone number or e-mail address, stored as its hash.
const (
	FieldPhone = "phone"
	FieldEmail = "email"
)

// ValidFieldKind reports whether kind may be the target of an
// identity_fields entry: an identity type, phone or email.
func ValidFieldKind(kind string) bool {
	if kind == FieldPhone || kind == FieldEmail {
		return true
	}
	_, ok := Lookup(kind)
	return ok
}

// FromField turns the value of a data field mapped to kind into an
// identity: a phone number or e-mail address into its hash (hashed is
// then true: the raw value is personal data), a hash or an id as it is.
// A phone or e-mail address that cannot be read is ErrPhone or ErrEmail.
func FromField(kind, value, region string) (typ, v string, hashed bool, err error) {
	value = strings.TrimSpace(value)
	switch kind {
	case FieldPhone:
		h, err := HashPhone(value, region)
		return TypePhoneHash, h, true, err
	case FieldEmail:
		h, err := HashEmail(value)
		return TypeEmailHash, h, true, err
	}
	if value == "" {
		return kind, "", false, nil
	}
	if err := Check(event.Identity{Type: kind, Value: value}); err != nil {
		return kind, "", false, err
	}
	return kind, value, false, nil
}
