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
	"strings"
	"time"
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
	// RedirectHosts lists the hosts /redir may send a browser to: exact
	// host names, or "*.example.com" for any subdomain of example.com.
	RedirectHosts []string `json:"redirect_hosts,omitempty" yaml:"redirect_hosts"`
}

// Validate checks the settings and normalises host names to lower case.
func (s *Settings) Validate() error {
	var errs []error
	switch s.WebhookAuth {
	case "", WebhookAuthNone, WebhookAuthToken:
	default:
		errs = append(errs, fmt.Errorf("webhook_auth: %q is not one of none, token", s.WebhookAuth))
	}
	for i, h := range s.RedirectHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		s.RedirectHosts[i] = h
		if err := validHostPattern(h); err != nil {
			errs = append(errs, fmt.Errorf("redirect_hosts[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
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
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("settings: %w", err)
	}
	return s, s.Validate()
}

// ValidateName checks a project name.
func ValidateName(name string) error {
	if strings.TrimSpace(name) == "" {
		return errors.New("name is required")
	}
	if len(name) > 200 {
		return errors.New("name is longer than 200 characters")
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

// Errors the store returns.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInvalid  = errors.New("invalid")
)
