package dialect

import (
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/event"
)

// A field table (like the track seed's) compiles into a tree of nodes, one
// per field, that validates a decoded JSON document and reports every
// violation at its path. Fields the table does not name pass untouched.

// kind is a column of the seed's "type" table, plus what we need beyond it.
type kind int

const (
	kAny         kind = iota // only a container for declared children
	kString                  // STRING
	kNumber                  // NUMBER, FLOAT: any JSON number
	kInteger                 // INTEGER: a number with no fractional part
	kRecord                  // RECORD: an object
	kRecordArray             // an array of RECORDs (lineItems)
	kTimestamp               // TIMESTAMP: ISO 8601 (RFC 3339, or the basic format), with a zone
	kStringOrNumber
)

// node is one field of a table.
type node struct {
	kind     kind
	required bool
	// check is an extra rule on a value of the right kind; it returns a
	// violation message or "".
	check    func(v any) string
	children []*child
}

type child struct {
	name string
	seg  string // the name as a path segment: ".name" or `["na me"]`
	node *node
}

func (n *node) child(name string) *node {
	for _, c := range n.children {
		if c.name == name {
			return c.node
		}
	}
	return nil
}

// add declares the field at path (segments) and returns its node. A field
// below an undeclared container creates a kAny container for it.
func (n *node) add(path []string, k kind) *node {
	cur := n
	for i, seg := range path {
		next := cur.child(seg)
		if next == nil {
			next = &node{kind: kAny}
			cur.children = append(cur.children, &child{name: seg, seg: pathSegment(seg), node: next})
		}
		if i == len(path)-1 {
			next.kind = k
		}
		cur = next
	}
	return cur
}

// clone copies the tree so that per-project fields can be added.
func (n *node) clone() *node {
	c := *n
	c.children = make([]*child, len(n.children))
	for i, ch := range n.children {
		c.children[i] = &child{name: ch.name, seg: ch.seg, node: ch.node.clone()}
	}
	return &c
}

// validate checks o, a parsed compact JSON object, against the tree and
// appends every violation to errs. It works on the compact text, never
// decoding a value it does not check.
func (n *node) validate(o *object, path *fieldPath, errs *event.FieldErrors) {
	for _, c := range n.children {
		v, present := o.get(c.name)
		p := &fieldPath{parent: path, seg: c.seg}
		if !present || string(v) == "null" {
			if c.node.required {
				errs.Add(p.String(), "is required")
			}
			continue
		}
		c.node.validateValue(v, p, errs)
	}
}

// validateObject parses raw, a compact object, and validates it.
func (n *node) validateObject(raw []byte, p *fieldPath, errs *event.FieldErrors) {
	var o object
	parseCompactObject(raw, &o)
	n.validate(&o, p, errs)
}

func (n *node) validateValue(v []byte, p *fieldPath, errs *event.FieldErrors) {
	switch n.kind {
	case kAny:
		// An undeclared container: descend where the shape allows.
		switch v[0] {
		case '{':
			n.validateObject(v, p, errs)
		case '[':
			for i, e := range splitArray(v) {
				if e[0] == '{' {
					n.validateObject(e, p.index(i), errs)
				}
			}
		}
		return
	case kRecord:
		if v[0] != '{' {
			errs.Add(p.String(), "must be an object")
			return
		}
		n.validateObject(v, p, errs)
		return
	case kRecordArray:
		if v[0] != '[' {
			errs.Add(p.String(), "must be an array of objects")
			return
		}
		for i, e := range splitArray(v) {
			if e[0] != '{' {
				errs.Add(p.index(i).String(), "must be an object")
				continue
			}
			n.validateObject(e, p.index(i), errs)
		}
		return
	}
	val, msg := checkKind(n.kind, v)
	if msg != "" {
		errs.Add(p.String(), msg)
		return
	}
	if n.check != nil {
		if msg := n.check(val); msg != "" {
			errs.Add(p.String(), msg)
		}
	}
}

