package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/hook"
)

// HookBody is the body of POST /api/v1/hooks: a hook, and where it starts.
type HookBody struct {
	hook.Hook
	// StartFrom is "now" (the default) or an RFC 3339 time: a backfill
	// from the events committed since.
	StartFrom string `json:"start_from,omitempty"`
}

// UnmarshalJSON reads start_from beside the hook's fields.
func (b *HookBody) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return errors.New("a hook is a JSON object")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return err
	}
	var fe event.FieldErrors
	if v, ok := obj["start_from"]; ok {
		if err := json.Unmarshal(v, &b.StartFrom); err != nil {
			fe.Add("start_from", `"now" or an RFC 3339 time, as a JSON string`)
		}
		delete(obj, "start_from")
	}
	rest, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	if err := b.Hook.UnmarshalJSON(rest); err != nil {
		var more event.FieldErrors
		if !errors.As(err, &more) {
			return err
		}
		fe = append(fe, more...)
	}
	return fe.Err()
}

// MarshalJSON writes start_from beside the hook's fields.
func (b HookBody) MarshalJSON() ([]byte, error) {
	hb, err := json.Marshal(b.Hook)
	if err != nil || b.StartFrom == "" {
		return hb, err
	}
	sf, _ := json.Marshal(b.StartFrom)
	out := append(hb[:len(hb)-1:len(hb)-1], `,"start_from":`...)
	return append(append(out, sf...), '}'), nil
}

// HookList is the answer of GET /api/v1/hooks.
type HookList struct {
	Hooks []hook.Hook `json:"hooks"`
}

// ActivateBody is the optional body of POST /api/v1/hooks/{id}/activate.
type ActivateBody struct {
	// From is absent (resume from the hook's place), "now", or an RFC 3339
	// time.
	From string `json:"from,omitempty"`
}

// TestBody is the optional body of POST /api/v1/hooks/{id}/test.
type TestBody struct {
	Sample json.RawMessage `json:"sample,omitempty"`
}

func (s *Server) hooks() (*hook.Manager, error) {
	if s.cfg.Hooks == nil {
		return nil, errorf(http.StatusNotFound, "hooks are not served")
	}
	return s.cfg.Hooks, nil
}

func parseStart(path, v string) (*hook.Start, error) {
	if v == "" {
		return nil, nil
	}
	st, err := hook.ParseStart(v)
	if err != nil {
		return nil, badField(path, "%s", err)
	}
	return &st, nil
}

func (s *Server) listHooks(r *http.Request) (any, error) {
	m, err := s.hooks()
	if err != nil {
		return nil, err
	}
	return HookList{Hooks: m.List()}, nil
}

func (s *Server) createHook(r *http.Request) (any, error) {
	m, err := s.hooks()
	if err != nil {
		return nil, err
	}
	var b HookBody
	if err := decode(r, &b); err != nil {
		return nil, err
	}
	st, err := parseStart("start_from", b.StartFrom)
	if err != nil {
		return nil, err
	}
	if st == nil {
		st = &hook.Start{}
	}
	h, err := m.Create(r.Context(), b.Hook, *st)
	if err != nil {
		return nil, err
	}
	return created{h}, nil
}

func (s *Server) getHook(r *http.Request) (any, error) {
	m, err := s.hooks()
	if err != nil {
		return nil, err
	}
	return m.Get(r.PathValue("id"))
}

func (s *Server) updateHook(r *http.Request) (any, error) {
	m, err := s.hooks()
	if err != nil {
		return nil, err
	}
	var b hook.Hook
	if err := decode(r, &b); err != nil {
		return nil, err
	}
	return m.Update(r.Context(), r.PathValue("id"), b)
}

func (s *Server) deleteHook(r *http.Request) (any, error) {
	m, err := s.hooks()
	if err != nil {
		return nil, err
	}
	return nil, m.Delete(r.Context(), r.PathValue("id"))
}

func (s *Server) activateHook(r *http.Request) (any, error) {
	m, err := s.hooks()
	if err != nil {
		return nil, err
	}
	var b ActivateBody
	if r.ContentLength != 0 {
		if err := decode(r, &b); err != nil {
			return nil, err
		}
	}
	st, err := parseStart("from", b.From)
	if err != nil {
		return nil, err
	}
	return m.Activate(r.Context(), r.PathValue("id"), st)
}

func (s *Server) stopHook(r *http.Request) (any, error) {
	m, err := s.hooks()
	if err != nil {
		return nil, err
	}
	return m.Stop(r.Context(), r.PathValue("id"))
}

func (s *Server) cloneHook(r *http.Request) (any, error) {
	m, err := s.hooks()
	if err != nil {
		return nil, err
	}
	h, err := m.Clone(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	return created{h}, nil
}

func (s *Server) rotateHookSecret(r *http.Request) (any, error) {
	m, err := s.hooks()
	if err != nil {
		return nil, err
	}
	return m.RotateSecret(r.Context(), r.PathValue("id"))
}

func (s *Server) testHook(r *http.Request) (any, error) {
	m, err := s.hooks()
	if err != nil {
		return nil, err
	}
	var b TestBody
	if r.ContentLength != 0 {
		if err := decode(r, &b); err != nil {
			return nil, err
		}
	}
	return m.Test(r.Context(), r.PathValue("id"), b.Sample)
}

func (s *Server) hookDeliveries(r *http.Request) (any, error) {
	m, err := s.hooks()
	if err != nil {
		return nil, err
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return nil, badField("limit", "must be an integer from 1 to 1000")
		}
		limit = n
	}
	d, err := m.Deliveries(r.Context(), r.PathValue("id"), limit)
	if err != nil {
		return nil, err
	}
	return map[string]any{"deliveries": d}, nil
}

func deadLetterQuery(r *http.Request) (hook.DeadLetterQuery, error) {
	var q hook.DeadLetterQuery
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if v := r.URL.Query().Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return q, badField(p.name, "%q is not an RFC 3339 time", v)
			}
			*p.dst = t
		}
	}
	if v := r.PathValue("dl"); v != "" {
		id, err := hook.ParseDeadLetterID(v)
		if err != nil {
			return q, err
		}
		q.ID = id
	}
	return q, nil
}

func (s *Server) listDeadLetters(r *http.Request) (any, error) {
	m, err := s.hooks()
	if err != nil {
		return nil, err
	}
	q, err := deadLetterQuery(r)
	if err != nil {
		return nil, err
	}
	d, err := m.DeadLetters(r.Context(), r.PathValue("id"), q)
	if err != nil {
		return nil, err
	}
	return map[string]any{"dead_letters": d}, nil
}

func (s *Server) replayDeadLetters(r *http.Request) (any, error) {
	m, err := s.hooks()
	if err != nil {
		return nil, err
	}
	q, err := deadLetterQuery(r)
	if err != nil {
		return nil, err
	}
	res, err := m.Replay(r.Context(), r.PathValue("id"), q)
	if err != nil {
		return nil, err
	}
	return map[string]any{"replayed": res}, nil
}
