package event

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// TextError locates a JSON string (a key or a value) that is not Unicode
// text: invalid UTF-8, or an escaped UTF-16 surrogate without its pair.
// Strict JSON parsers refuse both, so an event carrying one could not be
// read back by the systems it is forwarded to.
type TextError struct {
	// Path is where the string is, rendered like the dialects' field
	// paths: messages[3].attributes.city, event["na me"]. For a key, it is
	// the path of the member the key names (its bad bytes shown as U+FFFD).
	Path string
	// Key is true when the key, not the value, is at fault.
	Key bool
	// Offset is the byte offset of the fault in the document, -1 when
	// there is no document (a percent-decoded form value).
	Offset int
	// Problem says what is wrong, e.g. "invalid byte 0xff".
	Problem string
}

// Message is the error message for a FieldError at Path.
func (e *TextError) Message() string {
	what := "is not valid UTF-8 text"
	if e.Key {
		what = "has a key that is not valid UTF-8 text"
	}
	if e.Offset < 0 {
		return fmt.Sprintf("%s: %s after percent-decoding; send UTF-8", what, e.Problem)
	}
	return fmt.Sprintf("%s: %s at offset %d; send UTF-8", what, e.Problem, e.Offset)
}

func (e *TextError) Error() string {
	if e.Path == "" {
		return e.Message()
	}
	return e.Path + ": " + e.Message()
}

// CheckJSONText returns the first string of b, a syntactically valid JSON
// document, that is not Unicode text, or nil when there is none. Valid
// UTF-8 without escaped surrogates, the common case, costs one pass of
// utf8.Valid and a search for `\u`.
func CheckJSONText(b []byte) *TextError {
	if utf8.Valid(b) && !hasSurrogateEscape(b) {
		return nil
	}
	w := textWalker{b: b}
	w.value(nil)
	return w.err
}

// hasSurrogateEscape reports whether b may hold a \uD800–\uDFFF escape
// (it may be wrong the other way round: `\\ud800` is no escape).
func hasSurrogateEscape(b []byte) bool {
	for {
		i := bytes.Index(b, []byte(`\u`))
		if i < 0 || i+3 > len(b) {
			return false
		}
		if c := b[i+2]; c == 'd' || c == 'D' {
			if i+3 < len(b) {
				switch b[i+3] {
				case '8', '9', 'a', 'b', 'c', 'd', 'e', 'f', 'A', 'B', 'C', 'D', 'E', 'F':
					return true
				}
			}
		}
		b = b[i+2:]
	}
}

// textPath is a location being walked, rendered only on error.
type textPath struct {
	parent *textPath
	seg    string
}

func (p *textPath) String() string {
	var segs []string
	for q := p; q != nil; q = q.parent {
		segs = append(segs, q.seg)
	}
	var out []byte
	for i := len(segs) - 1; i >= 0; i-- {
		out = append(out, segs[i]...)
	}
	if len(out) > 0 && out[0] == '.' {
		out = out[1:]
	}
	return string(out)
}

// textWalker walks a valid JSON document and stops at the first bad string.
type textWalker struct {
	b   []byte
	i   int
	err *TextError
}

func (w *textWalker) space() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\r', '\n':
			w.i++
		default:
			return
		}
	}
}

func (w *textWalker) value(p *textPath) {
	w.space()
	if w.i >= len(w.b) {
		return
	}
	switch w.b[w.i] {
	case '{':
		w.i++
		for w.err == nil {
			w.space()
			if w.i >= len(w.b) || w.b[w.i] == '}' {
				w.i++
				return
			}
			if w.b[w.i] == ',' {
				w.i++
				continue
			}
			key, off, problem := w.str()
			mp := &textPath{parent: p, seg: PathSegment(key)}
			if problem != "" {
				w.err = &TextError{Path: mp.String(), Key: true, Offset: off, Problem: problem}
				return
			}
			w.space()
			w.i++ // ':'
			w.value(mp)
		}
	case '[':
		w.i++
		for n := 0; w.err == nil; {
			w.space()
			if w.i >= len(w.b) || w.b[w.i] == ']' {
				w.i++
				return
			}
			if w.b[w.i] == ',' {
				w.i++
				continue
			}
			w.value(&textPath{parent: p, seg: "[" + strconv.Itoa(n) + "]"})
			n++
		}
	case '"':
		if _, off, problem := w.str(); problem != "" {
			w.err = &TextError{Path: p.String(), Offset: off, Problem: problem}
		}
	default: // a number or a literal
		for w.i < len(w.b) {
			switch w.b[w.i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return
			}
			w.i++
		}
	}
}

