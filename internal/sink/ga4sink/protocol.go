package ga4sink

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// The limits of the Measurement Protocol (GA4), enforced before anything
// is sent: Google's collect endpoint answers 2xx to whatever it drops, so
// an event that breaks one would vanish. docs/destinations.md lists them.
const (
	MaxEventsPerRequest  = 25
	MaxParamsPerEvent    = 25
	MaxUserProperties    = 25
	MaxNameLength        = 40 // event and parameter names
	MaxUserPropertyName  = 24
	MaxUserPropertyValue = 36
	MaxParamValue        = 100 // characters, item parameters included (a standard property)
	MaxItemsPerEvent     = 200
	MaxItemCustomParams  = 10
	MaxBodyBytes         = 130 * 1000
	MaxUserIDLength      = 256
	MaxTimestampAge      = 72 * time.Hour
)

// reservedEvents are names only Google's own collection may send.
var reservedEvents = map[string]bool{
	"ad_activeview": true, "ad_click": true, "ad_exposure": true, "ad_impression": true, "ad_query": true, "ad_reward": true,
	"adunit_exposure": true, "app_background": true, "app_clear_data": true, "app_exception": true, "app_remove": true,
	"app_store_refund": true, "app_store_subscription_cancel": true, "app_store_subscription_convert": true,
	"app_store_subscription_renew": true, "app_uninstall": true, "app_update": true, "app_upgrade": true,
	"dynamic_link_app_open": true, "dynamic_link_app_update": true, "dynamic_link_first_open": true, "error": true,
	"first_open": true, "first_visit": true, "in_app_purchase": true, "notification_dismiss": true,
	"notification_foreground": true, "notification_open": true, "notification_receive": true, "os_update": true,
	"session_start": true, "session_start_with_rollout": true, "user_engagement": true,
}

var reservedParams = map[string]bool{"firebase_conversion": true}

var reservedUserProperties = map[string]bool{
	"first_open_time": true, "first_visit_time": true, "last_deep_link_referrer": true, "user_id": true, "first_open_after_install": true,
}

var reservedPrefixes = []string{"google_", "ga_", "firebase_"}

// name is the problem of an event, parameter or user property name ("" if
// none): a letter first, then letters, digits and underscores, at most
// max characters.
func name(kind, n string, max int) string {
	switch {
	case n == "":
		return kind + " name is empty"
	case utf8.RuneCountInString(n) > max:
		return fmt.Sprintf("%s name %q is longer than %d characters", kind, n, max)
	case !isLetter(n[0]):
		return fmt.Sprintf("%s name %q does not start with a letter", kind, n)
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; !isLetter(c) && !(c >= '0' && c <= '9') && c != '_' {
			return fmt.Sprintf("%s name %q has %q: only letters, digits and underscores", kind, n, n[i:i+1])
		}
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(n, p) {
			return fmt.Sprintf("%s name %q starts with the reserved prefix %s", kind, n, p)
		}
	}
	return ""
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func eventName(n string) string {
	if p := name("event", n, MaxNameLength); p != "" {
		return p
	}
	if reservedEvents[n] {
		return fmt.Sprintf("event name %q is reserved", n)
	}
	return ""
}

func paramName(n string) string {
	if p := name("parameter", n, MaxNameLength); p != "" {
		return p
	}
	if reservedParams[n] {
		return fmt.Sprintf("parameter name %q is reserved", n)
	}
	return ""
}

func userPropertyName(n string) string {
	if p := name("user property", n, MaxUserPropertyName); p != "" {
		return p
	}
	if reservedUserProperties[n] {
		return fmt.Sprintf("user property name %q is reserved", n)
	}
	return ""
}

// sanitize makes a GA4 event name of any name: lower case, every run of
// other characters than a-z, 0-9 one underscore, a leading letter (e_
// before a digit), at most 40 characters; a reserved name or prefix gets
// sluice_ before it ("" when nothing is left).
func sanitize(s string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			if under && b.Len() > 0 {
				b.WriteByte('_')
			}
			under = false
			b.WriteRune(r)
		default:
			under = true
		}
	}
	out := b.String()
	if out == "" {
		return ""
	}
	if out[0] >= '0' && out[0] <= '9' {
		out = "e_" + out
	}
	reserved := reservedEvents[out]
	for _, p := range reservedPrefixes {
		reserved = reserved || strings.HasPrefix(out, p)
	}
	if reserved {
		out = "sluice_" + out
	}
	if len(out) > MaxNameLength {
		out = strings.TrimRight(out[:MaxNameLength], "_")
	}
	return out
}
