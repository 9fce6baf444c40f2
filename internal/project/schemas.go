package project

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/schema"
)

// SchemaRecord is an event schema a project registered: a typed event
// <name>-v<N> of its own, validated like the built-in commerce types.
type SchemaRecord struct {
	ProjectID uint32          `json:"projectId"`
	Type      string          `json:"type"`
	Title     string          `json:"title,omitempty"`
	Schema    json.RawMessage `json:"schema"`
	CreatedAt time.Time       `json:"createdAt"`

	compiled *schema.Schema
}

// Compiled is the schema, ready to validate.
func (r *SchemaRecord) Compiled() *schema.Schema { return r.compiled }

// loadSchemas fills snap with the registered schemas, reusing what the
// previous snapshot compiled.
func (s *Store) loadSchemas(stored []StoredSchema, snap *snapshot) error {
	var prev map[uint32]map[string]*SchemaRecord
	if old := s.snap.Load(); old != nil {
		prev = old.schemas
	}
	for _, st := range stored {
		r := SchemaRecord{ProjectID: st.ProjectID, Type: st.Type, Schema: json.RawMessage(st.Body), CreatedAt: st.CreatedAt.UTC()}
		if old, ok := prev[r.ProjectID][r.Type]; ok && bytes.Equal(old.Schema, r.Schema) {
			r.compiled, r.Title = old.compiled, old.Title
		} else {
			c, err := schema.Compile(r.Type, r.Schema)
			if err != nil {
				return fmt.Errorf("stored schema %s of project %d: %w", r.Type, r.ProjectID, err)
			}
			r.compiled, r.Title = c, c.Title
		}
		m := snap.schemas[r.ProjectID]
		if m == nil {
			m = map[string]*SchemaRecord{}
			snap.schemas[r.ProjectID] = m
		}
		m[r.Type] = &r
	}
	return nil
}

// Schema returns a project's registered schema.
func (s *Store) Schema(projectID uint32, typ string) (*SchemaRecord, bool) {
	r, ok := s.snap.Load().schemas[projectID][typ]
	return r, ok
}

// Schemas lists a project's registered schemas by type.
func (s *Store) Schemas(projectID uint32) ([]*SchemaRecord, error) {
	if _, ok := s.Get(projectID); !ok {
		return nil, fmt.Errorf("project %d: %w", projectID, ErrNotFound)
	}
	m := s.snap.Load().schemas[projectID]
	out := make([]*SchemaRecord, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out, nil
}

// RegisterSchema registers typ for a project. The document must compile
// (the error is the compiler's). Versions are immutable: registering a
// type again with the same document is a no-op (created false), with a
// different one ErrExists. Built-in types cannot be registered.
func (s *Store) RegisterSchema(ctx context.Context, projectID uint32, typ string, doc []byte) (rec *SchemaRecord, created bool, err error) {
	if err := schema.CheckType(typ); err != nil {
		return nil, false, invalid("type", err)
	}
	if _, builtin := schema.Builtin(typ); builtin {
		return nil, false, invalid("type", fmt.Errorf("%s is a built-in type; register another name or version", typ))
	}
	c, err := schema.Compile(typ, doc)
	if err != nil {
		return nil, false, invalid("schema", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.Get(projectID); !ok {
		return nil, false, fmt.Errorf("project %d: %w", projectID, ErrNotFound)
	}
	if cur, ok := s.Schema(projectID, typ); ok {
		if bytes.Equal(cur.Schema, c.Doc) {
			return cur, false, nil
		}
		return nil, false, &existsError{Fields: event.FieldErrors{{Path: "schema",
			Message: fmt.Sprintf("%s is already registered with a different schema; versions are immutable: register the next version instead", typ)}}}
	}
	// A deleted version keeps its document's hash: registered again, it
	// must be the same document (events stored under the type were
	// checked against it).
	retired, err := s.db.Meta(ctx, retiredKey(projectID, typ))
	if err != nil {
		return nil, false, fmt.Errorf("register schema: %w", err)
	}
	if retired != "" && retired != docHash(c.Doc) {
		return nil, false, &existsError{Fields: event.FieldErrors{{Path: "schema",
			Message: fmt.Sprintf("%s was registered with a different schema and deleted; versions are immutable: register the next version instead", typ)}}}
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	if err := s.db.InsertSchema(ctx, StoredSchema{ProjectID: projectID, Type: typ, Body: c.Doc, CreatedAt: now}); err != nil {
		return nil, false, fmt.Errorf("register schema: %w", err)
	}
	if err := s.reload(ctx); err != nil {
		return nil, false, err
	}
	r, _ := s.Schema(projectID, typ)
	return r, true, nil
}

// retiredKey is the meta key that keeps a deleted version's document hash.
func retiredKey(projectID uint32, typ string) string {
	return fmt.Sprintf("schema-retired/%d/%s", projectID, typ)
}

func docHash(doc []byte) string {
	h := sha256.Sum256(doc)
	return hex.EncodeToString(h[:])
}

// existsError is a conflict with what is stored, at its path in the
// request. It is ErrExists.
type existsError struct{ Fields event.FieldErrors }

func (e *existsError) Error() string                  { return e.Fields.Error() }
func (e *existsError) Is(target error) bool           { return target == ErrExists }
func (e *existsError) FieldErrors() event.FieldErrors { return e.Fields }

// DeleteSchema removes a registered schema; events of that type are then
// refused as unknown.
func (s *Store) DeleteSchema(ctx context.Context, projectID uint32, typ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.Schema(projectID, typ); ok {
		if err := s.db.SetMeta(ctx, retiredKey(projectID, typ), docHash(cur.Schema)); err != nil {
			return fmt.Errorf("delete schema: %w", err)
		}
	}
	if err := s.db.DeleteSchema(ctx, projectID, typ); err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("schema %s of project %d: %w", typ, projectID, ErrNotFound)
		}
		return fmt.Errorf("delete schema: %w", err)
	}
	return s.reload(ctx)
}
