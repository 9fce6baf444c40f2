package event

import "testing"

func TestMatchGlob(t *testing.T) {
	cases := []struct {
		pattern, key string
		want         bool
	}{
		{"in.s2s.revenue.*", "in.s2s.revenue.purchase", true},
		{"in.s2s.revenue.*", "in.s2s.action.purchase", false},
		{"in.gen.calltrack.call", "in.gen.calltrack.call", true},
		{"in.gen.calltrack.call", "in.gen.calltrack.calls", false},
		{"in.gen.*.call", "in.gen.calltrack.call", true},
		{"in.gen.*.call", "in.gen.a.b.call", true},
		{"*", "anything.at.all", true},
		{"in.*", "in.", true},
		{"in.?en.x", "in.gen.x", true},
		{"in.?en.x", "in.en.x", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"in.[x]", "in.[x]", true},
		{"in.[x]", "in.x", false},
		{"", "", true},
		{"", "a", false},
	}
	for _, c := range cases {
		if got := MatchGlob(c.pattern, c.key); got != c.want {
			t.Errorf("MatchGlob(%q, %q) = %v, want %v", c.pattern, c.key, got, c.want)
		}
	}
}

func TestValidateGlob(t *testing.T) {
	for _, bad := range []string{"", "a\nb"} {
		if ValidateGlob(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := ValidateGlob("in.gen.*"); err != nil {
		t.Fatal(err)
	}
}
