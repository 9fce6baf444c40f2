package dialect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unsafe"

	"github.com/sluicehq/sluice/internal/event"
)

// object is a JSON object that keeps its members in order, with the
// semantics of JavaScript's Object.assign: setting a key that exists
// replaces its value in place, a new key goes last.
type object struct {
	members []member
	// raw, when set, is the compact JSON of exactly members: a parsed body
	// that nothing has changed since, which can be stored as is.
	raw []byte
}

type member struct {
	key string
	val []byte // compact JSON
}

func (o *object) index(key string) int {
	for i := range o.members {
		if o.members[i].key == key {
			return i
		}
	}
	return -1
}

// set stores val (compact JSON) under key.
func (o *object) set(key string, val []byte) {
	o.raw = nil
	if i := o.index(key); i >= 0 {
		o.members[i].val = val
		return
	}
	o.members = append(o.members, member{key: key, val: val})
}

// get returns the raw JSON value of key.
func (o *object) get(key string) ([]byte, bool) {
	if i := o.index(key); i >= 0 {
		return o.members[i].val, true
	}
	return nil, false
}

func (o *object) remove(key string) {
	if i := o.index(key); i >= 0 {
		o.raw = nil
		o.members = append(o.members[:i], o.members[i+1:]...)
	}
}

// appendJSON appends the object as compact JSON.
func (o *object) appendJSON(dst []byte) []byte {
	if o.raw != nil {
		return append(dst, o.raw...)
	}
	dst = append(dst, '{')
	for i, m := range o.members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = event.AppendString(dst, m.key)
		dst = append(dst, ':')
		dst = append(dst, m.val...)
	}
	return append(dst, '}')
}

// json returns the object as compact JSON, reusing the parsed body when
// nothing changed it. The caller owns the result.
func (o *object) json() []byte {
	if o.raw != nil {
		return o.raw
	}
	n := 2
	for _, m := range o.members {
		n += len(m.key) + len(m.val) + 4
	}
	return o.appendJSON(make([]byte, 0, n))
}

// errNotObject is returned for a JSON body that is valid but not an object.
var errNotObject = errors.New("must be a JSON object")

// parseJSONObject reads a JSON object body into o, keeping member order
// and letting a repeated key's last value win (as JSON.parse does). One
// pass of json.Compact validates and compacts; the members are then
// slices of that compact copy. A string that is not UTF-8 text is an
// *event.TextError.
func parseJSONObject(body []byte, o *object) error {
	b, err := compactJSON(body)
	if err != nil {
		return err
	}
	if len(b) == 0 || b[0] != '{' {
		return errNotObject
	}
	if te := event.CheckJSONText(b); te != nil {
		return te
	}
	parseCompactObject(b, o)
	return nil
}

// textFieldError is the violation of a string that is not UTF-8 text, at
// its path below prefix (a path of the request, "" for its root).
func textFieldError(te *event.TextError, prefix string) event.FieldError {
	return event.FieldError{Path: event.JoinPath(prefix, te.Path), Message: te.Message()}
}

// textError is the 400 answer for a document whose string is not text.
func textError(te *event.TextError, prefix string) *Error {
	fe := textFieldError(te, prefix)
	return &Error{Status: http.StatusBadRequest, Message: fe.Error(), Errors: event.FieldErrors{fe}}
}

// compactJSON validates body and returns it compacted, in a new slice.
func compactJSON(body []byte) ([]byte, error) {
	if out, ok := fastCompact(body); ok {
		return out, nil
	}
	var buf bytes.Buffer
	buf.Grow(len(body))
	if err := json.Compact(&buf, body); err != nil {
		// Compact's errors carry no offset; decoding says where it broke.
		if uerr := json.Unmarshal(body, new(json.RawMessage)); uerr != nil {
			err = uerr
		}
		return nil, describeJSONError(body, err)
	}
	return buf.Bytes(), nil
}

