package schema

import (
	"bytes"
	"encoding/json"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/currency"
)

// A fast path for the schemas' common case, a valid event: a schema that
// uses only the keywords below is also compiled into a check that works on
// the compact JSON text, without decoding it, and that says only whether
// it is surely valid. Valid events skip the library; anything else (a
// violation, or a keyword this check does not know) goes to the library,
// which finds and words every violation. So the answers are the library's,
// and the fast path can only save time: it never accepts what the library
// refuses (a differential fuzz test holds it to that).
//
// Keywords: type, properties, required, const, enum, minLength, maxLength,
// pattern, minimum, items, $ref to #/$defs/…, dependentRequired, oneOf of
// branches that only require properties, format iso4217; and the
// annotations ($schema, $id, $defs, title, description, examples,
// $comment, default).

type fastCheck struct {
	types      []string // JSON Schema type names; empty: any
	properties map[string]*fastCheck
	required   []string
	constRaw   []byte   // compact JSON
	enumRaw    [][]byte // compact JSON
	minLength  int
	maxLength  int // -1: none
	pattern    *regexp.Regexp
	minimum    *big.Rat
	minInt     *int64 // minimum, when it is a whole number that fits
	items      *fastCheck
	dependent  map[string][]string
	oneOfReq   [][]string
	iso4217    bool
}

var fastAnnotations = map[string]bool{
	"$schema": true, "$id": true, "$defs": true, "title": true, "description": true,
	"examples": true, "$comment": true, "default": true,
}

// compileFast compiles a schema document (decoded JSON) into a fast check,
// or nil when it uses something the fast path does not know.
func compileFast(doc map[string]any) *fastCheck {
	if d, ok := doc["$schema"]; ok && d != "https://json-schema.org/draft/2020-12/schema" {
		return nil // the fast path knows draft 2020-12's meaning only
	}
	defs, _ := doc["$defs"].(map[string]any)
	var compile func(s any, depth int) *fastCheck
	compile = func(s any, depth int) *fastCheck {
		m, ok := s.(map[string]any)
		if !ok || depth > 32 {
			return nil
		}
		if ref, ok := m["$ref"].(string); ok {
			if len(m) != 1 && !onlyAnnotations(m, "$ref") {
				return nil
			}
			name, ok := strings.CutPrefix(ref, "#/$defs/")
			if !ok || strings.ContainsAny(name, "/~%") {
				return nil
			}
			d, ok := defs[name]
			if !ok {
				return nil
			}
			return compile(d, depth+1)
		}
		c := &fastCheck{maxLength: -1}
		for k, v := range m {
			switch k {
			case "type":
				switch t := v.(type) {
				case string:
					c.types = []string{t}
				case []any:
					for _, x := range t {
						s, ok := x.(string)
						if !ok {
							return nil
						}
						c.types = append(c.types, s)
					}
				default:
					return nil
				}
			case "properties":
				props, ok := v.(map[string]any)
				if !ok {
					return nil
				}
				c.properties = map[string]*fastCheck{}
				for name, ps := range props {
					pc := compile(ps, depth+1)
					if pc == nil {
						return nil
					}
					c.properties[name] = pc
				}
			case "required":
				names, ok := strings_(v)
				if !ok {
					return nil
				}
				c.required = names
			case "const":
				b, err := json.Marshal(v)
				if err != nil {
					return nil
				}
				c.constRaw = b
			case "enum":
				arr, ok := v.([]any)
				if !ok {
					return nil
				}
				for _, x := range arr {
					b, err := json.Marshal(x)
					if err != nil {
						return nil
					}
					c.enumRaw = append(c.enumRaw, b)
				}
			case "minLength", "maxLength":
				n, ok := v.(json.Number)
				if !ok {
					return nil
				}
				i, err := n.Int64()
				if err != nil || i < 0 {
					return nil
				}
				if k == "minLength" {
					c.minLength = int(i)
				} else {
					c.maxLength = int(i)
				}
			case "pattern":
				p, ok := v.(string)
				if !ok || !simplePattern(p) {
					return nil
				}
				re, err := regexp.Compile(p)
				if err != nil {
					return nil
				}
				c.pattern = re
			case "minimum":
				n, ok := v.(json.Number)
				if !ok {
					return nil
				}
				r, ok := new(big.Rat).SetString(n.String())
				if !ok {
					return nil
				}
				c.minimum = r
				if r.IsInt() && r.Num().IsInt64() {
					n := r.Num().Int64()
					c.minInt = &n
				}
			case "items":
				ic := compile(v, depth+1)
				if ic == nil {
					return nil
				}
				c.items = ic
			case "dependentRequired":
				dm, ok := v.(map[string]any)
				if !ok {
					return nil
				}
				c.dependent = map[string][]string{}
				for prop, names := range dm {
					ns, ok := strings_(names)
					if !ok {
						return nil
					}
					c.dependent[prop] = ns
				}
			case "oneOf":
				branches, ok := v.([]any)
				if !ok {
					return nil
				}
				for _, b := range branches {
					bm, ok := b.(map[string]any)
					if !ok || len(bm) != 1 {
						return nil
					}
					names, ok := strings_(bm["required"])
					if !ok {
						return nil
					}
					c.oneOfReq = append(c.oneOfReq, names)
				}
			case "format":
				if v != "iso4217" {
					return nil
				}
				c.iso4217 = true
			default:
				if !fastAnnotations[k] {
					return nil
				}
			}
		}
		return c
	}
	return compile(doc, 0)
}

