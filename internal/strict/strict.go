// Package strict reads JSON (and YAML trees) the way sluice's
// configuration surfaces do: every key the target type has no field for,
// and every value of the wrong type, is a problem named by its path
// ("settings.redirect_hosts", `custom_data["x"]`, "items[2].sku").
package strict

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/internal/event"
)

// DecodeJSON decodes b into v (a pointer), refusing unknown keys at every
// depth, values of the wrong JSON type and numbers out of their field's
// range. The error, when there is one, is an event.FieldErrors naming
// every problem at its path ("" for the document itself). A value whose
// type reads itself (UnmarshalJSON, UnmarshalText) is handed to it, and
// what it refuses is a problem at that value's path (with the paths of an
// event.FieldErrors it returns under it).
func DecodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return event.FieldErrors{{Path: "", Message: syntaxMessage(b, err)}}
	}
	if _, err := dec.Token(); err != io.EOF {
		// json.Unmarshal's words for what follows the value.
		return event.FieldErrors{{Path: "", Message: syntaxMessage(b, json.Unmarshal(b, new(any)))}}
	}
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var fe event.FieldErrors
	if !ownDecoder(t, "json") { // a type that reads itself is checked by its decode below
		checkJSON(t, tree, "", &fe)
		if len(fe) > 0 {
			return fe
		}
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return asProblems("", err)
	}
	return nil
}

// asProblems is an error of a decoder as problems at path.
func asProblems(path string, err error) event.FieldErrors {
	var own event.FieldErrors
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &own):
		out := make(event.FieldErrors, len(own))
		for i, f := range own {
			f.Path = event.JoinPath(path, f.Path)
			out[i] = f
		}
		return out
	case errors.As(err, &te):
		return event.FieldErrors{{Path: event.JoinPath(path, te.Field), Message: Kind(te.Type) + ", not a JSON " + te.Value}}
	}
	return event.FieldErrors{{Path: path, Message: strings.TrimPrefix(err.Error(), "json: ")}}
}

