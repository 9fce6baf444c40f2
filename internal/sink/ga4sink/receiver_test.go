package ga4sink_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// receiver is a GA4 collector on loopback: it checks every request
// against the Measurement Protocol's documented rules (written here from
// Google's reference and limits pages, apart from the sink's own checks),
// records what it took, answers /mp/collect with 204 as Google does
// (whatever it would drop) and /debug/mp/collect with the validation
// messages.
type receiver struct {
	*httptest.Server
	measurementID, secret string
	now                   func() time.Time

	mu         sync.Mutex
	collected  []gaRequest
	validated  []gaRequest
	violations []string
	fail       atomic.Bool            // answer 503 to every collect request
	failWhen   func(r gaRequest) bool // answer 503 to the requests it picks
}

// gaRequest is one request as the collector read it.
type gaRequest struct {
	ClientID        string                    `json:"client_id"`
	UserID          string                    `json:"user_id"`
	TimestampMicros json.Number               `json:"timestamp_micros"`
	UserProperties  map[string]map[string]any `json:"user_properties"`
	Events          []gaEvent                 `json:"events"`
	raw             []byte
}

type gaEvent struct {
	Name   string         `json:"name"`
	Params map[string]any `json:"params"`
}

func newReceiver(t *testing.T, measurementID, secret string) *receiver {
	rc := &receiver{measurementID: measurementID, secret: secret, now: time.Now}
	rc.Server = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	debug := r.URL.Path == "/debug/mp/collect"
	var msgs []validationMessage
	add := func(path, code, format string, a ...any) {
		msgs = append(msgs, validationMessage{FieldPath: path, Description: fmt.Sprintf(format, a...), ValidationCode: code})
	}
	switch {
	case r.Method != http.MethodPost:
		add("", "VALUE_INVALID", "method %s: the protocol is POST", r.Method)
	case r.URL.Path != "/mp/collect" && !debug:
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	if q.Get("measurement_id") != rc.measurementID {
		add("measurement_id", "VALUE_INVALID", "measurement_id %q", q.Get("measurement_id"))
	}
	if q.Get("api_secret") != rc.secret {
		add("api_secret", "VALUE_INVALID", "api_secret does not match")
	}
	req, problems := checkRequest(body, rc.now())
	msgs = append(msgs, problems...)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if debug {
		rc.validated = append(rc.validated, req)
		w.Header().Set("Content-Type", "application/json")
		if msgs == nil {
			msgs = []validationMessage{}
		}
		json.NewEncoder(w).Encode(map[string]any{"validationMessages": msgs})
		return
	}
	if rc.fail.Load() || rc.failWhen != nil && rc.failWhen(req) {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	for _, m := range msgs {
		rc.violations = append(rc.violations, fmt.Sprintf("%s: %s (%s) in %s", m.FieldPath, m.Description, m.ValidationCode, body))
	}
	rc.collected = append(rc.collected, req)
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) requests() []gaRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]gaRequest(nil), rc.collected...)
}

// noViolations fails t when a request broke a rule of the protocol.
func (rc *receiver) noViolations(t testing.TB) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.violations) > 0 {
		t.Fatalf("%d requests broke the protocol's rules:\n%s", len(rc.violations), strings.Join(rc.violations, "\n"))
	}
}

type validationMessage struct {
	FieldPath      string `json:"fieldPath"`
	Description    string `json:"description"`
	ValidationCode string `json:"validationCode"`
}

// The documented rules.
var (
	gaName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	// Reserved event names, parameter names and user property names
	// (Measurement Protocol reference, "Reserved names").
	reservedEventNames = strings.Fields(`ad_activeview ad_click ad_exposure ad_impression ad_query ad_reward adunit_exposure app_background
		app_clear_data app_exception app_remove app_store_refund app_store_subscription_cancel app_store_subscription_convert
		app_store_subscription_renew app_uninstall app_update app_upgrade dynamic_link_app_open dynamic_link_app_update
		dynamic_link_first_open error first_open first_visit in_app_purchase notification_dismiss notification_foreground
		notification_open notification_receive os_update session_start session_start_with_rollout user_engagement`)
	reservedUserPropertyNames = strings.Fields(`first_open_time first_visit_time last_deep_link_referrer user_id first_open_after_install`)
	reservedPrefixList        = []string{"google_", "ga_", "firebase_"}
	requestKeys               = strings.Fields(`client_id user_id timestamp_micros user_properties non_personalized_ads consent user_data events
		app_instance_id user_location device ip_override validation_behavior`)
	// Recommended ecommerce events: value needs currency.
	ecommerceEvents = strings.Fields(`add_payment_info add_shipping_info add_to_cart add_to_wishlist begin_checkout purchase refund
		remove_from_cart view_cart view_item view_item_list select_item`)
	itemStandard = strings.Fields(`item_id item_name affiliation coupon discount index item_brand item_category item_category2
		item_category3 item_category4 item_category5 item_list_id item_list_name item_variant location_id price quantity`)
)

