package dialect

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// fastCompact agrees with encoding/json: what it takes is valid and
// compacted as json.Compact does; what it refuses goes to encoding/json,
// so only its acceptances need checking, and that it takes ordinary
// documents at all.
func checkFastCompact(t *testing.T, in []byte) {
	t.Helper()
	out, ok := fastCompact(in)
	var want bytes.Buffer
	err := json.Compact(&want, in)
	if ok && err != nil {
		t.Fatalf("fastCompact took %q, which encoding/json refuses: %v", in, err)
	}
	if ok && !bytes.Equal(out, want.Bytes()) {
		t.Fatalf("fastCompact(%q) = %q, json.Compact %q", in, out, want.Bytes())
	}
}

func TestFastCompact(t *testing.T) {
	for _, in := range []string{
		`{"a": 1, "b": [true, false, null, "x y", -0.5e+3]}`,
		" \t\n{\"k\":\"v\\\" }\"}\r\n",
		`"\u00e9\ud83d\ude00"`, `[]`, `{}`, `0`, `-0`, `1E9`,
	} {
		out, ok := fastCompact([]byte(in))
		if !ok {
			t.Fatalf("fastCompact refused %q", in)
		}
		checkFastCompact(t, []byte(in))
		_ = out
	}
	for _, in := range []string{
		`1 2`, `tr ue`, `[1 2]`, `- 1`, `{"a":1,}`, `[1,]`, `01`, `1.`, `.5`, `+1`, `"\x"`, "\"a\x01\"", `"abc`, `]`, `[]]`,
		"\"\x1b\\\\b\"", `{"a" 1}`, `{1:2}`, `NaN`, `Infinity`, `nul`, `"\u12"`, ``, ` `, `[}`, `{]`,
		strings.Repeat("[", maxFastDepth+1) + strings.Repeat("]", maxFastDepth+1),
	} {
		if _, ok := fastCompact([]byte(in)); ok {
			t.Fatalf("fastCompact took %q", in)
		}
	}
	// Deeper than it takes but valid: compactJSON still takes it, through
	// encoding/json.
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	if out, err := compactJSON([]byte(deep)); err != nil || string(out) != deep {
		t.Fatalf("a document 5000 deep: %v", err)
	}
	// A body of nothing but brackets does not recurse past the bound.
	if _, err := compactJSON(bytes.Repeat([]byte("["), 4<<20)); err == nil {
		t.Fatal("4 MiB of '[' taken")
	}
}

func FuzzFastCompact(f *testing.F) {
	for _, s := range []string{`{"a": [1, 2.5e-3, "x\"y", {"b": null}]}`, `1 2`, `[1,]`, `"\ud800"`, " {\"a\" :\ttrue } ", `[[[]]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkFastCompact(t, in)
	})
}
