package dialect

import (
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"sync"
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
// decoding a value it does not check, and allocates nothing for a valid
// document: nested objects are parsed into a scratch object per depth,
// paths live on the stack and are rendered only for a violation, and a
// value is turned into a Go value only for a field with a check.
func (n *node) validate(o *object, path *fieldPath, errs *event.FieldErrors) {
	w := walkPool.Get().(*walk)
	w.errs, w.prefix = errs, path
	n.walkObject(o, w, 0)
	w.errs, w.prefix, w.segs = nil, nil, w.segs[:0]
	for _, o := range w.objs { // hold no document in the pool
		clear(o.members)
		o.raw = nil
	}
	walkPool.Put(w)
}

// walk is the scratch of one validation: an object per depth, and the
// path to the value at hand as a stack of segments.
type walk struct {
	errs   *event.FieldErrors
	prefix *fieldPath
	objs   []*object
	segs   []fieldPath // each with seg or idx, no parent
}

var walkPool = sync.Pool{New: func() any { return new(walk) }}

func (w *walk) object(depth int) *object {
	for len(w.objs) <= depth {
		w.objs = append(w.objs, new(object))
	}
	return w.objs[depth]
}

// fail records a violation at the path at hand.
func (w *walk) fail(msg string) {
	p := w.prefix
	for i := range w.segs {
		w.segs[i].parent = p
		p = &w.segs[i]
	}
	w.errs.Add(p.String(), msg)
	for i := range w.segs {
		w.segs[i].parent = nil
	}
}

func (n *node) walkObject(o *object, w *walk, depth int) {
	for _, c := range n.children {
		v, present := o.get(c.name)
		w.segs = append(w.segs, fieldPath{seg: c.seg})
		switch {
		case present && string(v) != "null":
			c.node.walkValue(v, w, depth)
		case c.node.required:
			w.fail("is required")
		}
		w.segs = w.segs[:len(w.segs)-1]
	}
}

// walkRaw parses raw, a compact object, and validates it.
func (n *node) walkRaw(raw []byte, w *walk, depth int) {
	o := w.object(depth)
	parseCompactObject(raw, o)
	n.walkObject(o, w, depth+1)
}

// walkElements validates the objects of the array v, with must as the
// violation of an element that is not one ("" to let it pass).
func (n *node) walkElements(v []byte, w *walk, depth int, must string) {
	for it := (arrayIter{b: v}); it.next(); {
		w.segs = append(w.segs, fieldPath{idx: it.n + 1})
		switch {
		case it.elem[0] == '{':
			n.walkRaw(it.elem, w, depth)
		case must != "":
			w.fail(must)
		}
		w.segs = w.segs[:len(w.segs)-1]
	}
}

func (n *node) walkValue(v []byte, w *walk, depth int) {
	switch n.kind {
	case kAny:
		// An undeclared container: descend where the shape allows.
		switch v[0] {
		case '{':
			n.walkRaw(v, w, depth)
		case '[':
			n.walkElements(v, w, depth, "")
		}
		return
	case kRecord:
		if v[0] != '{' {
			w.fail("must be an object")
			return
		}
		n.walkRaw(v, w, depth)
		return
	case kRecordArray:
		if v[0] != '[' {
			w.fail("must be an array of objects")
			return
		}
		n.walkElements(v, w, depth, "must be an object")
		return
	}
	if msg := checkKind(n.kind, v); msg != "" {
		w.fail(msg)
		return
	}
	if n.check != nil {
		if msg := n.check(kindValue(n.kind, v)); msg != "" {
			w.fail(msg)
		}
	}
}

// arrayIter walks the elements of b, a compact and valid JSON array,
// without collecting them: elem is the n-th (from 0) after each next.
type arrayIter struct {
	b    []byte
	i, n int
	elem []byte
}

func (it *arrayIter) next() bool {
	if it.i == 0 {
		it.i, it.n = 1, -1
	}
	if it.b[it.i] == ']' {
		return false
	}
	end := scanValue(it.b, it.i)
	it.elem = it.b[it.i:end:end]
	it.n++
	it.i = end
	if it.b[it.i] == ',' {
		it.i++
	}
	return true
}

// checkKind checks a compact JSON value against a kind and returns the
// violation, or "".
func checkKind(k kind, v []byte) string {
	isNum := v[0] == '-' || (v[0] >= '0' && v[0] <= '9')
	switch k {
	case kString:
		if v[0] != '"' {
			return "must be a string"
		}
	case kNumber:
		if !isNum {
			return "must be a number"
		}
		return numberProblem(v, false)
	case kInteger:
		if !isNum || !wholeNumber(string(v)) {
			return "must be an integer"
		}
		return numberProblem(v, true)
	case kStringOrNumber:
		if !isNum && v[0] != '"' {
			return "must be a string or a number"
		}
		if isNum {
			return numberProblem(v, false)
		}
	case kTimestamp:
		s, ok := jsonString(v)
		if !ok {
			return "must be an ISO 8601 / RFC 3339 timestamp string"
		}
		if _, err := parseTimestamp(s); err != nil {
			return "must be an ISO 8601 timestamp with a zone, e.g. 2019-02-21T10:56:10.723Z or 20190221T105610Z"
		}
	}
	return ""
}

// kindValue is a value that checkKind passed, as a check sees it: a
// string as a Go string, a number as a json.Number.
func kindValue(k kind, v []byte) any {
	if v[0] == '"' {
		s, _ := jsonString(v)
		return s
	}
	if k == kString || k == kTimestamp {
		return nil
	}
	return json.Number(v)
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
	n, ok := v.(json.Number)
	if !ok {
		return "must be a number"
	}
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
	seg    string // ".name" or `["na me"]`, or "" for an element:
	idx    int    // its index + 1
}

// pathSegment renders one object key.
func pathSegment(name string) string { return event.PathSegment(name) }

func (p *fieldPath) String() string {
	var segs []string
	for q := p; q != nil; q = q.parent {
		if q.idx > 0 {
			segs = append(segs, "["+strconv.Itoa(q.idx-1)+"]")
			continue
		}
		segs = append(segs, q.seg)
	}
	var b strings.Builder
	for i := len(segs) - 1; i >= 0; i-- {
		b.WriteString(segs[i])
	}
	return strings.TrimPrefix(b.String(), ".")
}