func in(s string, list []string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func reservedPrefix(s string) bool {
	for _, p := range reservedPrefixList {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// checkRequest reads a body and lists what breaks the protocol's rules.
func checkRequest(body []byte, now time.Time) (gaRequest, []validationMessage) {
	var msgs []validationMessage
	add := func(path, code, format string, a ...any) {
		msgs = append(msgs, validationMessage{FieldPath: path, Description: fmt.Sprintf(format, a...), ValidationCode: code})
	}
	var req gaRequest
	req.raw = body
	if len(body) > 130000 {
		add("", "VALUE_INVALID", "the post body is %d bytes; it must be smaller than 130kB", len(body))
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		add("", "VALUE_INVALID", "not a JSON object: %v", err)
		return req, msgs
	}
	for k := range top {
		if !in(k, requestKeys) {
			add(k, "NAME_INVALID", "unknown field %s", k)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		add("", "VALUE_INVALID", "%v", err)
		return req, msgs
	}
	if req.ClientID == "" {
		add("client_id", "VALUE_REQUIRED", "client_id is required for a web stream")
	}
	if req.TimestampMicros != "" {
		us, err := req.TimestampMicros.Int64()
		switch {
		case err != nil:
			add("timestamp_micros", "VALUE_INVALID", "not an integer")
		case now.Sub(time.UnixMicro(us)) > 72*time.Hour:
			add("timestamp_micros", "VALUE_INVALID", "more than 72 hours in the past")
		case time.UnixMicro(us).After(now.Add(time.Minute)):
			add("timestamp_micros", "VALUE_INVALID", "in the future")
		}
	}
	if len(req.UserProperties) > 25 {
		add("user_properties", "VALUE_INVALID", "%d user properties; at most 25", len(req.UserProperties))
	}
	for n, v := range req.UserProperties {
		path := "user_properties." + n
		switch {
		case utf8.RuneCountInString(n) > 24 || !gaName.MatchString(n):
			add(path, "NAME_INVALID", "user property names are 24 characters or fewer, letters, digits and underscores, a letter first")
		case in(n, reservedUserPropertyNames) || reservedPrefix(n):
			add(path, "NAME_RESERVED", "reserved user property name")
		}
		if s, ok := v["value"].(string); ok && utf8.RuneCountInString(s) > 36 {
			add(path+".value", "VALUE_INVALID", "user property values are 36 characters or fewer")
		}
		if _, ok := v["value"]; !ok {
			add(path+".value", "VALUE_REQUIRED", "a user property is {\"value\": …}")
		}
	}
	switch n := len(req.Events); {
	case n == 0:
		add("events", "VALUE_REQUIRED", "at least one event")
	case n > 25:
		add("events", "VALUE_INVALID", "%d events; a request has at most 25", n)
	}
	for i, ev := range req.Events {
		path := fmt.Sprintf("events[%d]", i)
		switch {
		case utf8.RuneCountInString(ev.Name) > 40 || !gaName.MatchString(ev.Name):
			add(path+".name", "NAME_INVALID", "event names are 40 characters or fewer, letters, digits and underscores, a letter first")
		case in(ev.Name, reservedEventNames) || reservedPrefix(ev.Name):
			add(path+".name", "NAME_RESERVED", "reserved event name")
		}
		if len(ev.Params) > 25 {
			add(path+".params", "VALUE_INVALID", "%d parameters; an event has at most 25", len(ev.Params))
		}
		for n, v := range ev.Params {
			checkParam(path+".params."+n, n, v, add)
			if n != "items" {
				continue
			}
			items, ok := v.([]any)
			if !ok {
				add(path+".params.items", "VALUE_INVALID", "items is an array")
				continue
			}
			if len(items) > 200 {
				add(path+".params.items", "VALUE_INVALID", "%d items; at most 200", len(items))
			}
			for j, it := range items {
				ip := fmt.Sprintf("%s.params.items[%d]", path, j)
				m, ok := it.(map[string]any)
				if !ok {
					add(ip, "VALUE_INVALID", "an item is an object")
					continue
				}
				if m["item_id"] == nil && m["item_name"] == nil {
					add(ip, "VALUE_REQUIRED", "an item needs item_id or item_name")
				}
				custom := 0
				for k, x := range m {
					if !in(k, itemStandard) {
						custom++
					}
					checkParam(ip+"."+k, k, x, add)
				}
				if custom > 10 {
					add(ip, "VALUE_INVALID", "%d custom item parameters; at most 10", custom)
				}
			}
		}
		if in(ev.Name, ecommerceEvents) && ev.Params["value"] != nil && ev.Params["currency"] == nil {
			add(path+".params.currency", "VALUE_REQUIRED", "currency is required when value is set")
		}
		if ev.Name == "purchase" && ev.Params["transaction_id"] == nil {
			add(path+".params.transaction_id", "VALUE_REQUIRED", "a purchase needs transaction_id")
		}
	}
	return req, msgs
}

func checkParam(path, n string, v any, add func(path, code, format string, a ...any)) {
	switch {
	case utf8.RuneCountInString(n) > 40 || !gaName.MatchString(n):
		add(path, "NAME_INVALID", "parameter names are 40 characters or fewer, letters, digits and underscores, a letter first")
	case reservedPrefix(n) || n == "firebase_conversion":
		add(path, "NAME_RESERVED", "reserved parameter name")
	}
	switch x := v.(type) {
	case string:
		if utf8.RuneCountInString(x) > 100 {
			add(path, "VALUE_INVALID", "parameter values are 100 characters or fewer")
		}
	case json.Number, bool, []any:
	default:
		add(path, "VALUE_INVALID", "a parameter value is a string or a number, not %T", v)
	}
}