// parseCompactObject reads the members of b, a compact and valid JSON
// object, into o.
func parseCompactObject(b []byte, o *object) {
	if cap(o.members) == 0 {
		o.members = make([]member, 0, 16)
	}
	o.members, o.raw = o.members[:0], nil
	dup := false
	i := 1
	for b[i] != '}' {
		kEnd := scanString(b, i)
		key := decodeKey(b[i:kEnd])
		vEnd := scanValue(b, kEnd+1) // after ':'
		val := b[kEnd+1 : vEnd : vEnd]
		if j := o.index(key); j >= 0 {
			o.members[j].val = val
			dup = true
		} else {
			o.members = append(o.members, member{key: key, val: val})
		}
		i = vEnd
		if b[i] == ',' {
			i++
		}
	}
	if !dup {
		o.raw = b
	}
}

// splitArray returns the elements of b, a compact and valid JSON array.
func splitArray(b []byte) [][]byte {
	var out [][]byte
	i := 1
	for b[i] != ']' {
		end := scanValue(b, i)
		out = append(out, b[i:end:end])
		i = end
		if b[i] == ',' {
			i++
		}
	}
	return out
}

// jsonString decodes a JSON string literal.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// jsonInt reads a JSON number with no fraction or exponent.
func jsonInt(raw []byte) (int64, bool) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, false
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil
}

// jsonFloat reads a JSON number.
func jsonFloat(raw []byte) (float64, bool) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return f, err == nil
}

// describeJSONError turns a decoding error into a message with a byte
// offset a sender can act on.
func describeJSONError(body []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d: %s", se.Offset, se.Error())
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return errors.New("empty JSON body")
	}
	return fmt.Errorf("invalid JSON: %s", err.Error())
}

// scanString returns the index after the string literal starting at b[i].
func scanString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// scanValue returns the index after the JSON value starting at b[i].
func scanValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return scanString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = scanString(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	default: // a number or a literal, in compact JSON
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
			j++
		}
		return j
	}
}

// decodeKey returns the Go string of a JSON string literal. Without
// escapes the string shares raw's memory, which parseJSONObject never
// changes after compacting.
func decodeKey(raw []byte) string {
	if bytes.IndexByte(raw, '\\') < 0 {
		k := raw[1 : len(raw)-1]
		return unsafe.String(unsafe.SliceData(k), len(k))
	}
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// parseForm reads application/x-www-form-urlencoded pairs (a query string
// or a form body) into o, in order. A key that repeats becomes an array of
// its values, as qs does. A key or value that does not decode to UTF-8
// text is an *event.TextError.
func parseForm(s string, o *object) error {
	type pair struct {
		key  string
		vals []string
	}
	var pairs []pair
	for s != "" {
		var part string
		part, s, _ = strings.Cut(s, "&")
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return fmt.Errorf("invalid percent-encoding in %q", k)
		}
		if _, problem := event.CheckText(key); problem != "" {
			return &event.TextError{Path: strings.TrimPrefix(event.PathSegment(strings.ToValidUTF8(key, "\uFFFD")), "."), Key: true, Offset: -1, Problem: problem}
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return fmt.Errorf("invalid percent-encoding in the value of %q", key)
		}
		if _, problem := event.CheckText(val); problem != "" {
			return &event.TextError{Path: strings.TrimPrefix(event.PathSegment(key), "."), Offset: -1, Problem: problem}
		}
		if key == "" {
			continue
		}
		found := false
		for i := range pairs {
			if pairs[i].key == key {
				pairs[i].vals = append(pairs[i].vals, val)
				found = true
				break
			}
		}
		if !found {
			pairs = append(pairs, pair{key: key, vals: []string{val}})
		}
	}
	for _, p := range pairs {
		var v []byte
		if len(p.vals) == 1 {
			v = event.AppendString(nil, p.vals[0])
		} else {
			v = append(v, '[')
			for i, s := range p.vals {
				if i > 0 {
					v = append(v, ',')
				}
				v = event.AppendString(v, s)
			}
			v = append(v, ']')
		}
		o.set(p.key, v)
	}
	return nil
}

// firstString returns a form value or a JSON string value as a Go string.
// A JSON array (a repeated query key) yields its first element. ok is
// false when the value is neither.
func firstString(raw []byte) (s string, ok bool) {
	if len(raw) > 0 && raw[0] == '[' {
		var arr []json.RawMessage
		if json.Unmarshal(raw, &arr) != nil || len(arr) == 0 {
			return "", false
		}
		raw = arr[0]
	}
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}
