package bigquerysink_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// bqServer is BigQuery's REST API on loopback, as much of it as the
// official client uses to stream rows: the OAuth token of a service
// account (a JWT bearer grant, its signature checked with the key's
// public half), tables.get, tables.insert and tabledata.insertAll, each
// request checked field by field against the API's reference. It keeps
// the rows, drops a row whose insertId it has seen (as BigQuery does, for
// a while), and answers 403 while failing.
type bqServer struct {
	*httptest.Server
	key     *rsa.PrivateKey
	email   string
	project string

	mu         sync.Mutex
	tables     map[string]map[string]any // dataset.table → resource
	rows       map[string][]storedRow
	insertIDs  map[string]bool
	tokens     int
	calls      []string
	violations []string
	fail       bool
	invalidRow string // a value that makes insertAll refuse its row
}

type storedRow struct {
	InsertID string
	JSON     map[string]any
}

const accessToken = "ya29.loopback-token"

func newBQServer(t testing.TB) *bqServer {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s := &bqServer{key: key, email: "sluice@test-project.iam.gserviceaccount.com", project: "test-project",
		tables: map[string]map[string]any{}, rows: map[string][]storedRow{}, insertIDs: map[string]bool{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// keyJSON is the service account's JSON key, its token_uri this server.
func (s *bqServer) keyJSON() string {
	der, _ := x509.MarshalPKCS8PrivateKey(s.key)
	b, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": s.project, "private_key_id": "k1",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "client_email": s.email,
		"client_id": "1", "token_uri": s.URL + "/token",
	})
	return string(b)
}

func (s *bqServer) violate(format string, a ...any) {
	s.violations = append(s.violations, fmt.Sprintf(format, a...))
}

func (s *bqServer) noViolations(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.violations) > 0 {
		t.Fatalf("requests that break the API's rules:\n%s", strings.Join(s.violations, "\n"))
	}
}

func apiError(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg,
		"errors": []map[string]string{{"reason": reason, "message": msg, "domain": "global"}}}})
}

var (
	tablePath    = regexp.MustCompile(`^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)$`)
	tablesPath   = regexp.MustCompile(`^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables$`)
	insertAllURL = regexp.MustCompile(`^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)/insertAll$`)
)

func (s *bqServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, r.Method+" "+r.URL.Path)
	if r.URL.Path == "/token" {
		s.token(w, r, body)
		return
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+accessToken {
		s.violate("%s %s: Authorization %q", r.Method, r.URL.Path, got)
		apiError(w, 401, "authError", "Request had invalid authentication credentials.")
		return
	}
	if s.fail {
		apiError(w, 403, "accessDenied", "Access Denied: Table: the service account lost its role")
		return
	}
	switch m := tablePath.FindStringSubmatch(r.URL.Path); {
	case m != nil && r.Method == http.MethodGet:
		t, ok := s.tables[m[2]+"."+m[3]]
		if m[1] != s.project || !ok {
			apiError(w, 404, "notFound", fmt.Sprintf("Not found: Table %s:%s.%s", m[1], m[2], m[3]))
			return
		}
		json.NewEncoder(w).Encode(t)
		return
	}
	if m := tablesPath.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodPost {
		s.createTable(w, m[1], m[2], body)
		return
	}
	if m := insertAllURL.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodPost {
		s.insertAll(w, m[2]+"."+m[3], body)
		return
	}
	s.violate("unexpected call %s %s", r.Method, r.URL.Path)
	apiError(w, 404, "notFound", "no such method")
}

