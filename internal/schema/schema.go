// Package schema holds the JSON Schema documents that typed events are
// validated against: the thirteen built-in commerce types (embedded in the
// binary) and the ones operators register per project. Validation reports
// every violation with its path, never just the first.
package schema

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/sluicehq/sluice/internal/currency"
	"github.com/sluicehq/sluice/internal/event"
)

//go:embed builtin/*.json
var builtinFS embed.FS

// Schema is one compiled, typed event schema.
type Schema struct {
	// Type is the event type it validates: <name>-v<N>.
	Type string `json:"type"`
	// Title is the schema's title, when it has one.
	Title string `json:"title,omitempty"`
	// Doc is the JSON Schema document as registered.
	Doc json.RawMessage `json:"schema"`

	compiled *jsonschema.Schema
	fast     *fastCheck // nil: every event goes to the library
}

// CheckType refuses a type name that is not a lower-case name and a
// version.
func CheckType(typ string) error {
	if !TypeRE.MatchString(typ) {
		return fmt.Errorf("%q must be a lower-case name and a version, like order-shipped-v1", typ)
	}
	return nil
}

// TypeRE is the form of an event type: a lower-case name and a version.
var TypeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}-v[1-9][0-9]{0,5}$`)

var builtins = func() map[string]*Schema {
	m := map[string]*Schema{}
	files, err := fs.Glob(builtinFS, "builtin/*.json")
	if err != nil {
		panic(err)
	}
	for _, f := range files {
		b, err := builtinFS.ReadFile(f)
		if err != nil {
			panic(err)
		}
		typ := strings.TrimSuffix(strings.TrimPrefix(f, "builtin/"), ".json")
		s, err := Compile(typ, b)
		if err != nil {
			panic(fmt.Sprintf("built-in schema %s: %v", typ, err))
		}
		m[typ] = s
	}
	return m
}()

// Builtin returns a built-in schema.
func Builtin(typ string) (*Schema, bool) {
	s, ok := builtins[typ]
	return s, ok
}

// Builtins lists the built-in schemas by type.
func Builtins() []*Schema {
	out := make([]*Schema, 0, len(builtins))
	for _, s := range builtins {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// BuiltinTypes lists the built-in types.
func BuiltinTypes() []string {
	var out []string
	for _, s := range Builtins() {
		out = append(out, s.Type)
	}
	return out
}

// iso4217 is the "iso4217" format: an active ISO 4217 currency code.
var iso4217 = &jsonschema.Format{
	Name: "iso4217",
	Validate: func(v any) error {
		s, ok := v.(string)
		if !ok || currency.Valid(s) {
			return nil
		}
		return errors.New("not an ISO 4217 currency code such as RUB, USD or EUR")
	},
}

// Compile checks a schema document for typ and compiles it (draft 2020-12
// unless the document says otherwise; formats are asserted, "iso4217"
// included). Remote references are not fetched.
func Compile(typ string, doc []byte) (*Schema, error) {
	if err := CheckType(typ); err != nil {
		return nil, fmt.Errorf("type %w", err)
	}
	parsed, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("schema of %s is not JSON: %w", typ, err)
	}
	if _, ok := parsed.(map[string]any); !ok {
		return nil, fmt.Errorf("schema of %s must be a JSON object", typ)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.RegisterFormat(iso4217)
	url := "sluice:///schemas/" + typ + ".json"
	if err := c.AddResource(url, parsed); err != nil {
		return nil, fmt.Errorf("schema of %s: %w", typ, err)
	}
	compiled, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("schema of %s does not compile: %w", typ, err)
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, doc)
	s := &Schema{Type: typ, Doc: compact.Bytes(), compiled: compiled}
	if m, ok := parsed.(map[string]any); ok {
		s.Title, _ = m["title"].(string)
		s.fast = compileFast(m)
	}
	return s, nil
}

var printer = message.NewPrinter(language.English)

// Validate checks doc (decoded with json.Number numbers, as
// jsonschema.UnmarshalJSON does) and returns every violation, with paths
// written below prefix: prefix.cart[1].quantity.
func (s *Schema) Validate(doc any, prefix string) event.FieldErrors {
	err := s.compiled.Validate(doc)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return event.FieldErrors{{Path: prefix, Message: err.Error()}}
	}
	var out event.FieldErrors
	seen := map[string]bool{}
	add := func(e *jsonschema.ValidationError, msg string) {
		fe := event.FieldError{Path: renderPath(prefix, doc, e.InstanceLocation), Message: msg}
		if k := fe.Path + "\x00" + fe.Message; !seen[k] {
			seen[k] = true
			out = append(out, fe)
		}
	}
	addAt := func(e *jsonschema.ValidationError, prop, msg string) {
		loc := append(e.InstanceLocation[:len(e.InstanceLocation):len(e.InstanceLocation)], prop)
		fe := event.FieldError{Path: renderPath(prefix, doc, loc), Message: msg}
		if k := fe.Path + "\x00" + fe.Message; !seen[k] {
			seen[k] = true
			out = append(out, fe)
		}
	}
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		// Alternatives that are only about which properties are present
		// ("hashedEmail and/or cuid", "exactly one of …") read better as
		// one sentence than as each branch's failure.
		switch k := e.ErrorKind.(type) {
		case *kind.AnyOf:
			if names, ok := requiredOnly(e.Causes); ok {
				add(e, "needs at least one of "+names)
				return
			}
		case *kind.OneOf:
			if k.Subschemas == nil {
				if names, ok := requiredOnly(e.Causes); ok {
					add(e, "needs exactly one of "+names)
					return
				}
			} else if names := s.branchRequired(e.SchemaURL); names != "" {
				add(e, "takes only one of "+names)
				return
			}
		}
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		// A missing or unexpected property is reported at its own path:
		// properties.uniqueTransactionId is required.
		switch k := e.ErrorKind.(type) {
		case *kind.Required:
			for _, m := range k.Missing {
				addAt(e, m, "is required")
			}
			return
		case *kind.DependentRequired:
			for _, m := range k.Missing {
				addAt(e, m, "is required when "+k.Prop+" is present")
			}
			return
		case *kind.AdditionalProperties:
			for _, m := range k.Properties {
				addAt(e, m, "is not allowed: the schema lists every property this type takes")
			}
			return
		}
		add(e, describe(e.ErrorKind))
	}
	walk(ve)
	// The library walks properties in map order: sort for stable answers.
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Message < out[j].Message
	})
	return out
}

// describe words the common violations the way the other dialects do
// ("must be a number"); the rest keep the library's wording.
func describe(k jsonschema.ErrorKind) string {
	switch k := k.(type) {
	case *kind.Type:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = article(w)
		}
		return "must be " + strings.Join(want, " or ") + " (got " + article(k.Got) + ")"
	case *kind.Minimum:
		return "must be at least " + k.Want.RatString() + " (got " + k.Got.RatString() + ")"
	case *kind.Maximum:
		return "must be at most " + k.Want.RatString() + " (got " + k.Got.RatString() + ")"
	case *kind.MinLength:
		return fmt.Sprintf("must be at least %d characters long (got %d)", k.Want, k.Got)
	case *kind.MaxLength:
		return fmt.Sprintf("must be at most %d characters long (got %d)", k.Want, k.Got)
	case *kind.MinItems:
		return fmt.Sprintf("must have at least %d items (got %d)", k.Want, k.Got)
	case *kind.MaxItems:
		return fmt.Sprintf("must have at most %d items (got %d)", k.Want, k.Got)
	case *kind.Const:
		b, _ := json.Marshal(k.Want)
		return "must be " + string(b)
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			b, _ := json.Marshal(w)
			want[i] = string(b)
		}
		return "must be one of " + strings.Join(want, ", ")
	case *kind.Format:
		if k.Err != nil {
			return k.Err.Error()
		}
	}
	return k.LocalizedString(printer)
}

// article puts "a"/"an" before a JSON type name: "an integer", "a string".
func article(typ string) string {
	switch typ {
	case "integer", "object", "array":
		return "an " + typ
	case "null":
		return "null"
	}
	return "a " + typ
}

// requiredOnly reports whether every branch failed only for a missing
// property, and names those properties.
func requiredOnly(causes []*jsonschema.ValidationError) (string, bool) {
	var names []string
	for _, c := range causes {
		// A branch's failure is a Required, or a group holding only one.
		if _, isGroup := c.ErrorKind.(*kind.Group); isGroup && len(c.Causes) == 1 {
			c = c.Causes[0]
		}
		r, ok := c.ErrorKind.(*kind.Required)
		if !ok || len(c.Causes) > 0 {
			return "", false
		}
		names = append(names, r.Missing...)
	}
	return strings.Join(names, ", "), len(names) > 0
}

// branchRequired names the properties the branches of the oneOf at
// location require.
func (s *Schema) branchRequired(location string) string {
	var found *jsonschema.Schema
	var visit func(sch *jsonschema.Schema)
	visit = func(sch *jsonschema.Schema) {
		if sch == nil || found != nil {
			return
		}
		if sch.Location+"/oneOf" == location || sch.Location == location && len(sch.OneOf) > 0 {
			found = sch
			return
		}
		for _, sub := range sch.Properties {
			visit(sub)
		}
	}
	visit(s.compiled)
	if found == nil {
		return ""
	}
	var names []string
	for _, b := range found.OneOf {
		names = append(names, b.Required...)
	}
	return strings.Join(names, ", ")
}

// renderPath writes an instance location the way the other dialects do:
// names after dots (or ["…"] when not identifiers), array indexes in [].
func renderPath(prefix string, doc any, loc []string) string {
	var b strings.Builder
	b.WriteString(prefix)
	cur := doc
	for _, seg := range loc {
		switch c := cur.(type) {
		case []any:
			b.WriteString("[" + seg + "]")
			if i, err := strconv.Atoi(seg); err == nil && i >= 0 && i < len(c) {
				cur = c[i]
			} else {
				cur = nil
			}
			continue
		case map[string]any:
			cur = c[seg]
		default:
			cur = nil
		}
		if identRE.MatchString(seg) {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(seg)
		} else {
			b.Write(event.AppendString([]byte("["), seg))
			b.WriteByte(']')
		}
	}
	return b.String()
}

var identRE = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*$`)