// str reads the string literal at w.i. It returns its text (bad bytes as
// U+FFFD) and, for the first fault, its offset and what is wrong.
func (w *textWalker) str() (s string, off int, problem string) {
	b := w.b
	w.i++ // the opening quote
	var out []byte
	for w.i < len(b) {
		c := b[w.i]
		switch {
		case c == '"':
			w.i++
			return string(out), off, problem
		case c == '\\':
			if w.i+1 < len(b) && b[w.i+1] == 'u' && w.i+6 <= len(b) {
				r := hex4(b[w.i+2 : w.i+6])
				switch {
				case r >= 0xD800 && r <= 0xDBFF:
					if w.i+12 <= len(b) && b[w.i+6] == '\\' && b[w.i+7] == 'u' {
						if lo := hex4(b[w.i+8 : w.i+12]); lo >= 0xDC00 && lo <= 0xDFFF {
							out = utf8.AppendRune(out, 0x10000+(r-0xD800)<<10+(lo-0xDC00))
							w.i += 12
							continue
						}
					}
					fallthrough
				case r >= 0xDC00 && r <= 0xDFFF:
					if problem == "" {
						off, problem = w.i, fmt.Sprintf("unpaired UTF-16 surrogate %s", b[w.i:w.i+6])
					}
					out = utf8.AppendRune(out, utf8.RuneError)
				default:
					out = utf8.AppendRune(out, r)
				}
				w.i += 6
				continue
			}
			if w.i+1 < len(b) {
				out = append(out, unescape(b[w.i+1]))
			}
			w.i += 2
		case c < utf8.RuneSelf:
			out = append(out, c)
			w.i++
		default:
			r, size := utf8.DecodeRune(b[w.i:])
			if r == utf8.RuneError && size == 1 {
				if problem == "" {
					off, problem = w.i, fmt.Sprintf("invalid byte 0x%02x", c)
				}
				out = utf8.AppendRune(out, utf8.RuneError)
				w.i++
				continue
			}
			out = append(out, b[w.i:w.i+size]...)
			w.i += size
		}
	}
	return string(out), off, problem
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 't':
		return '\t'
	case 'r':
		return '\r'
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	}
	return c
}

func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return -1
		}
	}
	return r
}

// CheckText returns what is wrong with s as Unicode text ("" when it is
// valid UTF-8), for values that do not come as JSON: query strings, form
// fields, header-borne ids.
func CheckText(s string) (offset int, problem string) {
	if utf8.ValidString(s) {
		return 0, ""
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return i, fmt.Sprintf("invalid byte 0x%02x", s[i])
		}
		i += size
	}
	return 0, ""
}

// JoinPath is the path of rel, a path relative to prefix, under prefix:
// "a" and "b" make "a.b", "a" and `["x"]` make `a["x"]`; either may be "".
func JoinPath(prefix, rel string) string {
	switch {
	case prefix == "":
		return rel
	case rel == "":
		return prefix
	case rel[0] == '[':
		return prefix + rel
	}
	return prefix + "." + rel
}

// PathSegment renders one object key as a path segment: ".name" for an
// identifier, `["na me"]` for anything else.
func PathSegment(name string) string {
	if isIdent(name) {
		return "." + name
	}
	return "[" + string(AppendString(nil, name)) + "]"
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || c == '$' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'):
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// SanitizeJSONText returns b, a valid JSON document, with every string
// made Unicode text: invalid UTF-8 bytes and unpaired surrogate escapes
// become \ufffd. It returns b itself when there is nothing to mend (events
// stored before sluice refused such input are mended as they are read).
func SanitizeJSONText(b []byte) []byte {
	if CheckJSONText(b) == nil {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	inStr := false
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case !inStr:
			if c == '"' {
				inStr = true
			}
			out = append(out, c)
			i++
		case c == '"':
			inStr = false
			out = append(out, c)
			i++
		case c == '\\' && i+1 < len(b) && b[i+1] == 'u' && i+6 <= len(b):
			r := hex4(b[i+2 : i+6])
			if r >= 0xD800 && r <= 0xDBFF && i+12 <= len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
				if lo := hex4(b[i+8 : i+12]); lo >= 0xDC00 && lo <= 0xDFFF {
					out = append(out, b[i:i+12]...)
					i += 12
					continue
				}
			}
			if r >= 0xD800 && r <= 0xDFFF {
				out = append(out, `\ufffd`...)
			} else {
				out = append(out, b[i:i+6]...)
			}
			i += 6
		case c == '\\' && i+1 < len(b):
			out = append(out, b[i:i+2]...)
			i += 2
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				out = append(out, `\ufffd`...)
			} else {
				out = append(out, b[i:i+size]...)
			}
			i += size
		}
	}
	return out
}
