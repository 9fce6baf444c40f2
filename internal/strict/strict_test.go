package strict

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/sluicehq/sluice/internal/event"
)

type inner struct {
	Hosts []string `json:"hosts"`
	Port  int      `json:"port"`
}

type Base struct {
	Owner string `json:"owner"`
}

// own reads itself: its keys are its business.
type own struct{ raw string }

func (o *own) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"bad"`:
		return event.FieldErrors{{Path: "", Message: "refused by its decoder"}}
	case `"worse"`:
		return event.FieldErrors{{Path: "part", Message: "refused"}, {Path: "[2]", Message: "also refused"}}
	case `"plain"`:
		return errors.New("a plain error")
	}
	o.raw = string(b)
	return nil
}

type doc struct {
	Base
	Name    string           `json:"name"`
	Count   *int             `json:"count,omitempty"`
	Inner   inner            `json:"inner"`
	Items   []inner          `json:"items"`
	ByName  map[string]inner `json:"by_name"`
	Own     own              `json:"own"`
	Owns    map[string]own   `json:"owns"`
	Small   int8             `json:"small"`
	U32     uint32           `json:"u32"`
	Ratio   float32          `json:"ratio"`
	Raw     []byte           `json:"raw"`
	Any     any              `json:"any"`
	Flag    bool             `json:"flag"`
	Counts  map[string]int   `json:"counts"`
	Skipped string           `json:"-"`
	private string
}

type Shadowed struct {
	Name  int    `json:"name"`
	Extra string `json:"extra"`
}

type quirks struct {
	Name string `json:"name"`
	Shadowed
	Count  int64          `json:"count,string"`
	On     bool           `json:",string"`
	N      json.Number    `json:"n"`
	Pair   [2]int         `json:"pair"`
	Secret string         `json:"secret"`
	Any    any            `json:"any"`
	Dotted map[string]int `json:"dotted"`
}

// What encoding/json takes, the check takes: a shallower field shadows an
// embedded one, ",string" values, json.Number given a number or a string
// holding one, extra elements of an array dropped, keys matched with
// Unicode case folding (ſ is s).
func TestDecodeJSONAsEncodingJSONDoes(t *testing.T) {
	var q quirks
	if err := DecodeJSON([]byte(`{"name":"x","extra":"e","count":"12","on":"true","n":"1.5e3","pair":[1,2,3],"ſecret":"s","any":{"a":[1,2.5]}}`), &q); err != nil {
		t.Fatalf("refused: %v", err)
	}
	if q.Name != "x" || q.Extra != "e" || q.Count != 12 || !q.On || q.N != "1.5e3" || q.Pair != [2]int{1, 2} || q.Secret != "s" {
		t.Fatalf("decoded %+v", q)
	}
	for body, want := range map[string]event.FieldErrors{
		`{"count":12}`:            {{Path: "count", Message: "a number written as a JSON string, not a JSON number"}},
		`{"count":"twelve"}`:      {{Path: "count", Message: "a whole number from -9223372036854775808 to 9223372036854775807, not twelve"}},
		`{"on":"yes"}`:            {{Path: "on", Message: `true or false written as a JSON string, not "yes"`}},
		`{"n":"12a"}`:             {{Path: "n", Message: `a number, not the string "12a"`}},
		`{"n":true}`:              {{Path: "n", Message: "a number, not a JSON boolean"}},
		`{"any":{"a b":[1e400]}}`: {{Path: `any["a b"][0]`, Message: "a number in range, not 1e400"}},
		`{"dotted":{"a.b":"x"}}`:  {{Path: `dotted["a.b"]`, Message: "a number, not a JSON string"}},
		`{"a.b":1,"":2}`:          {{Path: `[""]`, Message: "unknown field"}, {Path: `["a.b"]`, Message: "unknown field"}},
		`{"pair":[1,"two"]}`:      {{Path: "pair[1]", Message: "a number, not a JSON string"}},
	} {
		var q quirks
		err := DecodeJSON([]byte(body), &q)
		var got event.FieldErrors
		errors.As(err, &got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", body, got, want)
		}
	}
}

func TestDecodeJSON(t *testing.T) {
	for _, c := range []struct {
		body string
		want event.FieldErrors
	}{
		{`{"name":"x","count":2,"owner":"o","inner":{"hosts":["a"],"port":1}}`, nil},
		{`{"NAME":"x"}`, nil}, // keys match without case, as encoding/json matches them
		{`{"nmae":"x"}`, event.FieldErrors{{Path: "nmae", Message: "unknown field"}}},
		{`{"inner":{"host":["a"]},"items":[{},{"prt":1}],"by_name":{"a b":{"x":1}},"-":1,"private":1,"skipped":2}`, event.FieldErrors{
			{Path: `["-"]`, Message: "unknown field"},
			{Path: `by_name["a b"].x`, Message: "unknown field"},
			{Path: "inner.host", Message: "unknown field"},
			{Path: "items[1].prt", Message: "unknown field"},
			{Path: "private", Message: "unknown field"},
			{Path: "skipped", Message: "unknown field"},
		}},
		{`{"own":{"anything":1}}`, nil}, // a type with its own decoder is not looked into
		{`{"own":"bad"}`, event.FieldErrors{{Path: "own", Message: "refused by its decoder"}}},
		{`{"own":"worse","owns":{"k":"plain"}}`, event.FieldErrors{{Path: "own.part", Message: "refused"}, {Path: "own[2]", Message: "also refused"}, {Path: `owns["k"]`, Message: "a plain error"}}},
		{`{"small":128,"u32":-1,"ratio":1e39,"count":1.5}`, event.FieldErrors{
			{Path: "count", Message: "a whole number from -9223372036854775808 to 9223372036854775807, not 1.5"},
			{Path: "ratio", Message: "a number in range, not 1e39"},
			{Path: "small", Message: "a whole number from -128 to 127, not 128"},
			{Path: "u32", Message: "a whole number from 0 to 4294967295, not -1"}}},
		{`{"raw":[1],"flag":"yes","counts":{"a":1,"b":"2"},"items":[{"port":1},{"port":"2"}]}`, event.FieldErrors{
			{Path: `counts["b"]`, Message: "a number, not a JSON string"},
			{Path: "flag", Message: "a boolean, not a JSON string"},
			{Path: "items[1].port", Message: "a number, not a JSON string"},
			{Path: "raw", Message: "a base64 string, not a JSON array"}}},
		{`{"name":null,"count":null,"inner":null,"any":{"x":[1,"y"]},"raw":"AAE="}`, nil},
		{`{"name":5}`, event.FieldErrors{{Path: "name", Message: "a string, not a JSON number"}}},
		{`{"inner":{"hosts":"a"}}`, event.FieldErrors{{Path: "inner.hosts", Message: "an array, not a JSON string"}}},
		{`{"count":"2"}`, event.FieldErrors{{Path: "count", Message: "a number, not a JSON string"}}},
		{`{"inner":[]}`, event.FieldErrors{{Path: "inner", Message: "an object, not a JSON array"}}},
		{`{"name":"x",}`, event.FieldErrors{{Path: "", Message: "not valid JSON: invalid character '}' looking for beginning of object key string (line 1, byte 13)"}}},
		{"{\n\"name\":\n}", event.FieldErrors{{Path: "", Message: "not valid JSON: invalid character '}' looking for beginning of value (line 3, byte 11)"}}},
		{`{"name":"x"`, event.FieldErrors{{Path: "", Message: "not valid JSON: unexpected end of JSON input (line 1, byte 11)"}}},
		{`{"name":"x"} {}`, event.FieldErrors{{Path: "", Message: "not valid JSON: invalid character '{' after top-level value (line 1, byte 14)"}}},
		{`[1]`, event.FieldErrors{{Path: "", Message: "an object, not a JSON array"}}},
	} {
		var d doc
		err := DecodeJSON([]byte(c.body), &d)
		var got event.FieldErrors
		if err != nil && !errors.As(err, &got) {
			t.Errorf("%s: %T %v, want field errors", c.body, err, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(c.want)
			t.Errorf("%s:\n got %s\nwant %s", c.body, g, w)
		}
	}
	var d doc
	if err := DecodeJSON([]byte(`{"name":"n","owner":"o","count":3,"items":[{"port":2}],"own":{"k":1}}`), &d); err != nil ||
		d.Name != "n" || d.Owner != "o" || *d.Count != 3 || d.Items[0].Port != 2 || d.Own.raw != `{"k":1}` {
		t.Fatalf("decoded %+v, %v", d, err)
	}
}

// YAML trees: untagged fields match their lower-cased name, and maps
// with other than string keys are read as objects.
func TestUnknownKeysYAML(t *testing.T) {
	type y struct {
		Plain  int
		Tagged int            `yaml:"tag_ged"`
		Opt    int            `yaml:",omitempty"`
		M      map[string]int `yaml:"m"`
	}
	tree := map[string]any{"plain": 1, "tag_ged": 2, "opt": 3, "Plain": 4, "m": map[any]any{1: 2}, "extra": map[any]any{"a": 1}}
	got := UnknownKeys(reflect.TypeFor[y](), tree, "", "yaml")
	if want := []string{"Plain", "extra"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := UnknownKeys(reflect.TypeFor[y](), map[any]any{"plain": 1, true: 2}, "sec", "yaml"); !reflect.DeepEqual(got, []string{"sec.true"}) {
		t.Fatalf("non-string keys: %q", got)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"name":"x"}`, `{"inner":{"hosts":["a"]}}`, `{"by_name":{"k":{"port":1}}}`, `[`, `{"own":"bad"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d doc
		err := DecodeJSON(b, &d)
		if err == nil {
			if !json.Valid(b) {
				t.Fatalf("accepted invalid JSON %q", b)
			}
			return
		}
		var fe event.FieldErrors
		if !errors.As(err, &fe) || len(fe) == 0 {
			t.Fatalf("%q: %T %v", b, err, err)
		}
		for _, e := range fe {
			if e.Message == "" {
				t.Fatalf("%q: a problem without a message: %v", b, fe)
			}
		}
	})
}