// checkKind checks a compact JSON value against a kind, and returns it as
// a check sees it: a string as a Go string, a number as a json.Number.
func checkKind(k kind, v []byte) (any, string) {
	isNum := v[0] == '-' || (v[0] >= '0' && v[0] <= '9')
	switch k {
	case kString:
		s, ok := jsonString(v)
		if !ok {
			return nil, "must be a string"
		}
		return s, ""
	case kNumber:
		if !isNum {
			return nil, "must be a number"
		}
		return json.Number(v), ""
	case kInteger:
		if !isNum || !isInteger(json.Number(v)) {
			return nil, "must be an integer"
		}
		return json.Number(v), ""
	case kStringOrNumber:
		if isNum {
			return json.Number(v), ""
		}
		s, ok := jsonString(v)
		if !ok {
			return nil, "must be a string or a number"
		}
		return s, ""
	case kTimestamp:
		s, ok := jsonString(v)
		if !ok {
			return nil, "must be an ISO 8601 / RFC 3339 timestamp string"
		}
		if _, err := parseTimestamp(s); err != nil {
			return nil, "must be an ISO 8601 timestamp with a zone, e.g. 2019-02-21T10:56:10.723Z or 20190221T105610Z"
		}
		return s, ""
	}
	return nil, ""
}

// isInteger reports whether n has no fractional part and fits in 64 bits.
func isInteger(n json.Number) bool {
	s := n.String()
	if !strings.ContainsAny(s, ".eE") {
		_, err := strconv.ParseInt(s, 10, 64)
		return err == nil
	}
	f, _, err := big.ParseFloat(s, 10, 128, big.ToNearestEven)
	if err != nil || !f.IsInt() {
		return false
	}
	_, acc := f.Int64()
	return acc == big.Exact
}

// parseTimestamp reads an ISO 8601 date and time with a zone: RFC 3339
// (2019-02-21T10:56:10.723Z, +03:00), the basic format
// (20190221T105610Z, 20190221T105610.723+0330) and the extended format
// with a zone written without a colon (2019-02-21T10:56:10+0300), as
// Java's and some JavaScript formatters write it. Fractions may use a
// comma; seconds are required.
func parseTimestamp(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	m := isoBasicRE.FindStringSubmatch(s)
	if m == nil {
		m = isoExtendedRE.FindStringSubmatch(s)
	}
	if m == nil {
		return time.Time{}, fmt.Errorf("%q is not an ISO 8601 date and time with a zone", s)
	}
	// m: 1 year 2 month 3 day 4 hour 5 minute 6 second 7 fraction 8 zone
	frac := strings.Replace(m[7], ",", ".", 1)
	zone := m[8]
	switch len(zone) {
	case 3: // ±hh
		zone += ":00"
	case 5: // ±hhmm
		zone = zone[:3] + ":" + zone[3:]
	}
	return time.Parse(time.RFC3339Nano, m[1]+"-"+m[2]+"-"+m[3]+"T"+m[4]+":"+m[5]+":"+m[6]+frac+zone)
}

var (
	isoBasicRE    = regexp.MustCompile(`^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})([.,]\d{1,9})?(Z|[+-]\d{2}(?:\d{2})?)$`)
	isoExtendedRE = regexp.MustCompile(`^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})([.,]\d{1,9})?(Z|[+-]\d{2}(?::?\d{2})?)$`)
)

// nonNegative is a check for numbers.
func nonNegative(v any) string {
	n := v.(json.Number)
	if strings.HasPrefix(strings.TrimSpace(n.String()), "-") {
		if f, err := n.Float64(); err == nil && f == 0 {
			return "" // -0
		}
		return "must not be negative"
	}
	return ""
}

// fieldPath is a location in a document, rendered (only when a violation
// needs it) the way the seed's table and JavaScript write it:
// event.transaction.lineItems[1].quantity, integrations["Google Analytics"].clientId.
type fieldPath struct {
	parent *fieldPath
	seg    string // ".name", `["na me"]` or "[3]"
}

// pathSegment renders one object key.
func pathSegment(name string) string { return event.PathSegment(name) }

func (p *fieldPath) index(i int) *fieldPath {
	return &fieldPath{parent: p, seg: "[" + strconv.Itoa(i) + "]"}
}

func (p *fieldPath) String() string {
	var segs []string
	for q := p; q != nil; q = q.parent {
		segs = append(segs, q.seg)
	}
	var b strings.Builder
	for i := len(segs) - 1; i >= 0; i-- {
		b.WriteString(segs[i])
	}
	return strings.TrimPrefix(b.String(), ".")
}
