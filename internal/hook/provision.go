package hook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/internal/sink"
)

// Spec declares a hook in the config file (hooks.provision). Its id is
// chosen by the operator and names it across restarts.
type Spec struct {
	Hook `yaml:",inline"`
	// SigningSecret, when set, is the hook's signing secret (whsec_…),
	// so that a receiver can be set up before sluice starts. Otherwise
	// one is generated; read it with `sluice hook rotate-secret`.
	SigningSecret string `yaml:"signing_secret"`
	// StartFrom is where a new hook starts: "now" (default) or an RFC
	// 3339 time. It does not move an existing hook.
	StartFrom string `yaml:"start_from"`
}

// UnmarshalYAML reads a spec: the hook, and signing_secret and
// start_from beside its fields.
func (s *Spec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a hook is a mapping", n.Line)
	}
	rest := *n
	rest.Content = nil
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var err error
		switch k.Value {
		case "signing_secret":
			err = v.Decode(&s.SigningSecret)
		case "start_from":
			err = v.Decode(&s.StartFrom)
		default:
			rest.Content = append(rest.Content, k, v)
		}
		if err != nil {
			return err
		}
	}
	return s.Hook.UnmarshalYAML(&rest)
}

var specID = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// Check validates a spec as the config is loaded: its id, secret, start
// and the hook's common fields. Its type and settings are checked against
// the destinations when it is provisioned (before sluice serves).
func (s Spec) Check() error {
	var errs []error
	if !specID.MatchString(s.ID) {
		errs = append(errs, fmt.Errorf("id: %q must be 1–64 of a-z, 0-9, '_', '.', '-', starting with a letter or digit", s.ID))
	}
	if s.SigningSecret != "" {
		if _, err := sink.DecodeSecret(s.SigningSecret); err != nil {
			errs = append(errs, fmt.Errorf("signing_secret: %w", err))
		}
	}
	if _, err := s.start(); err != nil {
		errs = append(errs, err)
	}
	h := s.Hook
	h.Settings, h.dest = nil, nil
	h.Defaults()
	if _, err := h.compile(newProblems()); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s Spec) start() (Start, error) {
	st, err := ParseStart(s.StartFrom)
	if err != nil {
		return Start{}, fmt.Errorf("start_from: %w", err)
	}
	return st, nil
}

// ParseStart reads where a hook starts: "now" (or "") or an RFC 3339 time
// in the past. A time to come (more than a minute ahead, for a sender's
// clock) is refused: it would skip every event until then while the hook
// looks active and its lag reads 0.
func ParseStart(v string) (Start, error) {
	if v == "" || v == "now" {
		return Start{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return Start{}, fmt.Errorf("%q is neither \"now\" nor an RFC 3339 time", v)
	}
	if t.After(time.Now().Add(time.Minute)) { // a minute for the sender's clock
		return Start{}, fmt.Errorf("%s is in the future: start from \"now\" or from a past time", v)
	}
	return Start{From: &t}, nil
}

// Provision makes the store hold the declared hooks, before Start. A new
// one is created (active as declared, from start_from). An existing one
// gets the declared definition and secrets when they differ, keeping its
// place and its active switch: stopping and activating belong to the
// operator and to the delivery loop (a 410, a streak of dead letters),
// not to a restart.
func (m *Manager) Provision(ctx context.Context, specs []Spec, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	seen := map[string]bool{}
	for i, sp := range specs {
		if err := sp.Check(); err != nil {
			return fmt.Errorf("hooks.provision[%d] (%s): %w", i, sp.ID, err)
		}
		if seen[sp.ID] {
			return fmt.Errorf("hooks.provision[%d]: id %s declared twice", i, sp.ID)
		}
		seen[sp.ID] = true
		// Copied under the lock: a running worker moves the cursor.
		m.mu.Lock()
		var cur row
		r, exists := m.rows[sp.ID]
		if exists {
			cur = *r
		}
		m.mu.Unlock()
		if !exists {
			st, _ := sp.start()
			secret := sp.SigningSecret
			if secret == "" {
				secret = NewSecret()
			}
			if _, err := m.create(ctx, sp.Hook, st, sp.ID, secret); err != nil {
				return fmt.Errorf("hooks.provision[%d] (%s): %w", i, sp.ID, err)
			}
			logger.Info("provisioned hook", "hook", sp.ID, "name", sp.Name, "active", sp.Active)
			continue
		}
		want := sp.Hook
		if err := m.dests.Resolve(&want); err != nil {
			return fmt.Errorf("hooks.provision[%d] (%s): %w", i, sp.ID, err)
		}
		m.defaults(&want)
		want.ID = sp.ID
		a, aerr := specJSON(want)
		b, berr := specJSON(cur.hook)
		if err := errors.Join(aerr, berr); err != nil {
			return fmt.Errorf("hooks.provision[%d] (%s): %w", i, sp.ID, err)
		}
		if string(a) != string(b) || authChanged(want, cur.secrets) {
			if _, err := m.Update(ctx, sp.ID, want); err != nil {
				return fmt.Errorf("hooks.provision[%d] (%s): %w", i, sp.ID, err)
			}
			logger.Info("updated provisioned hook", "hook", sp.ID, "name", sp.Name)
		}
		if sp.SigningSecret != "" && cur.secrets.Signing[0] != sp.SigningSecret {
			if _, err := m.rotateTo(ctx, sp.ID, sp.SigningSecret); err != nil {
				return fmt.Errorf("hooks.provision[%d] (%s): %w", i, sp.ID, err)
			}
			logger.Info("provisioned hook has a new signing secret; the previous one also signs for the rotation grace", "hook", sp.ID)
		}
	}
	return nil
}

// authChanged reports whether a declared secret (password, token, API
// secret…) differs from the stored one.
func authChanged(h Hook, s secrets) bool {
	for name, v := range h.givenSecrets() {
		if s.Values[name] != v {
			return true
		}
	}
	return false
}