// checkJSON adds the problems of tree (decoded with UseNumber) as a value
// of type t at path.
func checkJSON(t reflect.Type, tree any, path string, fe *event.FieldErrors) {
	if tree == nil {
		return // null leaves a value as it is, as encoding/json does
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if ownDecoder(t, "json") {
		b, err := json.Marshal(tree)
		if err == nil {
			err = json.Unmarshal(b, reflect.New(t).Interface())
		}
		if err != nil {
			*fe = append(*fe, asProblems(path, err)...)
		}
		return
	}
	wrong := func() { fe.Add(path, Kind(t)+", not "+jsonKind(tree)) }
	if t == numberType { // a number, or a string that holds one
		switch v := tree.(type) {
		case json.Number:
		case string:
			if !isNumber(v) {
				fe.Add(path, fmt.Sprintf("a number, not the string %q", v))
			}
		default:
			fe.Add(path, "a number, not "+jsonKind(tree))
		}
		return
	}
	switch t.Kind() {
	case reflect.Interface:
		checkNumbers(tree, path, fe)
	case reflect.String:
		if _, ok := tree.(string); !ok {
			wrong()
		}
	case reflect.Bool:
		if _, ok := tree.(bool); !ok {
			wrong()
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := tree.(json.Number)
		if !ok {
			wrong()
		} else if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			hi := int64(math.MaxInt64 >> (64 - t.Bits()))
			fe.Add(path, fmt.Sprintf("a whole number from %d to %d, not %s", -hi-1, hi, n))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := tree.(json.Number)
		if !ok {
			wrong()
		} else if _, err := strconv.ParseUint(string(n), 10, t.Bits()); err != nil {
			fe.Add(path, fmt.Sprintf("a whole number from 0 to %d, not %s", uint64(math.MaxUint64>>(64-t.Bits())), n))
		}
	case reflect.Float32, reflect.Float64:
		if n, ok := tree.(json.Number); !ok {
			wrong()
		} else if _, err := strconv.ParseFloat(string(n), t.Bits()); err != nil {
			fe.Add(path, "a number in range, not "+string(n))
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Kind() == reflect.Slice {
			if _, ok := tree.(string); !ok { // []byte is base64 text
				fe.Add(path, "a base64 string, not "+jsonKind(tree))
			}
			return
		}
		a, ok := tree.([]any)
		if !ok {
			wrong()
			return
		}
		for i, e := range a {
			if t.Kind() == reflect.Array && i >= t.Len() {
				break // encoding/json drops what does not fit
			}
			checkJSON(t.Elem(), e, fmt.Sprintf("%s[%d]", path, i), fe)
		}
	case reflect.Map:
		m, ok := tree.(map[string]any)
		if !ok {
			wrong()
			return
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			checkJSON(t.Elem(), m[k], Key(path, k), fe)
		}
	case reflect.Struct:
		m, ok := tree.(map[string]any)
		if !ok {
			wrong()
			return
		}
		fields := map[string]field{}
		addFields(t, "json", fields)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			f, ok := lookup(fields, k, "json")
			switch {
			case !ok:
				fe.Add(Field(path, k), "unknown field")
			case f.quoted:
				checkQuoted(f.t, m[k], Field(path, k), fe)
			default:
				checkJSON(f.t, m[k], Field(path, k), fe)
			}
		}
	default:
		fe.Add(path, "a value of type "+t.String()+" cannot be read from JSON")
	}
}

var numberType = reflect.TypeFor[json.Number]()

// isNumber reports whether s is a JSON number.
func isNumber(s string) bool {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return false
	}
	_, ok := v.(json.Number)
	_, err := d.Token()
	return ok && err == io.EOF
}

// checkNumbers refuses, in a value read as any, a number a float64 cannot
// hold (encoding/json reads it as one).
func checkNumbers(tree any, path string, fe *event.FieldErrors) {
	switch v := tree.(type) {
	case json.Number:
		if _, err := strconv.ParseFloat(string(v), 64); err != nil {
			fe.Add(path, "a number in range, not "+string(v))
		}
	case []any:
		for i, e := range v {
			checkNumbers(e, fmt.Sprintf("%s[%d]", path, i), fe)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			checkNumbers(v[k], Key(path, k), fe)
		}
	}
}

// jsonKind names a decoded JSON value: "a JSON string", …
func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "a JSON string"
	case bool:
		return "a JSON boolean"
	case json.Number:
		return "a JSON number"
	case []any:
		return "a JSON array"
	case map[string]any:
		return "a JSON object"
	}
	return "null"
}

// syntaxMessage says where b stops being JSON.
func syntaxMessage(b []byte, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(b[:min(int(se.Offset), len(b))], []byte("\n"))
		return fmt.Sprintf("not valid JSON: %s (line %d, byte %d)", strings.TrimPrefix(se.Error(), "json: "), line, se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Sprintf("not valid JSON: unexpected end of JSON input (line %d, byte %d)", 1+bytes.Count(b, []byte("\n")), len(b))
	}
	return "not valid JSON: " + strings.TrimPrefix(err.Error(), "json: ")
}

var (
	unmarshalerJSON = reflect.TypeFor[json.Unmarshaler]()
	unmarshalerText = reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()
	unmarshalerYAML = reflect.TypeFor[interface {
		UnmarshalYAML(func(any) error) error
	}]()
)

// ownDecoder reports whether t reads itself (and so checks its own keys).
func ownDecoder(t reflect.Type, tag string) bool {
	pt := reflect.PointerTo(t)
	if pt.Implements(unmarshalerText) || t.Implements(unmarshalerText) {
		return true
	}
	if tag == "json" {
		return pt.Implements(unmarshalerJSON) || t.Implements(unmarshalerJSON)
	}
	if pt.Implements(unmarshalerYAML) {
		return true
	}
	m, ok := pt.MethodByName("UnmarshalYAML")
	return ok && m.Type.NumIn() == 2
}

