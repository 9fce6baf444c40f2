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
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/internal/event"
)

// DecodeJSON decodes b into v (a pointer), refusing unknown keys at every
// depth and values of the wrong type. The error, when there is one, is an
// event.FieldErrors: every unknown key, or the first type or syntax
// problem, at its path ("" for the document itself). A type with its own
// UnmarshalJSON checks its keys itself; an event.FieldErrors it returns is
// passed through with its paths under the field's.
func DecodeJSON(b []byte, v any) error {
	var tree any
	if err := json.Unmarshal(b, &tree); err != nil {
		return event.FieldErrors{{Path: "", Message: syntaxMessage(b, err)}}
	}
	var fe event.FieldErrors
	for _, p := range UnknownKeys(reflect.TypeOf(v), tree, "", "json") {
		fe.Add(p, "unknown field")
	}
	if len(fe) > 0 {
		return fe
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.More() {
			return event.FieldErrors{{Path: "", Message: "more than one JSON value"}}
		}
		return nil
	}
	var te *json.UnmarshalTypeError
	var own event.FieldErrors
	switch {
	case errors.As(err, &own):
		return own
	case errors.As(err, &te):
		return event.FieldErrors{{Path: te.Field, Message: Kind(te.Type) + ", not a JSON " + te.Value}}
	}
	return event.FieldErrors{{Path: "", Message: strings.TrimPrefix(err.Error(), "json: ")}}
}

// syntaxMessage says where b stops being JSON.
func syntaxMessage(b []byte, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(b[:min(int(se.Offset), len(b))], []byte("\n"))
		return fmt.Sprintf("not valid JSON: %s (line %d, byte %d)", strings.TrimPrefix(se.Error(), "json: "), line, se.Offset)
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
		fields := map[string]reflect.Type{}
		addFields(t, tag, fields)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			lookup := k
			if tag == "json" {
				lookup = strings.ToLower(k)
			}
			ft, ok := fields[lookup]
			if !ok {
				out = append(out, Field(path, k))
				continue
			}
			out = append(out, UnknownKeys(ft, m[k], Field(path, k), tag)...)
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

// addFields records t's keys (lower case for JSON) and their types, with
// the fields of embedded structs as encoding/json flattens them.
func addFields(t reflect.Type, tag string, fields map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get(tag), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addFields(ft, tag, fields)
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
		fields[name] = f.Type
	}
}

// Field is the path of key k of the object at path: path.k.
func Field(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// Key is the path of key k of the map at path: path["k"].
func Key(path, k string) string { return path + "[" + strconv.Quote(k) + "]" }

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
