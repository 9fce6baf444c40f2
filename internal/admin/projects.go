package admin

import (
	"errors"
	"net/http"

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
	var b EventTypeBody
	if err := decode(r, &b); err != nil {
		return nil, err
	}
	if b.Slug != "" && b.Slug != r.PathValue("slug") {
		return nil, errorf(http.StatusBadRequest, "the slug cannot change; create another event type")
	}
	return s.projects.UpdateEventType(r.Context(), project.EventType{ProjectID: id, Slug: r.PathValue("slug"), Kind: b.Kind, Name: b.Name, Description: b.Description})
}

func (s *Server) deleteEventType(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	return nil, s.projects.DeleteEventType(r.Context(), id, r.PathValue("slug"))
}

// getProfile is GET /api/v1/projects/{id}/profiles/{idType}/{value}: the
// profile that holds an identity, with all its identities and each
// attribute's time.
func (s *Server) getProfile(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	if _, ok := s.projects.Get(id); !ok {
		return nil, errorf(http.StatusNotFound, "project %d does not exist", id)
	}
	if s.cfg.Profiles == nil {
		return nil, errorf(http.StatusNotFound, "profiles are not served")
	}
	p, err := s.cfg.Profiles.Find(r.Context(), id, r.PathValue("idType"), r.PathValue("value"))
	if errors.Is(err, profile.ErrNotFound) {
		return nil, errorf(http.StatusNotFound, "no profile of project %d has %s %q (identity types: %s)", id, r.PathValue("idType"), r.PathValue("value"), profile.IdentityTypes())
	}
	return p, err
}
