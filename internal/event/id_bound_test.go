package event

import "testing"

// Ids are 63 bits: a larger number is refused rather than wrapped into a
// position before the start of the log.
func TestParseIDRefusesWhatDoesNotFit(t *testing.T) {
	if id, err := ParseID("9223372036854775807"); err != nil || uint64(id) != 1<<63-1 {
		t.Fatalf("the largest id: %v %v", id, err)
	}
	for _, s := range []string{"9223372036854775808", "9999999999999999999", "18446744073709551615", "-1", "1e3", ""} {
		if _, err := ParseID(s); err == nil || err.Error() != `id "`+s+`" is not a decimal integer from 0 to 9223372036854775807` {
			t.Errorf("%q: %v", s, err)
		}
	}
}