// token checks the JWT bearer grant (RFC 7523) a service account makes.
func (s *bqServer) token(w http.ResponseWriter, r *http.Request, body []byte) {
	form, err := url.ParseQuery(string(body))
	if err != nil || r.Method != http.MethodPost || form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" ||
		r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		s.violate("token: %s %s grant_type %q", r.Method, r.Header.Get("Content-Type"), form.Get("grant_type"))
		http.Error(w, `{"error":"unsupported_grant_type"}`, 400)
		return
	}
	parts := strings.Split(form.Get("assertion"), ".")
	if len(parts) != 3 {
		s.violate("token: the assertion is not a JWT")
		http.Error(w, `{"error":"invalid_grant"}`, 400)
		return
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	h := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&s.key.PublicKey, crypto.SHA256, h[:], sig); err != nil {
		s.violate("token: the JWT's signature: %v", err)
		http.Error(w, `{"error":"invalid_grant"}`, 400)
		return
	}
	var head, claims map[string]any
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	json.Unmarshal(hb, &head)
	json.Unmarshal(cb, &claims)
	iat, _ := claims["iat"].(float64)
	exp, _ := claims["exp"].(float64)
	if head["alg"] != "RS256" || claims["iss"] != s.email || claims["aud"] != s.URL+"/token" ||
		!strings.Contains(fmt.Sprint(claims["scope"]), "https://www.googleapis.com/auth/bigquery") || exp-iat > 3600 || exp < float64(time.Now().Unix()) {
		s.violate("token: header %v claims %v", head, claims)
		http.Error(w, `{"error":"invalid_grant"}`, 400)
		return
	}
	s.tokens++
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": accessToken, "token_type": "Bearer", "expires_in": 3600})
}

// wantSchema is the documented schema, as the API writes it.
var wantSchema = []map[string]any{
	{"name": "id", "type": "STRING", "mode": "REQUIRED"}, {"name": "project_id", "type": "INTEGER", "mode": "REQUIRED"},
	{"name": "key", "type": "STRING", "mode": "REQUIRED"}, {"name": "time", "type": "TIMESTAMP", "mode": "REQUIRED"},
	{"name": "received_at", "type": "TIMESTAMP"}, {"name": "channel", "type": "STRING"}, {"name": "service", "type": "STRING"},
	{"name": "name", "type": "STRING"}, {"name": "dialect", "type": "STRING"}, {"name": "uid", "type": "STRING"},
	{"name": "identities", "type": "JSON"}, {"name": "data", "type": "JSON"}, {"name": "custom_data", "type": "JSON"},
	{"name": "batch_id", "type": "STRING"}, {"name": "is_test", "type": "BOOLEAN"},
}

func (s *bqServer) createTable(w http.ResponseWriter, project, dataset string, body []byte) {
	var t struct {
		TableReference struct{ ProjectID, DatasetID, TableID string } `json:"tableReference"`
		Schema         struct {
			Fields []map[string]any `json:"fields"`
		} `json:"schema"`
		TimePartitioning map[string]any `json:"timePartitioning"`
		Clustering       struct {
			Fields []string `json:"fields"`
		} `json:"clustering"`
	}
	if err := json.Unmarshal(body, &t); err != nil {
		s.violate("tables.insert: %v", err)
	}
	ref := t.TableReference
	if ref.ProjectID != project || ref.DatasetID != dataset || ref.TableID == "" {
		s.violate("tables.insert: tableReference %+v under %s.%s", ref, project, dataset)
	}
	if len(t.Schema.Fields) != len(wantSchema) {
		s.violate("tables.insert: %d fields, want %d", len(t.Schema.Fields), len(wantSchema))
	}
	for i, f := range t.Schema.Fields {
		if i >= len(wantSchema) {
			break
		}
		w := wantSchema[i]
		mode := f["mode"]
		if mode == "NULLABLE" || mode == "" {
			mode = nil
		}
		if f["name"] != w["name"] || f["type"] != w["type"] || mode != w["mode"] {
			s.violate("tables.insert: field %d %v, want %v", i, f, w)
		}
	}
	if t.TimePartitioning["type"] != "DAY" || t.TimePartitioning["field"] != "time" || strings.Join(t.Clustering.Fields, ",") != "project_id,key" {
		s.violate("tables.insert: partitioning %v clustering %v", t.TimePartitioning, t.Clustering.Fields)
	}
	k := dataset + "." + ref.TableID
	if _, ok := s.tables[k]; ok {
		apiError(w, 409, "duplicate", "Already Exists: Table "+project+":"+k)
		return
	}
	var res map[string]any
	json.Unmarshal(body, &res)
	res["kind"], res["id"] = "bigquery#table", project+":"+k
	s.tables[k] = res
	json.NewEncoder(w).Encode(res)
}

