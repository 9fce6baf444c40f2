// Package project holds projects, their settings and their API tokens, and
// answers the hot-path questions of ingest (does project N exist, which
// project does this token belong to) from memory.
package project

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/dialect/trackfields"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/identity"
	"github.com/sluicehq/sluice/internal/strict"
)

// DefaultID is the project every installation has.
const DefaultID = 0

// Project is a tenant: events, tokens and settings belong to one.
type Project struct {
	ID        uint32    `json:"id"`
	Name      string    `json:"name"`
	Settings  Settings  `json:"settings"`
	CreatedAt time.Time `json:"createdAt"`
}

// Webhook authentication modes.
const (
	WebhookAuthNone  = "none"  // anyone who knows the URL may post (the seed's behaviour)
	WebhookAuthToken = "token" // a project token as ?token= or HTTP Basic user name
)

// Settings are a project's per-tenant options. Unknown keys are refused.
type Settings struct {
	// WebhookAuth is none (default) or token.
	WebhookAuth string `json:"webhook_auth,omitempty" yaml:"webhook_auth"`
	// WebhookDedupField names a field of a webhook event's data (a path,
	// e.g. order_id or order.id) whose value is its dedup key: a second
	// event of the same key (service and name) with the same value is
	// answered as a duplicate of the first and not stored. Events without
	// the field are stored as they come.
	WebhookDedupField string `json:"webhook_dedup_field,omitempty" yaml:"webhook_dedup_field"`
	// IdentityFields maps fields of an event's data (paths, e.g.
	// caller.phone) to identity types, for senders whose events carry
	// people in fields of their own (a CRM's lead, a call tracker's
	// caller): "phone" and "email" take raw values and store their
	// SHA-256 (phone_hash, email_hash; with hash_pii the raw value in the
	// data is replaced by the hash); any identity type (user_id,
	// cuid:crm_id, …) takes the value as it is.
	IdentityFields map[string]string `json:"identity_fields,omitempty" yaml:"identity_fields"`
	// RedirectHosts lists the hosts /redir may send a browser to: exact
	// host names, or "*.example.com" for any subdomain of example.com.
	RedirectHosts []string `json:"redirect_hosts,omitempty" yaml:"redirect_hosts"`
	// Track configures the track dialect.
	Track TrackSettings `json:"track,omitzero" yaml:"track"`
	// AppID is the project's public application id, which s2s senders
	// send as X-Application-Id. Generated when the project is created
	// without one; unique across projects.
	AppID string `json:"app_id,omitempty" yaml:"app_id"`
	// S2S switches the s2s dialect; it is on unless set to false.
	S2S *bool `json:"s2s,omitempty" yaml:"s2s"`
	// DefaultRegion (ISO 3166-1 alpha-2, e.g. IR) reads phone numbers
	// written without a country code.
	DefaultRegion string `json:"default_region,omitempty" yaml:"default_region"`
	// HashPII replaces raw phone numbers and e-mail addresses by their
	// SHA-256 before anything is written.
	HashPII bool `json:"hash_pii,omitempty" yaml:"hash_pii"`
}

// IdentityField is one entry of IdentityFields.
type IdentityField struct{ Path, Type string }

