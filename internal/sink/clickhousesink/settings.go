package clickhousesink

import (
	"net/url"
	"regexp"
	"time"

	"github.com/sluicehq/sluice/internal/sink"
)

// Type is the delivery type, and the key of its settings.
const Type = "clickhouse"

// Defaults.
const (
	DefaultTable   = "sluice_events"
	DefaultTimeout = 10 * time.Second
)

// Destination is the clickhouse type: batches inserted into a table.
func Destination() sink.Destination {
	return sink.Destination{Type: Type, Section: Type, New: func() sink.Settings { return &Settings{} },
		MaxBatchSize: 1000, BatchTimeout: time.Second}
}

// Settings are a clickhouse hook's. Password is write-only.
type Settings struct {
	// URL is the HTTP interface: http://host:8123, https://host:8443.
	URL      string `json:"url" yaml:"url"`
	Database string `json:"database,omitempty" yaml:"database"` // default
	Table    string `json:"table,omitempty" yaml:"table"`       // sluice_events
	Username string `json:"username,omitempty" yaml:"username"`
	Password string `json:"password,omitempty" yaml:"password"`
	// CAFile is a PEM file of the CAs of the server's certificate (an
	// https URL; default the system's roots).
	CAFile string `json:"ca_file,omitempty" yaml:"ca_file"`
	// CreateTable (default true) creates the table (Schema) when it is
	// missing.
	CreateTable *bool         `json:"create_table,omitempty" yaml:"create_table"`
	Timeout     sink.Duration `json:"timeout" yaml:"timeout"`
}

var _ sink.Settings = (*Settings)(nil)

func (s *Settings) Defaults() {
	if s.Database == "" {
		s.Database = "default"
	}
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

// identifier is a database or table name sluice writes without escaping.
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

func (s *Settings) Check(p *sink.Problems) {
	if u := p.URL("url", s.URL, "set username and password"); u != nil && u.Path != "" && u.Path != "/" {
		p.Add("url", "the server's address only (http://host:8123), without a path")
	}
	if !identifier.MatchString(s.Database) {
		p.Add("database", "letters, digits and underscores, not starting with a digit")
	}
	if !identifier.MatchString(s.Table) {
		p.Add("table", "letters, digits and underscores, not starting with a digit")
	}
	p.Text("username", s.Username, false, sink.MaxCredential)
	p.Text("password", s.Password, false, sink.MaxCredential)
	if u, err := url.Parse(s.URL); err == nil && s.CAFile != "" {
		if u.Scheme != "https" {
			p.Add("ca_file", "only with an https:// URL")
		} else if _, err := sink.TLSConfig(true, s.CAFile, ""); err != nil {
			p.Add("ca_file", "%v", err)
		}
	}
	p.Duration("timeout", s.Timeout, time.Millisecond, 10*time.Minute)
}

func (s *Settings) Secrets() []sink.Secret {
	return []sink.Secret{{Name: "password", Value: &s.Password}}
}

// Needs nothing: each row is made from its message.
func (s *Settings) Needs() sink.Needs { return sink.Needs{} }

func (s *Settings) AttemptTimeout() time.Duration { return time.Duration(s.Timeout) }

func (s *Settings) NewSink(env sink.Env) (sink.Sink, error) {
	cfg := Config{URL: s.URL, Database: s.Database, Table: s.Table, Username: s.Username, Password: s.Password,
		CreateTable: s.CreateTable == nil || *s.CreateTable, Timeout: time.Duration(s.Timeout), Guard: env.Guard}
	if u, err := url.Parse(s.URL); err == nil && u.Scheme == "https" {
		tc, err := sink.TLSConfig(true, s.CAFile, u.Hostname())
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	return New(cfg)
}
