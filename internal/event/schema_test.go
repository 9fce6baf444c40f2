package event

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// The JSON Schema in docs/ describes exactly the Go type: same properties,
// and every field that is always present is required.
func TestSchemaDocumentMatchesEvent(t *testing.T) {
	b, err := os.ReadFile("../../docs/event.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Required   []string                   `json:"required"`
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	var props, required []string
	typ := reflect.TypeOf(Event{})
	for i := 0; i < typ.NumField(); i++ {
		name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if name == "-" { // not part of the canonical JSON (Content)
			continue
		}
		props = append(props, name)
		if !strings.Contains(opts, "omitempty") {
			required = append(required, name)
		}
	}
	var schemaProps []string
	for k := range schema.Properties {
		schemaProps = append(schemaProps, k)
	}
	sort.Strings(props)
	sort.Strings(required)
	sort.Strings(schemaProps)
	sort.Strings(schema.Required)
	if !reflect.DeepEqual(props, schemaProps) {
		t.Errorf("schema properties %v, Event fields %v", schemaProps, props)
	}
	if !reflect.DeepEqual(required, schema.Required) {
		t.Errorf("schema required %v, always-present fields %v", schema.Required, required)
	}
	// The seed message matches the schema's patterns.
	var pats struct {
		Properties map[string]struct {
			Pattern string `json:"pattern"`
		} `json:"properties"`
	}
	json.Unmarshal(b, &pats)
	e := seedEvent()
	for field, value := range map[string]string{"key": e.Key, "uid": e.UID, "id": e.ID.String()} {
		if !regexp.MustCompile(pats.Properties[field].Pattern).MatchString(value) {
			t.Errorf("%s %q does not match the schema's pattern", field, value)
		}
	}
}
