package project

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
)

// Spec declares a project in the config file.
type Spec struct {
	ID         uint32          `yaml:"id"`
	Name       string          `yaml:"name"`
	Settings   Settings        `yaml:"settings"`
	Tokens     []TokenSpec     `yaml:"tokens"`
	EventTypes []EventTypeSpec `yaml:"event_types"`
	Schemas    []SchemaSpec    `yaml:"schemas"`
}

// SchemaSpec registers a typed event: its type (<name>-v<N>) and its JSON
// Schema, written in YAML or JSON.
type SchemaSpec struct {
	Type   string         `yaml:"type"`
	Schema map[string]any `yaml:"schema"`
}

// EventTypeSpec declares an s2s event type.
type EventTypeSpec struct {
	Slug        string `yaml:"slug"`
	Kind        string `yaml:"kind"`
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
}

// TokenSpec declares a token: its secret, or only the secret's SHA-256 in
// hex so that the config file holds no secret.
type TokenSpec struct {
	Name   string `yaml:"name"`
	Secret string `yaml:"secret"`
	SHA256 string `yaml:"sha256"`
}

// Hash returns the token's SHA-256.
func (t TokenSpec) Hash() ([32]byte, error) {
	var h [32]byte
	switch {
	case t.Secret != "" && t.SHA256 != "":
		return h, errors.New("give secret or sha256, not both")
	case t.Secret != "":
		if err := ValidateSecret(t.Secret); err != nil {
			return h, err
		}
		return HashSecret(t.Secret), nil
	case t.SHA256 != "":
		b, err := hex.DecodeString(t.SHA256)
		if err != nil || len(b) != 32 {
			return h, errors.New("sha256 must be 64 hex digits")
		}
		copy(h[:], b)
		return h, nil
	}
	return h, errors.New("secret or sha256 is required")
}

// Validate checks a spec without touching the store.
func (p *Spec) Validate() error {
	var errs []error
	if err := ValidateName(p.Name); err != nil {
		errs = append(errs, err)
	}
	if err := p.Settings.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("settings: %w", err))
	}
	for i, t := range p.Tokens {
		if _, err := t.Hash(); err != nil {
			errs = append(errs, fmt.Errorf("tokens[%d]: %w", i, err))
		}
	}
	slugs := map[string]bool{}
	for i, e := range p.EventTypes {
		et := EventType{Slug: e.Slug, Kind: e.Kind, Name: e.Name, Description: e.Description}
		if err := et.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("event_types[%d]: %w", i, err))
		}
		if slugs[e.Slug] {
			errs = append(errs, fmt.Errorf("event_types[%d]: slug %q declared twice", i, e.Slug))
		}
		slugs[e.Slug] = true
	}
	return errors.Join(errs...)
}

// Provision makes the store hold the declared projects and tokens. It is
// idempotent: a project that exists gets the declared name and settings, a
// token that exists is left alone, and nothing undeclared is removed. A
// token revoked through the API stays revoked (and is logged), and a
// secret that belongs to another project is an error.
func (s *Store) Provision(ctx context.Context, specs []Spec, logger *slog.Logger) error {
	seen := map[uint32]bool{}
	for i, sp := range specs {
		if err := sp.Validate(); err != nil {
			return fmt.Errorf("projects[%d]: %w", i, err)
		}
		if seen[sp.ID] {
			return fmt.Errorf("projects[%d]: project %d declared twice", i, sp.ID)
		}
		seen[sp.ID] = true
	}
	for i, sp := range specs {
		cur, ok := s.Get(sp.ID)
		switch {
		case !ok:
			id := sp.ID
			if _, err := s.Create(ctx, &id, sp.Name, sp.Settings); err != nil {
				return fmt.Errorf("projects[%d]: %w", i, err)
			}
			logger.Info("provisioned project", "project", sp.ID, "name", sp.Name)
		case cur.Name != sp.Name || !reflect.DeepEqual(normal(cur.Settings), normal(withAppID(sp.Settings, cur.Settings.AppID))):
			name, settings := sp.Name, sp.Settings
			if _, err := s.Update(ctx, sp.ID, &name, &settings); err != nil {
				return fmt.Errorf("projects[%d]: %w", i, err)
			}
			logger.Info("updated provisioned project", "project", sp.ID, "name", sp.Name)
		}
		for j, e := range sp.EventTypes {
			want := EventType{ProjectID: sp.ID, Slug: e.Slug, Kind: e.Kind, Name: e.Name, Description: e.Description}
			cur, ok := s.EventType(sp.ID, e.Slug)
			switch {
			case !ok:
				if _, err := s.CreateEventType(ctx, want); err != nil {
					return fmt.Errorf("projects[%d].event_types[%d]: %w", i, j, err)
				}
				logger.Info("provisioned event type", "project", sp.ID, "slug", e.Slug, "kind", e.Kind)
			case cur.Kind != want.Kind || cur.Name != want.Name || cur.Description != want.Description:
				if _, err := s.UpdateEventType(ctx, want); err != nil {
					return fmt.Errorf("projects[%d].event_types[%d]: %w", i, j, err)
				}
				logger.Info("updated provisioned event type", "project", sp.ID, "slug", e.Slug)
			}
		}
		for j, sc := range sp.Schemas {
			doc, err := json.Marshal(sc.Schema)
			if err != nil {
				return fmt.Errorf("projects[%d].schemas[%d]: %w", i, j, err)
			}
			if _, created, err := s.RegisterSchema(ctx, sp.ID, sc.Type, doc); err != nil {
				return fmt.Errorf("projects[%d].schemas[%d] (%s): %w", i, j, sc.Type, err)
			} else if created {
				logger.Info("provisioned schema", "project", sp.ID, "type", sc.Type)
			}
		}
		for j, ts := range sp.Tokens {
			h, _ := ts.Hash()
			existing, err := s.TokenByHash(ctx, h)
			switch {
			case err == nil && existing.ProjectID != sp.ID:
				return fmt.Errorf("projects[%d].tokens[%d]: this secret is a token of project %d", i, j, existing.ProjectID)
			case err == nil && existing.RevokedAt != nil:
				logger.Warn("provisioned token was revoked and stays revoked", "project", sp.ID, "token", existing.ID)
			case err == nil:
			case errors.Is(err, ErrNotFound):
				var t Token
				if ts.Secret != "" {
					t, _, err = s.CreateToken(ctx, sp.ID, ts.Name, ts.Secret)
				} else {
					t, err = s.ImportTokenHash(ctx, sp.ID, ts.Name, h)
				}
				if err != nil {
					return fmt.Errorf("projects[%d].tokens[%d]: %w", i, j, err)
				}
				logger.Info("provisioned token", "project", sp.ID, "token", t.ID, "name", ts.Name)
			default:
				return fmt.Errorf("projects[%d].tokens[%d]: %w", i, j, err)
			}
		}
	}
	return nil
}

// withAppID fills in the app id a spec leaves out: a generated one is kept.
func withAppID(s Settings, current string) Settings {
	if s.AppID == "" {
		s.AppID = current
	}
	return s
}

// normal makes nil and empty lists compare equal.
func normal(s Settings) Settings {
	if len(s.RedirectHosts) == 0 {
		s.RedirectHosts = nil
	}
	if s.WebhookAuth == WebhookAuthNone {
		s.WebhookAuth = ""
	}
	if s.S2S != nil && *s.S2S {
		s.S2S = nil
	}
	return s
}