func onlyAnnotations(m map[string]any, except string) bool {
	for k := range m {
		if k != except && !fastAnnotations[k] {
			return false
		}
	}
	return true
}

func strings_(v any) ([]string, bool) {
	arr, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(arr))
	for _, x := range arr {
		s, ok := x.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// simplePattern admits patterns whose meaning is the same in Go's RE2 and
// in the ECMA-262 dialect JSON Schema names: anchors, letters and digits,
// bracket classes of them, counted or starred repetition, and the escapes
// \. \- \d. Anything else (a bare ".", groups, alternation) goes to the
// library.
func simplePattern(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("^$[]{},*+?-_@:/ ", c) >= 0:
		case c == '\\' && i+1 < len(p) && strings.IndexByte(".-d", p[i+1]) >= 0:
			i++
		default:
			return false
		}
	}
	return true
}

// valid reports whether raw, compact JSON, surely passes c.
func (c *fastCheck) valid(raw gjson.Result) bool {
	if len(c.types) > 0 && !c.typeOK(raw) {
		return false
	}
	if c.constRaw != nil && !jsonEqual(raw, c.constRaw) {
		return false
	}
	if c.enumRaw != nil {
		found := false
		for _, e := range c.enumRaw {
			found = found || jsonEqual(raw, e)
		}
		if !found {
			return false
		}
	}
	switch raw.Type {
	case gjson.String:
		s := raw.String()
		if c.minLength > 0 || c.maxLength >= 0 {
			n := utf8.RuneCountInString(s)
			if n < c.minLength || (c.maxLength >= 0 && n > c.maxLength) {
				return false
			}
		}
		if c.pattern != nil && !c.pattern.MatchString(s) {
			return false
		}
		if c.iso4217 && !currency.Valid(s) {
			return false
		}
	case gjson.Number:
		if c.minimum != nil {
			if c.minInt != nil && !strings.ContainsAny(raw.Raw, ".eE") {
				// An integer against an integer bound, the common case.
				if n, err := strconv.ParseInt(raw.Raw, 10, 64); err == nil {
					if n < *c.minInt {
						return false
					}
					break
				}
			}
			r, ok := new(big.Rat).SetString(raw.Raw)
			if !ok || r.Cmp(c.minimum) < 0 {
				return false
			}
		}
	case gjson.JSON:
		if raw.IsObject() {
			return c.objectOK(raw)
		}
		if c.items != nil {
			ok := true
			raw.ForEach(func(_, el gjson.Result) bool {
				ok = c.items.valid(el)
				return ok
			})
			return ok
		}
	}
	return true
}