// IdentityFieldList returns IdentityFields sorted by path.
func (s *Settings) IdentityFieldList() []IdentityField {
	out := make([]IdentityField, 0, len(s.IdentityFields))
	for p, t := range s.IdentityFields {
		out = append(out, IdentityField{Path: p, Type: t})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func identityTypes() string {
	var types []string
	for _, k := range identity.Kinds() {
		types = append(types, k.Type)
	}
	return strings.Join(types, ", ")
}

// S2SEnabled reports whether the s2s dialect serves the project.
func (s *Settings) S2SEnabled() bool { return s.S2S == nil || *s.S2S }

// TrackSettings are the custom dimensions (strings) and custom metrics
// (numbers) a project declares for the track dialect. Declared fields are
// type-checked where they are placed; undeclared fields pass untouched.
type TrackSettings struct {
	CustomDimensions []CustomField `json:"custom_dimensions,omitempty" yaml:"custom_dimensions"`
	CustomMetrics    []CustomField `json:"custom_metrics,omitempty" yaml:"custom_metrics"`
}

// CustomField names a custom dimension or metric and where it sits in a
// hit: a path in the notation of the seed's field table, e.g.
// "event.user.loyaltyLevel", "event.transaction.lineItems.product.margin"
// (through the array of line items) or `integrations["My CRM"].segment`.
// The path defaults to "event.<name>".
type CustomField struct {
	Name string `json:"name" yaml:"name"`
	Path string `json:"path,omitempty" yaml:"path"`
}

// Where returns the field's path.
func (c CustomField) Where() string {
	if c.Path != "" {
		return c.Path
	}
	return "event." + c.Name
}

// Validate checks the settings and normalises host names to lower case.
func (s *Settings) Validate() error {
	var errs event.FieldErrors
	switch s.WebhookAuth {
	case "", WebhookAuthNone, WebhookAuthToken:
	default:
		errs.Add("webhook_auth", fmt.Sprintf("%q is not one of none, token", s.WebhookAuth))
	}
	for _, f := range s.IdentityFieldList() {
		if _, err := ParseFieldPath(f.Path); err != nil {
			errs.Add(strict.Key("identity_fields", f.Path), err.Error())
		}
		if !identity.ValidFieldKind(f.Type) {
			errs.Add(strict.Key("identity_fields", f.Path), fmt.Sprintf("%q is not phone, email or an identity type (%s)", f.Type, identityTypes()))
		}
	}
	if s.WebhookDedupField != "" {
		if _, err := ParseFieldPath(s.WebhookDedupField); err != nil {
			errs.Add("webhook_dedup_field", err.Error())
		}
	}
	for i, h := range s.RedirectHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		s.RedirectHosts[i] = h
		if err := validHostPattern(h); err != nil {
			errs.Add(fmt.Sprintf("redirect_hosts[%d]", i), err.Error())
		}
	}
	if s.AppID != "" && !appIDRE.MatchString(s.AppID) {
		errs.Add("app_id", fmt.Sprintf("%q must be 4 to 64 letters, digits, '_' or '-'", s.AppID))
	}
	if s.DefaultRegion != "" {
		s.DefaultRegion = strings.ToUpper(s.DefaultRegion)
		if !identity.ValidRegion(s.DefaultRegion) {
			errs.Add("default_region", fmt.Sprintf("%q is not a region code such as IR or RU", s.DefaultRegion))
		}
	}
	seen := map[string]string{}
	for _, custom := range []struct {
		kind, what string
		typ        trackfields.Type
		list       []CustomField
	}{
		{"custom_dimensions", "custom dimension", trackfields.String, s.Track.CustomDimensions},
		{"custom_metrics", "custom metric", trackfields.Number, s.Track.CustomMetrics},
	} {
		kind := custom.kind
		for i, c := range custom.list {
			if strings.TrimSpace(c.Name) == "" {
				errs.Add(fmt.Sprintf("track.%s[%d].name", kind, i), "required")
				continue
			}
			segs, err := ParseFieldPath(c.Where())
			if err != nil {
				errs.Add(fmt.Sprintf("track.%s[%d]", kind, i), fmt.Sprintf("(%s) %v", c.Name, err))
				continue
			}
			if msg := trackConflict(segs, c, custom.what, custom.typ); msg != "" {
				at := "path"
				if c.Path == "" {
					at = "name" // the path is event.<name>
				}
				errs.Add(fmt.Sprintf("track.%s[%d].%s", kind, i, at), msg)
				continue
			}
			if other, dup := seen[c.Where()]; dup {
				errs.Add(fmt.Sprintf("track.%s[%d]", kind, i), fmt.Sprintf("(%s) path %s is already declared by %s", c.Name, c.Where(), other))
			}
			seen[c.Where()] = kind + " " + c.Name
		}
	}
	return errs.Err()
}

// trackConflict is the violation of a custom dimension or metric (what,
// of type typ) declared where the track dialect's own table
// (trackfields.Table) reads or types a field otherwise, or "".
func trackConflict(segs []string, c CustomField, what string, typ trackfields.Type) string {
	why := trackfields.Conflict(segs, typ)
	if why == "" {
		return ""
	}
	where := trackfields.Path(segs)
	if c.Path == "" {
		where += " (the default path, event.<name>)"
	}
	return fmt.Sprintf("%s %s: the track dialect reads and types it itself, so %s %q (%s) cannot be declared there", where, why, what, c.Name, typ)
}

// ParseFieldPath splits a field path: names separated by dots, a name with
// other characters written as ["…"] (JSON string syntax), e.g.
// integrations["Google Analytics"].clientId.
func ParseFieldPath(p string) ([]string, error) {
	var segs []string
	for i := 0; i < len(p); {
		switch {
		case p[i] == '[':
			end := strings.Index(p[i:], "\"]")
			if end < 0 || i+1 >= len(p) || p[i+1] != '"' {
				return nil, fmt.Errorf("path %q: [ must open a quoted name like [\"Google Analytics\"]", p)
			}
			var name string
			if err := json.Unmarshal([]byte(p[i+1:i+end+1]), &name); err != nil || name == "" {
				return nil, fmt.Errorf("path %q: bad quoted name", p)
			}
			segs = append(segs, name)
			i += end + 2
			if i < len(p) && p[i] == '.' {
				i++
				if i == len(p) {
					return nil, fmt.Errorf("path %q ends with a dot", p)
				}
			}
		default:
			j := i
			for j < len(p) && p[j] != '.' && p[j] != '[' {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("path %q has an empty name", p)
			}
			segs = append(segs, p[i:j])
			i = j
			if i < len(p) && p[i] == '.' {
				i++
				if i == len(p) {
					return nil, fmt.Errorf("path %q ends with a dot", p)
				}
			}
		}
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("path is empty")
	}
	return segs, nil
}

// AuthMode returns the effective webhook authentication mode.
func (s *Settings) AuthMode() string {
	if s.WebhookAuth == "" {
		return WebhookAuthNone
	}
	return s.WebhookAuth
}

func validHostPattern(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if name == "" || strings.ContainsAny(name, "/:@?#*\\ ") {
		return fmt.Errorf("%q is not a host name (write example.com or *.example.com, no scheme, port or path)", h)
	}
	if net.ParseIP(name) == nil {
		for _, label := range strings.Split(name, ".") {
			if label == "" || len(label) > 63 {
				return fmt.Errorf("%q is not a host name", h)
			}
		}
	}
	return nil
}

// RedirectAllowed reports whether a redirect to host (no port) is allowed.
func (s *Settings) RedirectAllowed(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return false
	}
	for _, pat := range s.RedirectHosts {
		if suffix, ok := strings.CutPrefix(pat, "*."); ok {
			if strings.HasSuffix(host, "."+suffix) {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// DecodeSettings parses settings JSON strictly: an unknown key is an error
// that names it.
func DecodeSettings(b []byte) (Settings, error) {
	var s Settings
	if len(bytes.TrimSpace(b)) == 0 {
		return s, nil
	}
	if err := strict.DecodeJSON(b, &s); err != nil {
		return s, fmt.Errorf("settings: %w", err)
	}
	return s, s.Validate()
}

// ValidateName checks a project name.
func ValidateName(name string) error {
	if strings.TrimSpace(name) == "" {
		return event.FieldErrors{{Path: "name", Message: "required"}}
	}
	if len(name) > 200 {
		return event.FieldErrors{{Path: "name", Message: "longer than 200 bytes"}}
	}
	return nil
}

// Token is a project's API token as listed: the secret itself is shown once,
// at creation, and stored only as its SHA-256.
type Token struct {
	ID        string     `json:"id"`
	ProjectID uint32     `json:"projectId"`
	Name      string     `json:"name"`
	Hint      string     `json:"hint"` // the secret's first characters, to recognise it
	CreatedAt time.Time  `json:"createdAt"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

var appIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{4,64}$`)

// EventType is an s2s action or revenue event a project has declared. An
// s2s message names it by slug.
type EventType struct {
	ProjectID   uint32    `json:"projectId"`
	Slug        string    `json:"slug"`
	Kind        string    `json:"kind"` // action or revenue
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
}

// Event type kinds.
const (
	KindAction  = "action"
	KindRevenue = "revenue"
)

var slugRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate checks an event type's fields.
func (t *EventType) Validate() error {
	var errs event.FieldErrors
	if !slugRE.MatchString(t.Slug) {
		errs.Add("slug", fmt.Sprintf("%q must be 1 to 64 letters, digits, '_' or '-'", t.Slug))
	}
	if t.Kind != KindAction && t.Kind != KindRevenue {
		errs.Add("kind", fmt.Sprintf("%q is not action or revenue", t.Kind))
	}
	if len(t.Name) > 200 {
		errs.Add("name", "longer than 200 bytes")
	}
	if len(t.Description) > 2000 {
		errs.Add("description", "longer than 2000 bytes")
	}
	return errs.Err()
}

// Errors the store returns.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInvalid  = errors.New("invalid")
)

// InvalidError is a refused value, each problem at its path in the
// request ("name", "settings.redirect_hosts[0]"). It is ErrInvalid.
type InvalidError struct{ Fields event.FieldErrors }

func (e *InvalidError) Error() string                  { return "invalid: " + e.Fields.Error() }
func (e *InvalidError) Is(target error) bool           { return target == ErrInvalid }
func (e *InvalidError) FieldErrors() event.FieldErrors { return e.Fields }

// invalid is err (field errors, or one message) as an InvalidError with
// its paths under path.
func invalid(path string, err error) error {
	var fe event.FieldErrors
	if !errors.As(err, &fe) {
		fe = event.FieldErrors{{Message: err.Error()}}
	}
	out := make(event.FieldErrors, len(fe))
	for i, f := range fe {
		f.Path = event.JoinPath(path, f.Path)
		out[i] = f
	}
	return &InvalidError{Fields: out}
}