// insertAll checks each row against the schema: every required column,
// no unknown one, each value of the JSON type its column takes.
func (s *bqServer) insertAll(w http.ResponseWriter, table string, body []byte) {
	if _, ok := s.tables[table]; !ok {
		apiError(w, 404, "notFound", "Not found: Table "+s.project+":"+table)
		return
	}
	var req struct {
		Kind                string `json:"kind"`
		SkipInvalidRows     bool   `json:"skipInvalidRows"`
		IgnoreUnknownValues bool   `json:"ignoreUnknownValues"`
		Rows                []struct {
			InsertID string         `json:"insertId"`
			JSON     map[string]any `json:"json"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		s.violate("insertAll: %v", err)
	}
	if req.SkipInvalidRows || req.IgnoreUnknownValues || len(req.Rows) == 0 || len(req.Rows) > 50000 {
		s.violate("insertAll: skipInvalidRows %v ignoreUnknownValues %v, %d rows", req.SkipInvalidRows, req.IgnoreUnknownValues, len(req.Rows))
	}
	var insertErrors []map[string]any
	for i, r := range req.Rows {
		if r.InsertID == "" || r.InsertID != r.JSON["id"] && !(r.JSON["is_test"] == true && strings.HasSuffix(r.InsertID, "-"+fmt.Sprint(r.JSON["id"]))) {
			s.violate("insertAll: row %d insertId %q, id %v", i, r.InsertID, r.JSON["id"])
		}
		for _, f := range wantSchema {
			v, ok := r.JSON[f["name"].(string)]
			if !ok {
				if f["mode"] == "REQUIRED" {
					s.violate("insertAll: row %d lacks %s", i, f["name"])
				}
				continue
			}
			if problem := valueProblem(f["type"].(string), v); problem != "" {
				s.violate("insertAll: row %d, %s: %s", i, f["name"], problem)
			}
		}
		for k := range r.JSON {
			known := false
			for _, f := range wantSchema {
				known = known || f["name"] == k
			}
			if !known {
				s.violate("insertAll: row %d: unknown column %s", i, k)
			}
		}
		if s.invalidRow != "" && strings.Contains(fmt.Sprint(r.JSON["data"]), s.invalidRow) {
			insertErrors = append(insertErrors, map[string]any{"index": i, "errors": []map[string]string{{"reason": "invalid", "location": "data", "message": "JSON parsing error in row starting at position 0"}}})
		}
	}
	if insertErrors != nil { // nothing of the request is stored
		for i := range req.Rows {
			if !containsIndex(insertErrors, i) {
				insertErrors = append(insertErrors, map[string]any{"index": i, "errors": []map[string]string{{"reason": "stopped", "message": ""}}})
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"kind": "bigquery#tableDataInsertAllResponse", "insertErrors": insertErrors})
		return
	}
	for _, r := range req.Rows {
		if s.insertIDs[table+"/"+r.InsertID] {
			continue // best-effort deduplication
		}
		s.insertIDs[table+"/"+r.InsertID] = true
		s.rows[table] = append(s.rows[table], storedRow{InsertID: r.InsertID, JSON: r.JSON})
	}
	json.NewEncoder(w).Encode(map[string]any{"kind": "bigquery#tableDataInsertAllResponse"})
}

func containsIndex(errs []map[string]any, i int) bool {
	for _, e := range errs {
		if e["index"] == i {
			return true
		}
	}
	return false
}

// valueProblem checks a JSON value against a column type, as insertAll
// reads it.
func valueProblem(typ string, v any) string {
	if v == nil {
		return ""
	}
	switch typ {
	case "STRING":
		if _, ok := v.(string); !ok {
			return fmt.Sprintf("%T for a STRING", v)
		}
	case "INTEGER":
		f, ok := v.(float64)
		if !ok || f != float64(int64(f)) {
			return fmt.Sprintf("%v for an INTEGER", v)
		}
	case "BOOLEAN":
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("%T for a BOOLEAN", v)
		}
	case "TIMESTAMP":
		s, ok := v.(string)
		if _, err := time.Parse(time.RFC3339Nano, s); !ok || err != nil {
			return fmt.Sprintf("%v is not an RFC 3339 TIMESTAMP", v)
		}
	case "JSON":
		s, ok := v.(string)
		if !ok || !json.Valid([]byte(s)) {
			return fmt.Sprintf("%v is not a string of JSON", v)
		}
	}
	return ""
}

func (s *bqServer) stored(table string) []storedRow {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]storedRow(nil), s.rows[table]...)
}
