package hook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/strict"
)

// A hook definition reads and writes as it always has: the common fields,
// and the settings of its type under the key its destination names
// ("http": {…}, "rabbitmq": {…}). The hook host does not know those keys:
// a key that is not a common field and holds an object is a section, kept
// as read (JSON or YAML) until the destinations resolve the hook; any
// other unknown key is refused as the strict decoders refuse it.

// section is the settings of one destination as read.
type section struct {
	key  string
	json json.RawMessage
	yaml *yaml.Node
}

// hookFields is Hook without its methods: the common fields.
type hookFields Hook

// UnmarshalJSON reads a definition: the common fields strictly, the
// sections as they are.
func (h *Hook) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	if len(b) == 0 || b[0] != '{' {
		return errors.New("a hook is a JSON object")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return err
	}
	known := commonKeys("json")
	common := map[string]json.RawMessage{}
	var secs []section
	var fe event.FieldErrors // every problem of the common fields at once
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		v := obj[k]
		if known[strings.ToLower(k)] {
			common[k] = v
			continue
		}
		switch v[0] {
		case '{':
			secs = append(secs, section{key: k, json: v})
		case 'n': // null: no settings
		default:
			fe.Add(strict.Field("", k), "unknown field")
		}
	}
	cb, err := json.Marshal(common)
	if err != nil {
		return err
	}
	var out hookFields
	if err := strict.DecodeJSON(cb, &out); err != nil {
		var more event.FieldErrors
		if !errors.As(err, &more) {
			return err
		}
		fe = append(fe, more...)
	}
	if len(fe) > 0 {
		sort.SliceStable(fe, func(i, j int) bool { return fe[i].Path < fe[j].Path })
		return fe
	}
	*h = Hook(out)
	h.sections = secs
	return nil
}

// MarshalJSON writes the common fields with the settings under their key,
// after "type".
func (h Hook) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(hookFields(h))
	if err != nil {
		return nil, err
	}
	var extra []byte
	switch {
	case h.Settings != nil && h.dest != nil:
		sb, err := json.Marshal(h.Settings)
		if err != nil {
			return nil, err
		}
		extra = appendSection(extra, h.dest.Section, sb)
	case h.Settings != nil:
		return nil, fmt.Errorf("hook %s: settings of type %s are not resolved", h.ID, h.Type)
	default: // as read (a stored hook whose type is no longer known)
		for _, s := range h.sections {
			sb, err := s.asJSON()
			if err != nil {
				return nil, fmt.Errorf("hook %s: %s: %w", h.ID, s.key, err)
			}
			extra = appendSection(extra, s.key, sb)
		}
	}
	if len(extra) == 0 {
		return b, nil
	}
	at := bytes.Index(b, []byte(`,"max_batch_size":`))
	if at < 0 {
		at = len(b) - 1
	}
	return slices.Concat(b[:at], extra, b[at:]), nil
}

func appendSection(dst []byte, key string, v []byte) []byte {
	dst = append(dst, ',')
	dst = strconv.AppendQuote(dst, key)
	dst = append(dst, ':')
	return append(dst, v...)
}

// UnmarshalYAML reads a definition from YAML, as UnmarshalJSON does.
func (h *Hook) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a hook is a mapping", n.Line)
	}
	known := commonKeys("yaml")
	common := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	var secs []section
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case known[k.Value]:
			common.Content = append(common.Content, k, v)
		case v.Kind == yaml.MappingNode:
			secs = append(secs, section{key: k.Value, yaml: v})
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
		default:
			return fmt.Errorf("line %d: field %s not found in type hook.Hook", k.Line, k.Value)
		}
	}
	var out hookFields
	if err := common.Decode(&out); err != nil {
		return err
	}
	*h = Hook(out)
	h.sections = secs
	return nil
}

// commonKeys are the keys of the common fields (lower case for JSON,
// whose keys match without case).
func commonKeys(tag string) map[string]bool {
	out := map[string]bool{}
	t := reflect.TypeFor[hookFields]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get(tag), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if tag == "json" {
			name = strings.ToLower(name)
		}
		out[name] = true
	}
	return out
}

// decode reads the section into v: every key it does not know and every
// value of the wrong type is a problem at its path.
func (s *section) decode(v sink.Settings, p *sink.Problems) bool {
	if s.yaml == nil {
		err := strict.DecodeJSON(s.json, v)
		var fe event.FieldErrors
		errors.As(err, &fe)
		for _, f := range fe {
			p.Add(f.Path, "%s", f.Message)
		}
		return err == nil
	}
	var tree any
	if err := s.yaml.Decode(&tree); err != nil {
		p.Add("", "%v", err)
		return false
	}
	unknown := strict.UnknownKeys(reflect.TypeOf(v), tree, "", "yaml")
	for _, path := range unknown {
		p.Add(path, "unknown field")
	}
	if len(unknown) > 0 {
		return false
	}
	if err := s.yaml.Decode(v); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, e := range te.Errors {
				p.Add("", "%s", e)
			}
		} else {
			p.Add("", "%v", err)
		}
		return false
	}
	return true
}

// asJSON is the section as JSON.
func (s *section) asJSON() ([]byte, error) {
	if s.yaml == nil {
		return s.json, nil
	}
	var tree any
	if err := s.yaml.Decode(&tree); err != nil {
		return nil, err
	}
	return json.Marshal(strict.StringKeys(tree))
}

// fieldNames are the JSON keys of settings v, in order.
func fieldNames(v any) []string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.IsExported() && name != "-" && name != "" {
			out = append(out, name)
		}
	}
	return out
}
