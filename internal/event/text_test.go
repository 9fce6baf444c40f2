package event

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestCheckJSONText(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		path      string // "" = valid
		key       bool
		offset    int
		problem   string
	}{
		{name: "ascii", doc: `{"a":"b","c":[1,"d",{"e":null}]}`},
		{name: "multibyte", doc: `{"شهر":"قم","city":"Москва","emoji":"😀"}`},
		{name: "escaped pair", doc: `{"a":"\ud83d\ude00"}`},
		{name: "escaped backslash then u", doc: `{"a":"\\ud800"}`},
		{name: "plain escapes", doc: `{"a":"x\n\"\\\u00e9"}`},
		{name: "value", doc: "{\"a\":{\"b\":\"x\xffy\"}}", path: "a.b", offset: 12, problem: "invalid byte 0xff"},
		{name: "key", doc: "{\"a\":{\"b\xc3\":1}}", path: `a["b�"]`, key: true, offset: 8, problem: "invalid byte 0xc3"},
		{name: "array element", doc: "{\"messages\":[{},{\"name\":\"\xe2\x82\"}]}", path: "messages[1].name", offset: 25, problem: "invalid byte 0xe2"},
		{name: "root array", doc: "[\"ok\",\"\xff\"]", path: "[1]", offset: 7, problem: "invalid byte 0xff"},
		{name: "lone high surrogate", doc: `{"a":"x\ud800y"}`, path: "a", offset: 7, problem: `unpaired UTF-16 surrogate \ud800`},
		{name: "lone low surrogate", doc: `{"a b":"\udc00"}`, path: `["a b"]`, offset: 8, problem: `unpaired UTF-16 surrogate \udc00`},
		{name: "high then not low", doc: `{"a":"\ud800\u0041"}`, path: "a", offset: 6, problem: `unpaired UTF-16 surrogate \ud800`},
		{name: "with spaces", doc: "{ \"a\" : [ 1 , \"\xff\" ] }", path: "a[1]", offset: 15, problem: "invalid byte 0xff"},
		{name: "overlong", doc: "{\"a\":\"\xc0\xaf\"}", path: "a", offset: 6, problem: "invalid byte 0xc0"},
		{name: "encoded surrogate", doc: "{\"a\":\"\xed\xa0\x80\"}", path: "a", offset: 6, problem: "invalid byte 0xed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !json.Valid([]byte(tc.doc)) {
				t.Fatalf("test document is not valid JSON syntax: %q", tc.doc)
			}
			err := CheckJSONText([]byte(tc.doc))
			if tc.path == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want one at %s", tc.path)
			}
			if err.Path != tc.path || err.Key != tc.key || err.Offset != tc.offset || err.Problem != tc.problem {
				t.Fatalf("got {path %q key %v offset %d problem %q}, want {%q %v %d %q}", err.Path, err.Key, err.Offset, err.Problem, tc.path, tc.key, tc.offset, tc.problem)
			}
			// Mended, the document is text and still says the same
			// where it was valid.
			fixed := SanitizeJSONText([]byte(tc.doc))
			if !utf8.Valid(fixed) || CheckJSONText(fixed) != nil || !json.Valid(fixed) {
				t.Fatalf("sanitized document is still not text: %q", fixed)
			}
		})
	}
}

func TestSanitizeJSONTextKeepsValidDocuments(t *testing.T) {
	doc := []byte(`{"a":"\ud83d\ude00","b":"\\ud800","c":"é"}`)
	if got := SanitizeJSONText(doc); &got[0] != &doc[0] {
		t.Fatalf("a valid document was copied")
	}
	got := string(SanitizeJSONText([]byte("{\"a\":\"x\xffy\\ud800z\",\"k\xfe\":1}")))
	if want := `{"a":"x\ufffdy\ufffdz","k\ufffd":1}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestCheckText(t *testing.T) {
	if off, p := CheckText("Москва"); p != "" {
		t.Fatalf("valid text refused at %d: %s", off, p)
	}
	if off, p := CheckText("ab\xffc"); off != 2 || p != "invalid byte 0xff" {
		t.Fatalf("got %d %q", off, p)
	}
}

func FuzzCheckJSONText(f *testing.F) {
	f.Add([]byte(`{"a":"b"}`))
	f.Add([]byte("{\"a\":\"\xff\"}"))
	f.Add([]byte(`{"a":["\ud800",{"\udc00":1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		err := CheckJSONText(b)
		fixed := SanitizeJSONText(b)
		if !json.Valid(fixed) {
			t.Fatalf("sanitizing broke the syntax: %q → %q", b, fixed)
		}
		if CheckJSONText(fixed) != nil || !utf8.Valid(fixed) {
			t.Fatalf("sanitized document is not text: %q", fixed)
		}
		if err == nil && string(fixed) != string(b) {
			t.Fatalf("a text document was changed: %q → %q", b, fixed)
		}
		if err != nil && err.Offset >= len(b) {
			t.Fatalf("offset %d outside the document", err.Offset)
		}
	})
}