func (c *fastCheck) objectOK(raw gjson.Result) bool {
	if len(c.required) == 0 && c.properties == nil && c.dependent == nil && c.oneOfReq == nil {
		return true
	}
	var members [16]member
	present := members[:0]
	raw.ForEach(func(k, v gjson.Result) bool {
		present = setMember(present, k.String(), v) // a repeated key's last value, as the library reads it
		return true
	})
	for _, r := range c.required {
		if _, ok := get(present, r); !ok {
			return false
		}
	}
	for prop, names := range c.dependent {
		if _, ok := get(present, prop); ok {
			for _, n := range names {
				if _, ok := get(present, n); !ok {
					return false
				}
			}
		}
	}
	if c.oneOfReq != nil {
		passing := 0
		for _, names := range c.oneOfReq {
			all := true
			for _, n := range names {
				if _, ok := get(present, n); !ok {
					all = false
				}
			}
			if all {
				passing++
			}
		}
		if passing != 1 {
			return false
		}
	}
	for _, m := range present {
		if pc, ok := c.properties[m.key]; ok && !pc.valid(m.val) {
			return false
		}
	}
	return true
}

type member struct {
	key string
	val gjson.Result
}

func setMember(ms []member, k string, v gjson.Result) []member {
	for i := range ms {
		if ms[i].key == k {
			ms[i].val = v
			return ms
		}
	}
	return append(ms, member{key: k, val: v})
}

func get(ms []member, k string) (gjson.Result, bool) {
	for _, m := range ms {
		if m.key == k {
			return m.val, true
		}
	}
	return gjson.Result{}, false
}

func (c *fastCheck) typeOK(raw gjson.Result) bool {
	for _, t := range c.types {
		switch t {
		case "string":
			if raw.Type == gjson.String {
				return true
			}
		case "number":
			if raw.Type == gjson.Number {
				return true
			}
		case "integer":
			if raw.Type == gjson.Number && isIntegerText(raw.Raw) {
				return true
			}
		case "boolean":
			if raw.Type == gjson.True || raw.Type == gjson.False {
				return true
			}
		case "null":
			if raw.Type == gjson.Null {
				return true
			}
		case "object":
			if raw.IsObject() {
				return true
			}
		case "array":
			if raw.IsArray() {
				return true
			}
		}
	}
	return false
}

// isIntegerText: a JSON number whose value is a whole number (1, -3, 2.0,
// 1e3), as JSON Schema's integer type means.
func isIntegerText(s string) bool {
	if !strings.ContainsAny(s, ".eE") {
		return true
	}
	r, ok := new(big.Rat).SetString(s)
	return ok && r.IsInt()
}

// jsonEqual compares a value with compact JSON by value (numbers by their
// value, objects by members).
func jsonEqual(v gjson.Result, want []byte) bool {
	if bytes.Equal([]byte(v.Raw), want) {
		return true
	}
	w := gjson.ParseBytes(want)
	if v.Type != w.Type {
		return false
	}
	switch v.Type {
	case gjson.Number:
		a, okA := new(big.Rat).SetString(v.Raw)
		b, okB := new(big.Rat).SetString(w.Raw)
		return okA && okB && a.Cmp(b) == 0
	case gjson.String:
		return v.String() == w.String()
	}
	return false // objects and arrays other than byte-equal: let the library judge
}

// ValidFast reports whether props, compact JSON, surely passes the schema
// (see fast.go); false means "ask Validate", not "invalid".
func (s *Schema) ValidFast(props []byte) bool {
	if s.fast == nil {
		return false
	}
	return s.fast.valid(gjson.ParseBytes(props))
}
