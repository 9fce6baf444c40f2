// Package trackfields is the track dialect's field table (seed 000) as
// data. The dialect compiles it into its validation tree; project settings
// keep custom dimensions and metrics off the fields it names. It imports
// nothing of sluice but event, so that both can use it.
package trackfields

import (
	"strings"

	"github.com/sluicehq/sluice/internal/event"
)

// Type is what a field of the table must hold.
type Type int

// The types of the seed's table (NUMBER and FLOAT are both Number), and
// what its example forces beyond them.
const (
	String Type = iota + 1
	Number
	Integer
	Record
	RecordArray // an array of records (lineItems)
	Timestamp   // ISO 8601 with a zone
	StringOrNumber
)

// String names the type as a message says it: "a string".
func (t Type) String() string {
	switch t {
	case String:
		return "a string"
	case Number:
		return "a number"
	case Integer:
		return "an integer"
	case Record:
		return "an object"
	case RecordArray:
		return "an array of objects"
	case Timestamp:
		return "an ISO 8601 timestamp"
	case StringOrNumber:
		return "a string or a number"
	}
	return "a value"
}

// container reports whether fields of the type hold fields of their own.
func (t Type) container() bool { return t == Record || t == RecordArray }

// Field is one row of the table: a path in the table's notation
// (integrations["Google Analytics"].clientId, written as
// event.PathSegment renders each name), what it holds, and whether a hit
// must have it.
type Field struct {
	Path     string
	Type     Type
	Required bool
}

// Table is the seed's field table, row by row, with our additions:
// timestamp/originalTimestamp (the event's own time, for skew
// correction). Rules the seed's example forces: emailHash has no length
// rule, voucherDiscount is a string or a number, context.ip is any
// string. Every name the track dialect reads is here.
var Table = []Field{
	{"hitId", String, true},
	{"sentAt", Timestamp, true},
	{"event", Record, false},
	{"event.category", String, false},
	{"event.name", String, false},
	{"event.source", String, false},
	{"event.label", String, false},
	{"event.value", Number, false},
	{"event.user", Record, false},
	{"event.user.emailHash", String, false},
	{"event.user.userId", String, false},
	{"event.user.anonymousId", String, false},
	{"event.transaction", Record, false},
	{"event.transaction.total", Number, false},
	{"event.transaction.subtotal", Number, false},
	{"event.transaction.currency", String, false},
	{"event.transaction.voucher", String, false},
	{"event.transaction.voucherDiscount", StringOrNumber, false},
	{"event.transaction.shippingCost", Number, false},
	{"event.transaction.paymentMethod", String, false},
	{"event.transaction.orderId", String, false},
	{"event.transaction.lineItems", RecordArray, false},
	{"event.transaction.lineItems.quantity", Integer, false},
	{"event.transaction.lineItems.subtotal", Number, false},
	{"event.transaction.lineItems.product", Record, false},
	{"event.transaction.lineItems.product.id", String, false},
	{"event.transaction.lineItems.product.name", String, false},
	{"event.transaction.lineItems.product.currency", String, false},
	{"event.transaction.lineItems.product.unitSalePrice", Number, false},
	{"event.transaction.lineItems.product.unitPrice", Number, false},
	{"event.transaction.lineItems.product.category", String, false},
	{"event.transaction.lineItems.product.categoryId", String, false},
	{"event.transaction.lineItems.product.manufacturer", String, false},
	{"event.transaction.lineItems.product.skuCode", String, false},
	{"event.transaction.lineItems.product.stock", Integer, false},
	{"event.website", Record, false},
	{"event.website.region", String, false},
	{"event.website.regionId", String, false},
	{"event.website.environment", String, false},
	{"event.website.currency", String, false},
	{"context", Record, false},
	{"context.ip", String, false},
	{"integrations", Record, false},
	{`integrations["Google Analytics"]`, Record, false},
	{`integrations["Google Analytics"].clientId`, String, false},
	{"timestamp", Timestamp, false},
	{"originalTimestamp", Timestamp, false},
}

// Path renders segments (names, as project.ParseFieldPath splits a path)
// in the table's notation.
func Path(segs []string) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteString(event.PathSegment(s))
	}
	return strings.TrimPrefix(b.String(), ".")
}

// Find returns the field of the table at segs.
func Find(segs []string) (Field, bool) {
	p := Path(segs)
	for _, f := range Table {
		if f.Path == p {
			return f, true
		}
	}
	return Field{}, false
}

// Conflict says why a custom field of type t (String for a dimension,
// Number for a metric) cannot be declared at segs: the path is a field of
// the table whose values are not all of type t (event.value for a
// dimension, hitId for a metric, any object), lies inside a field that is
// not an object (hitId.x), or holds fields of the table. The track dialect
// reads and types those fields itself. The answer reads after the path
// ("is a field of the track table (a number)"). It is "" for a path of the
// hit's own, such as event.user.loyaltyLevel or
// event.transaction.lineItems.product.margin, and for a field of the table
// that holds only values of type t (event.source for a dimension,
// event.transaction.total for a metric), which a project may declare to
// name it for its destinations: the table's own rule still checks it.
func Conflict(segs []string, t Type) string {
	p := Path(segs)
	for _, f := range Table {
		switch {
		case p == f.Path && !holdsOnly(f.Type, t):
			return "is a field of the track table (" + f.Type.String() + ")"
		case !f.Type.container() && below(p, f.Path):
			return "is inside " + f.Path + ", a field of the track table (" + f.Type.String() + ")"
		case below(f.Path, p):
			return "holds " + f.Path + ", a field of the track table (" + f.Type.String() + ")"
		}
	}
	return ""
}

// holdsOnly reports whether every value a field of type f takes is of
// type t: a timestamp is a string, an integer a number.
func holdsOnly(f, t Type) bool {
	switch t {
	case String:
		return f == String || f == Timestamp
	case Number:
		return f == Number || f == Integer
	}
	return f == t
}

// below reports whether path p lies under path q.
func below(p, q string) bool {
	rest, ok := strings.CutPrefix(p, q)
	return ok && rest != "" && (rest[0] == '.' || rest[0] == '[')
}
