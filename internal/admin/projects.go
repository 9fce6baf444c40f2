package admin

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/identity"
	"github.com/sluicehq/sluice/internal/profile"
	"github.com/sluicehq/sluice/internal/project"
)

// ProjectList is the answer of GET /api/v1/projects.
type ProjectList struct {
	Projects []project.Project `json:"projects"`
}

// CreateProject is the body of POST /api/v1/projects.
type CreateProject struct {
	ID       *uint32          `json:"id,omitempty"`
	Name     string           `json:"name"`
	Settings project.Settings `json:"settings"`
}

// UpdateProject is the body of PATCH /api/v1/projects/{id}; absent fields
// are left as they are, and settings are replaced whole.
type UpdateProject struct {
	Name     *string           `json:"name,omitempty"`
	Settings *project.Settings `json:"settings,omitempty"`
}

// TokenList is the answer of GET /api/v1/projects/{id}/tokens.
type TokenList struct {
	Tokens []project.Token `json:"tokens"`
}

// CreateToken is the body of POST /api/v1/projects/{id}/tokens. Secret is
// optional: it imports a token a sender already uses.
type CreateToken struct {
	Name   string `json:"name"`
	Secret string `json:"secret,omitempty"`
}

// CreatedToken is the answer of POST /api/v1/projects/{id}/tokens: the
// only time the secret is shown.
type CreatedToken struct {
	Token  project.Token `json:"token"`
	Secret string        `json:"secret"`
}

func (s *Server) listProjects(r *http.Request) (any, error) {
	return ProjectList{Projects: s.projects.List()}, nil
}

func (s *Server) createProject(r *http.Request) (any, error) {
	var req CreateProject
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	p, err := s.projects.Create(r.Context(), req.ID, req.Name, req.Settings)
	if err != nil {
		return nil, err
	}
	return created{p}, nil
}

func (s *Server) getProject(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	p, ok := s.projects.Get(id)
	if !ok {
		return nil, errorf(http.StatusNotFound, "project %d does not exist", id)
	}
	return p, nil
}

func (s *Server) updateProject(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	var req UpdateProject
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	return s.projects.Update(r.Context(), id, req.Name, req.Settings)
}

