package dialect

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// The bounds the dialects share: what no sender means to send.

// eventTimes are the times an event may carry, in Unix milliseconds: from
// 2000-01-01 to a day after now (a sender's clock may run ahead, never by
// a day). s2s, commerce and track refuse any other time with
// eventTimeRange.
type eventTimes struct{ earliest, latest int64 }

// eventTimeRange is the violation of a time outside eventTimes.
const eventTimeRange = "must be between 2000-01-01 and a day from now"

func eventTimesAt(now time.Time) eventTimes {
	return eventTimes{earliest: 946684800000, latest: now.Add(24 * time.Hour).UnixMilli()} // 2000-01-01T00:00:00Z
}

// contain reports whether ms, Unix milliseconds, is within the bounds.
func (b eventTimes) contain(ms int64) bool { return ms >= b.earliest && ms <= b.latest }

// Numbers: whatever reads a number reads a 64-bit float, and a field
// typed integer a 64-bit integer (track's INTEGER rows, commerce's
// "integer" schema types). Track and commerce refuse a number that does
// not fit with these.
const (
	integerRange = "must be an integer within 64 bits, from -9223372036854775808 to 9223372036854775807"
	numberRange  = "must be a number within the range of a 64-bit float (at most about 1.8e308 either way)"
)

// numberProblem is the violation of v, a JSON number, that does not fit
// its field (integer: a field typed integer), or "". A whole number
// beyond 64 bits is the violation of an integer field only; a fraction
// there is its type's ("must be an integer"), not this.
func numberProblem(v []byte, integer bool) string {
	if len(v) <= 15 && bytes.IndexAny(v, "eE") < 0 {
		return "" // at most 15 characters and no exponent: it fits
	}
	if integer && wholeNumber(string(v)) && !isInteger(json.Number(v)) {
		return integerRange
	}
	if f, err := strconv.ParseFloat(string(v), 64); err != nil && math.IsInf(f, 0) {
		return numberRange
	}
	return ""
}

// wholeNumber reports whether s, a JSON number, has no fractional part
// (1, 1.0, 1e2, 1e400), whatever its size.
func wholeNumber(s string) bool {
	if !strings.ContainsAny(s, ".eE") {
		return true
	}
	f, _, err := big.ParseFloat(s, 10, 128, big.ToNearestEven)
	return err == nil && f.IsInt()
}
