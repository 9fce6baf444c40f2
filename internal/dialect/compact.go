package dialect

import (
	"github.com/valyala/fastjson"
)

// maxFastDepth is the nesting that fastCompact takes: fastjson's
// validator recurses once per level, so deeper documents (which no sender
// sends, and encoding/json takes up to 10 000 levels of) go to
// encoding/json, which does not recurse.
const maxFastDepth = 64

// fastCompact returns body compacted in a new slice and true when body is
// valid JSON of at most maxFastDepth levels; false for anything else (not
// JSON, too deep), which compactJSON then hands to encoding/json for the
// answer, with its wording and offset. Valid means what encoding/json.Valid
// means (FuzzFastCompact holds the two to the same answers and output): one
// pass copies body without the whitespace between tokens and bounds its
// depth, then fastjson validates body itself (whitespace separates tokens:
// "1 2" is not "12"), together several times faster than
// encoding/json.Compact's scanner.
func fastCompact(body []byte) ([]byte, bool) {
	out := make([]byte, 0, len(body))
	depth := 0
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case ' ', '\t', '\n', '\r':
		case '"':
			j := i + 1
			for j < len(body) && body[j] != '"' {
				switch {
				case body[j] < 0x20:
					// fastjson misses a control character in a
					// string that also holds an escape.
					return nil, false
				case body[j] == '\\':
					j++
				}
				j++
			}
			if j >= len(body) {
				return nil, false // unterminated: not JSON
			}
			out = append(out, body[i:j+1]...)
			i = j
		case '[', '{':
			if depth++; depth > maxFastDepth {
				return nil, false
			}
			out = append(out, c)
		case ']', '}':
			if depth--; depth < 0 {
				return nil, false
			}
			out = append(out, c)
		default:
			out = append(out, c)
		}
	}
	if fastjson.ValidateBytes(body) != nil {
		return nil, false
	}
	return out, true
}
