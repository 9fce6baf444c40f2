package ga4sink

import "testing"

// Other events go under their sanitised names, always valid ones.
func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"Viewed Product": "viewed_product", "call": "call", "Enter  Promo-Code!": "enter_promo_code", "123 go": "e_123_go",
		"session start": "sluice_session_start", "ga_hit": "sluice_ga_hit", "Ünïcode näme": "n_code_n_me", "!!!": "",
		"a_very_long_event_name_that_goes_past_forty_characters": "a_very_long_event_name_that_goes_past_fo",
	} {
		got := sanitize(in)
		if got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
		if got != "" && eventName(got) != "" {
			t.Errorf("sanitize(%q) = %q: %s", in, got, eventName(got))
		}
	}
}
