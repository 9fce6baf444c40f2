package event

import (
	"fmt"
	"strings"
)

// Key globs select events by key: '*' matches any run of characters, dots
// included, and '?' matches one character. "in.s2s.revenue.*" matches
// "in.s2s.revenue.purchase"; "in.gen.*.call" matches "in.gen.calltrack.call".
// Every other character matches itself.

// ValidateGlob reports whether pattern is usable as a key glob.
func ValidateGlob(pattern string) error {
	if pattern == "" {
		return fmt.Errorf("key glob is empty")
	}
	if len(pattern) > 256 {
		return fmt.Errorf("key glob longer than 256 characters")
	}
	for _, c := range pattern {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("key glob %q has a control character", pattern)
		}
	}
	return nil
}

// MatchGlob reports whether key matches pattern.
func MatchGlob(pattern, key string) bool {
	// Iterative matcher with single-star backtracking: linear in practice.
	p, k := 0, 0
	starP, starK := -1, 0
	for k < len(key) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == key[k]):
			p++
			k++
		case p < len(pattern) && pattern[p] == '*':
			starP, starK = p, k
			p++
		case starP >= 0:
			starK++
			p, k = starP+1, starK
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// SQLiteGlob translates a key glob into SQLite's GLOB syntax, which would
// otherwise also treat '[' as a character class.
func SQLiteGlob(pattern string) string {
	return strings.ReplaceAll(pattern, "[", "[[]")
}