// UnknownKeys are the paths of the keys in tree (a decoded JSON or YAML
// value) that type t has no field for, through structs (and their
// embedded structs), maps and slices. JSON keys match fields without case,
// as encoding/json matches them. A type with its own decoder is not looked
// into.
func UnknownKeys(t reflect.Type, tree any, path, tag string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if ownDecoder(t, tag) {
		return nil
	}
	var out []string
	switch t.Kind() {
	case reflect.Struct:
		m, ok := tree.(map[string]any)
		if !ok {
			if mm, isAny := tree.(map[any]any); isAny {
				m = StringKeys(mm).(map[string]any)
			} else {
				return nil // a type error, for the decoder to name
			}
		}
		fields := map[string]field{}
		addFields(t, tag, fields)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			f, ok := lookup(fields, k, tag)
			if !ok {
				out = append(out, Field(path, k))
				continue
			}
			out = append(out, UnknownKeys(f.t, m[k], Field(path, k), tag)...)
		}
	case reflect.Map:
		if m, ok := tree.(map[string]any); ok {
			for _, k := range slices.Sorted(maps.Keys(m)) {
				out = append(out, UnknownKeys(t.Elem(), m[k], Key(path, k), tag)...)
			}
		}
	case reflect.Slice, reflect.Array:
		if a, ok := tree.([]any); ok {
			for i, e := range a {
				out = append(out, UnknownKeys(t.Elem(), e, fmt.Sprintf("%s[%d]", path, i), tag)...)
			}
		}
	}
	return out
}

// field is a struct field as a decoder sees it.
type field struct {
	t      reflect.Type
	quoted bool // json:",string": the value is written as a JSON string
}

// addFields records t's keys (lower case for JSON) and their fields. The
// fields of embedded structs are flattened as encoding/json flattens them:
// a shallower field of the same name wins.
func addFields(t reflect.Type, tag string, fields map[string]field) {
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get(tag), ",")
		if name == "-" && opts == "" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				embedded = append(embedded, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" || tag == "json" {
			// yaml.v3 lower-cases an untagged field's name; JSON keys
			// match without case.
			name = strings.ToLower(cmp.Or(name, f.Name))
		}
		fields[name] = field{t: f.Type, quoted: tag == "json" && slices.Contains(strings.Split(opts, ","), "string")}
	}
	for _, et := range embedded {
		deeper := map[string]field{}
		addFields(et, tag, deeper)
		for k, f := range deeper {
			if _, taken := fields[k]; !taken {
				fields[k] = f
			}
		}
	}
}

// lookup finds key k's field: exactly for YAML, without case for JSON
// (Unicode case folding, as encoding/json matches keys).
func lookup(fields map[string]field, k, tag string) (field, bool) {
	if tag != "json" {
		f, ok := fields[k]
		return f, ok
	}
	if f, ok := fields[strings.ToLower(k)]; ok {
		return f, true
	}
	for name, f := range fields {
		if strings.EqualFold(name, k) {
			return f, true
		}
	}
	return field{}, false
}

// checkQuoted checks a json:",string" value: a JSON string holding the
// field's value (a number or a boolean written as text).
func checkQuoted(t reflect.Type, tree any, path string, fe *event.FieldErrors) {
	s, ok := tree.(string)
	if !ok {
		if tree != nil {
			fe.Add(path, Kind(t)+" written as a JSON string, not "+jsonKind(tree))
		}
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		if s != "true" && s != "false" {
			fe.Add(path, fmt.Sprintf("true or false written as a JSON string, not %q", s))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		checkJSON(t, json.Number(s), path, fe)
	}
}

// Field is the path of key k of the object at path: path.k, or
// path["k.x"] for a key that is not a name.
func Field(path, k string) string {
	seg := event.PathSegment(k) // .k, or ["k"] for a key that is not a name
	if path == "" && seg[0] == '.' {
		return seg[1:]
	}
	return path + seg
}

// Key is the path of key k of the map at path: path["k"].
func Key(path, k string) string { return path + "[" + string(event.AppendString(nil, k)) + "]" }

// StringKeys turns YAML's maps with other than string keys into JSON
// objects, in place where it can.
func StringKeys(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = StringKeys(e)
		}
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = StringKeys(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = StringKeys(e)
		}
	}
	return v
}

// Kind is what a value of t is in JSON: "a string", "an array", …
func Kind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a " + t.String()
}
