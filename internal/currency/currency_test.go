package currency

import "testing"

func TestValid(t *testing.T) {
	for _, ok := range []string{"IRR", "USD", "EUR", "RUB", "VES", "SLE", "ZWG", "XCG", "XAU"} {
		if !Valid(ok) {
			t.Errorf("%s refused", ok)
		}
	}
	for _, bad := range []string{"usd", "ABC", "DEM", "HRK", "BYR", "", "US", "USDD", "IRT"} {
		if Valid(bad) {
			t.Errorf("%s accepted", bad)
		}
	}
	if len(iso4217) < 175 {
		t.Fatalf("%d codes", len(iso4217))
	}
}
