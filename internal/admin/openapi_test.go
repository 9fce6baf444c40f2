package admin

import (
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"gopkg.in/yaml.v3"
)

// docs/openapi.yaml documents every API endpoint, and nothing that is not
// served.
func TestOpenAPIDocumentsEveryEndpoint(t *testing.T) {
	b, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		if !strings.HasPrefix(path, "/api/") {
			continue
		}
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			if m, ok := op.(map[string]any); !ok || m["responses"] == nil {
				t.Errorf("%s %s has no responses", method, path)
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	srv := New(Config{}, nil, nil, nil, nil)
	served := append([]string(nil), srv.routes...)
	sort.Strings(documented)
	sort.Strings(served)
	if strings.Join(documented, "\n") != strings.Join(served, "\n") {
		t.Fatalf("documented:\n%s\n\nserved:\n%s", strings.Join(documented, "\n"), strings.Join(served, "\n"))
	}
	for _, p := range []string{"/metrics", "/healthz", "/readyz", "/debug/pprof/"} {
		if _, ok := doc.Paths[p]; !ok {
			t.Errorf("%s not documented", p)
		}
	}
}

// docs/openapi.yaml is valid OpenAPI 3.1, checked with libopenapi (the
// document against the specification's schema, every schema compiled as a
// validator compiles it) and one rule a YAML slip breaks silently: every key
// of a schema object is a keyword of the 3.1 schema dialect (JSON Schema
// 2020-12 and the OpenAPI vocabulary) or an x- extension. An unquoted comma
// in a flow mapping splits a description into a stray key; `nullable` is
// 3.0 only.
func TestOpenAPIIsValid31(t *testing.T) {
	doc := loadOpenAPI(t)
	if v := doc.GetVersion(); v != "3.1.0" {
		t.Fatalf("openapi %s, want 3.1.0", v)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("build the model: %v", err)
	}
	v, errs := validator.NewValidator(doc)
	if errs != nil {
		t.Fatalf("validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("%s: %s", e.Message, e.Reason)
			for _, f := range e.SchemaValidationErrors {
				t.Errorf("  %s (line %d): %s", f.FieldPath, f.Line, f.Reason)
			}
		}
	}

	// Every schema, as the request and response validators compile it.
	sv := schema_validation.NewSchemaValidator()
	compile := func(where string, p *base.SchemaProxy) {
		if p == nil {
			return
		}
		s := p.Schema()
		if s == nil {
			t.Errorf("%s: schema does not build: %v", where, p.GetBuildError())
			return
		}
		// A payload that breaks the schema fails with the violations
		// listed; a schema that does not compile fails without any.
		_, verrs := sv.ValidateSchemaString(s, "null")
		for _, e := range verrs {
			if len(e.SchemaValidationErrors) == 0 {
				t.Errorf("%s: %s: %s", where, e.Message, e.Reason)
			}
		}
	}
	for name, p := range model.Model.Components.Schemas.FromOldest() {
		compile("components.schemas."+name, p)
	}
	for path, item := range model.Model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			where := method + " " + path
			for _, prm := range append(append([]*v3.Parameter(nil), item.Parameters...), op.Parameters...) {
				compile(where+" parameter "+prm.Name, prm.Schema)
			}
			if op.RequestBody != nil {
				for mt, m := range op.RequestBody.Content.FromOldest() {
					compile(where+" request "+mt, m.Schema)
				}
			}
			if op.Responses != nil {
				for code, r := range op.Responses.Codes.FromOldest() {
					for mt, m := range r.Content.FromOldest() {
						compile(where+" "+code+" "+mt, m.Schema)
					}
				}
			}
		}
	}

	// Every key of every schema object, inline or a component.
	idx := model.Index
	n := 0
	for _, ref := range idx.GetAllSchemas() {
		node := ref.Node
		if node == nil || node.Tag != "!!map" {
			continue
		}
		n++
		for i := 0; i+1 < len(node.Content); i += 2 {
			k := node.Content[i].Value
			if !schemaKeywords[k] && !strings.HasPrefix(k, "x-") {
				t.Errorf("line %d: %q is not a keyword of an OpenAPI 3.1 schema (in %s)", node.Content[i].Line, k, ref.Definition)
			}
		}
	}
	if n < 100 {
		t.Fatalf("only %d schema objects found", n)
	}
}

// schemaKeywords are the keywords of the OpenAPI 3.1 schema dialect: JSON
// Schema 2020-12's vocabularies and the OpenAPI base vocabulary.
var schemaKeywords = map[string]bool{}

func init() {
	for _, k := range strings.Fields(`
		$schema $id $ref $anchor $dynamicRef $dynamicAnchor $vocabulary $comment $defs
		prefixItems items contains additionalProperties properties patternProperties dependentSchemas
		propertyNames if then else allOf anyOf oneOf not unevaluatedItems unevaluatedProperties
		type const enum multipleOf maximum exclusiveMaximum minimum exclusiveMinimum maxLength minLength
		pattern maxItems minItems uniqueItems maxContains minContains maxProperties minProperties
		required dependentRequired title description default deprecated readOnly writeOnly examples
		format contentEncoding contentMediaType contentSchema
		discriminator xml externalDocs example`) {
		schemaKeywords[k] = true
	}
}

func loadOpenAPI(t *testing.T) libopenapi.Document {
	t.Helper()
	b, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := datamodel.NewDocumentConfiguration()
	cfg.BasePath = "../../docs" // event.schema.json
	cfg.AllowFileReferences = true
	doc, err := libopenapi.NewDocumentWithConfiguration(b, cfg)
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	return doc
}
