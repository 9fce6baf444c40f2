package admin

import (
	"encoding/json"
	"net/http"

	"github.com/sluicehq/sluice/internal/project"
	"github.com/sluicehq/sluice/internal/schema"
)

// SchemaList is the answer of GET /api/v1/schemas: the built-in commerce
// types, each with its JSON Schema document.
type SchemaList struct {
	Schemas []*schema.Schema `json:"schemas"`
}

// ProjectSchemaList is the answer of GET /api/v1/projects/{id}/schemas:
// the event types the project registered.
type ProjectSchemaList struct {
	Schemas []*project.SchemaRecord `json:"schemas"`
}

// SchemaBody is the body of POST /api/v1/projects/{id}/schemas.
type SchemaBody struct {
	Type   string          `json:"type"`
	Schema json.RawMessage `json:"schema"`
}

func (s *Server) listBuiltinSchemas(r *http.Request) (any, error) {
	return SchemaList{Schemas: schema.Builtins()}, nil
}

func (s *Server) getBuiltinSchema(r *http.Request) (any, error) {
	sch, ok := schema.Builtin(r.PathValue("type"))
	if !ok {
		return nil, errorf(http.StatusNotFound, "%q is not a built-in event type (built-in: %v)", r.PathValue("type"), schema.BuiltinTypes())
	}
	return sch, nil
}

func (s *Server) listSchemas(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	recs, err := s.projects.Schemas(id)
	if err != nil {
		return nil, err
	}
	return ProjectSchemaList{Schemas: recs}, nil
}

// registerSchema answers 201 with the new version, 200 when the same
// document was already registered under that type, 409 when another one
// was (versions are immutable), 400 when it does not compile.
func (s *Server) registerSchema(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	var b SchemaBody
	if err := decode(r, &b); err != nil {
		return nil, err
	}
	if b.Type == "" {
		return nil, badField("type", "required: <name>-v<N>, like order-shipped-v1")
	}
	if len(b.Schema) == 0 || string(b.Schema) == "null" {
		return nil, badField("schema", "required: a JSON Schema document (draft 2020-12 unless it says otherwise)")
	}
	rec, isNew, err := s.projects.RegisterSchema(r.Context(), id, b.Type, b.Schema)
	if err != nil {
		return nil, err
	}
	if isNew {
		return created{rec}, nil
	}
	return rec, nil
}

func (s *Server) getSchema(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	if _, ok := s.projects.Get(id); !ok {
		return nil, errorf(http.StatusNotFound, "project %d does not exist", id)
	}
	rec, ok := s.projects.Schema(id, r.PathValue("type"))
	if !ok {
		return nil, errorf(http.StatusNotFound, "event type %q is not registered in project %d", r.PathValue("type"), id)
	}
	return rec, nil
}

func (s *Server) deleteSchema(r *http.Request) (any, error) {
	id, err := pathProject(r)
	if err != nil {
		return nil, err
	}
	return nil, s.projects.DeleteSchema(r.Context(), id, r.PathValue("type"))
}
