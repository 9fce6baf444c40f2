package bigquerysink

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/url"
	"regexp"
	"time"

	"github.com/sluicehq/sluice/internal/sink"
)

// Type is the delivery type, and the key of its settings.
const Type = "bigquery"

// Defaults and bounds.
const (
	DefaultTable   = "sluice_events"
	DefaultTimeout = 30 * time.Second
	// MaxBatchSize: BigQuery recommends at most 500 rows per insertAll.
	MaxBatchSize = 500
)

// Destination is the bigquery type: rows streamed into a table.
func Destination() sink.Destination {
	return sink.Destination{Type: Type, Section: Type, New: func() sink.Settings { return &Settings{} },
		MaxBatchSize: MaxBatchSize, BatchTimeout: time.Second}
}

// Settings are a bigquery hook's. Credentials are write-only.
type Settings struct {
	Project string `json:"project" yaml:"project"`
	Dataset string `json:"dataset" yaml:"dataset"`
	Table   string `json:"table,omitempty" yaml:"table"` // sluice_events
	// Credentials is a service account's JSON key (its role on the
	// dataset: BigQuery Data Editor).
	Credentials string `json:"credentials,omitempty" yaml:"credentials"`
	// Endpoint overrides Google's API: an emulator's or a test server's
	// http(s)://host:port.
	Endpoint    string        `json:"endpoint,omitempty" yaml:"endpoint"`
	CreateTable *bool         `json:"create_table,omitempty" yaml:"create_table"`
	Timeout     sink.Duration `json:"timeout" yaml:"timeout"`
}

var _ sink.Settings = (*Settings)(nil)

func (s *Settings) Defaults() {
	if s.Table == "" {
		s.Table = DefaultTable
	}
	if s.CreateTable == nil {
		t := true
		s.CreateTable = &t
	}
	if s.Timeout == 0 {
		s.Timeout = sink.Duration(DefaultTimeout)
	}
}

var (
	projectID = regexp.MustCompile(`^([a-z][a-z0-9.-]*:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	datasetID = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	tableID   = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
)

func (s *Settings) Check(p *sink.Problems) {
	if !projectID.MatchString(s.Project) {
		p.Add("project", "required: a Google Cloud project id (6 to 30 of a-z, 0-9, '-', a letter first)")
	}
	if !datasetID.MatchString(s.Dataset) || len(s.Dataset) > 1024 {
		p.Add("dataset", "required: letters, digits and underscores")
	}
	if !tableID.MatchString(s.Table) || len(s.Table) > 1024 {
		p.Add("table", "letters, digits and underscores")
	}
	if s.Endpoint != "" {
		p.URL("endpoint", s.Endpoint, "the credentials are credentials")
	}
	switch {
	case s.Credentials == "" && s.Endpoint == "":
		p.Add("credentials", "required: a service account's JSON key")
	case s.Credentials != "":
		if problem := checkKey(s.Credentials); problem != "" {
			p.Add("credentials", "%s", problem)
		}
	}
	p.Duration("timeout", s.Timeout, time.Millisecond, 10*time.Minute)
}

// checkKey is the problem of a service account key ("" if none); it
// never quotes the key.
func checkKey(js string) string {
	if len(js) > 64<<10 {
		return "a service account key is a few kilobytes of JSON"
	}
	var k struct {
		Type        string `json:"type"`
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
		TokenURI    string `json:"token_uri"`
	}
	if err := json.Unmarshal([]byte(js), &k); err != nil {
		return "not a service account's JSON key (not JSON)"
	}
	switch {
	case k.Type != "service_account":
		return `not a service account's JSON key: "type" is not "service_account"`
	case k.ClientEmail == "":
		return "the key has no client_email"
	}
	block, _ := pem.Decode([]byte(k.PrivateKey))
	if block == nil {
		return "the key's private_key is not PEM"
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
			return "the key's private_key is not an RSA private key"
		}
	}
	if k.TokenURI != "" {
		if u, err := url.Parse(k.TokenURI); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return "the key's token_uri is not an http(s) URL"
		}
	}
	return ""
}

func (s *Settings) Secrets() []sink.Secret {
	return []sink.Secret{{Name: "credentials", Value: &s.Credentials}}
}

// Needs nothing: each row is made from its message.
func (s *Settings) Needs() sink.Needs { return sink.Needs{} }

func (s *Settings) AttemptTimeout() time.Duration { return time.Duration(s.Timeout) }

func (s *Settings) NewSink(env sink.Env) (sink.Sink, error) {
	return New(Config{Project: s.Project, Dataset: s.Dataset, Table: s.Table, Credentials: []byte(s.Credentials), Endpoint: s.Endpoint,
		CreateTable: s.CreateTable == nil || *s.CreateTable, Timeout: time.Duration(s.Timeout), Guard: env.Guard})
}