func (s *Server) deleteProject(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	if s.cfg.Hooks != nil {
		err := s.cfg.Hooks.ProjectInUse(r.Context(), id)
		var inUse *hook.InUseError
		if errors.As(err, &inUse) {
			return nil, &apiError{Status: http.StatusConflict, Message: err.Error(), Errors: event.FieldErrors{{Path: "id", Message: err.Error()}}}
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, s.projects.Delete(r.Context(), id)
}

func (s *Server) listTokens(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	ts, err := s.projects.Tokens(r.Context(), id)
	if err != nil {
		return nil, err
	}
	return TokenList{Tokens: ts}, nil
}

func (s *Server) createToken(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	var req CreateToken
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	t, secret, err := s.projects.CreateToken(r.Context(), id, req.Name, req.Secret)
	if err != nil {
		return nil, err
	}
	return created{CreatedToken{Token: t, Secret: secret}}, nil
}

func (s *Server) revokeToken(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	return s.projects.RevokeToken(r.Context(), id, r.PathValue("token"))
}

// EventTypeList is the answer of GET /api/v1/projects/{id}/event-types.
type EventTypeList struct {
	EventTypes []project.EventType `json:"eventTypes"`
}

// EventTypeBody is the body of POST (slug required) and PATCH (slug from
// the path) on event types.
type EventTypeBody struct {
	Slug        string `json:"slug,omitempty"`
	Kind        string `json:"kind"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
}

// UpdateEventType is the body of PATCH …/event-types/{slug}: absent
// fields are left as they are.
type UpdateEventType struct {
	Slug        *string `json:"slug,omitempty"`
	Kind        *string `json:"kind,omitempty"`
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
}

func (s *Server) listEventTypes(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	ets, err := s.projects.EventTypes(id)
	if err != nil {
		return nil, err
	}
	return EventTypeList{EventTypes: ets}, nil
}

func (s *Server) createEventType(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	var b EventTypeBody
	if err := decode(r, &b); err != nil {
		return nil, err
	}
	et, err := s.projects.CreateEventType(r.Context(), project.EventType{ProjectID: id, Slug: b.Slug, Kind: b.Kind, Name: b.Name, Description: b.Description})
	if err != nil {
		return nil, err
	}
	return created{et}, nil
}

func (s *Server) getEventType(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	if _, ok := s.projects.Get(id); !ok {
		return nil, errorf(http.StatusNotFound, "project %d does not exist", id)
	}
	et, ok := s.projects.EventType(id, r.PathValue("slug"))
	if !ok {
		return nil, errorf(http.StatusNotFound, "event type %q of project %d does not exist", r.PathValue("slug"), id)
	}
	return et, nil
}

func (s *Server) updateEventType(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	var b UpdateEventType
	if err := decode(r, &b); err != nil {
		return nil, err
	}
	slug := r.PathValue("slug")
	if b.Slug != nil && *b.Slug != slug {
		return nil, badField("slug", "cannot change; create another event type")
	}
	et, ok := s.projects.EventType(id, slug)
	if !ok {
		return nil, fmt.Errorf("event type %q of project %d: %w", slug, id, project.ErrNotFound)
	}
	for _, f := range []struct {
		dst *string
		v   *string
	}{{&et.Kind, b.Kind}, {&et.Name, b.Name}, {&et.Description, b.Description}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	return s.projects.UpdateEventType(r.Context(), et)
}

func (s *Server) deleteEventType(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	return nil, s.projects.DeleteEventType(r.Context(), id, r.PathValue("slug"))
}

// getProfile is GET /api/v1/projects/{id}/profiles/{idType}/{value}: the
// profile that holds an identity (or, for idType profile, has that id: a
// merged profile's id names its survivor), with its identities,
// attributes, traits and conflicts.
func (s *Server) getProfile(r *http.Request) (any, error) {
	id, idType, value, err := s.profileTarget(r)
	if err != nil {
		return nil, err
	}
	p, err := s.cfg.Profiles.Find(r.Context(), id, idType, value)
	return p, s.profileError(err, id, idType, value)
}

// profileEvents is GET …/profiles/{idType}/{value}/events: the person's
// timeline across every dialect, newest first, paged (limit, before) and
// filtered by key glob (key).
func (s *Server) profileEvents(r *http.Request) (any, error) {
	id, idType, value, err := s.profileTarget(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	var tq profile.TimelineQuery
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return nil, &apiError{Status: http.StatusBadRequest, Message: "limit must be between 1 and 1000",
				Errors: event.FieldErrors{{Path: "limit", Message: "must be between 1 and 1000"}}}
		}
		tq.Limit = n
	}
	if v := q.Get("before"); v != "" {
		t, eid, ok := strings.Cut(v, ":")
		tm, err1 := strconv.ParseInt(t, 10, 64)
		n, err2 := strconv.ParseUint(eid, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return nil, &apiError{Status: http.StatusBadRequest, Message: "before must be the next cursor of a page (<time>:<id>)",
				Errors: event.FieldErrors{{Path: "before", Message: "must be the next cursor of a page"}}}
		}
		tq.BeforeTime, tq.BeforeID = tm, event.ID(n)
	}
	if v := q.Get("key"); v != "" {
		if err := event.ValidateGlob(v); err != nil {
			return nil, &apiError{Status: http.StatusBadRequest, Message: "key: " + err.Error(),
				Errors: event.FieldErrors{{Path: "key", Message: err.Error()}}}
		}
		tq.KeyGlob = v
	}
	page, err := s.cfg.Profiles.Events(r.Context(), id, idType, value, tq)
	return page, s.profileError(err, id, idType, value)
}

// eraseProfile is DELETE …/profiles/{idType}/{value}: the person's
// erasure. The profile, the profiles merged into it, its identities,
// attributes and events are gone from every read path and from hook
// deliveries not yet made; the answer counts what was removed.
func (s *Server) eraseProfile(r *http.Request) (any, error) {
	id, idType, value, err := s.profileTarget(r)
	if err != nil {
		return nil, err
	}
	er, err := s.cfg.Profiles.Erase(r.Context(), id, idType, value)
	return er, s.profileError(err, id, idType, value)
}

// profileTarget reads the project and identity of a profile route.
func (s *Server) profileTarget(r *http.Request) (uint32, string, string, error) {
	id, err := pathProject(r)
	if err != nil {
		return 0, "", "", err
	}
	if _, ok := s.projects.Get(id); !ok {
		return 0, "", "", errorf(http.StatusNotFound, "project %d does not exist", id)
	}
	if s.cfg.Profiles == nil {
		return 0, "", "", errorf(http.StatusNotFound, "profiles are not served")
	}
	idType := r.PathValue("idType")
	if _, ok := identity.Lookup(idType); !ok && idType != profile.LookupProfile {
		return 0, "", "", &apiError{Status: http.StatusBadRequest, Message: fmt.Sprintf("%q is not an identity type; the types are %s", idType, profile.IdentityTypes()),
			Errors: event.FieldErrors{{Path: "idType", Message: "is not an identity type"}}}
	}
	return id, idType, r.PathValue("value"), nil
}

func (s *Server) profileError(err error, id uint32, idType, value string) error {
	if errors.Is(err, profile.ErrNotFound) {
		return errorf(http.StatusNotFound, "no profile of project %d has %s %q", id, idType, value)
	}
	return err
}
