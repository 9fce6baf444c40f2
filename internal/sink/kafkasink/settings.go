package kafkasink

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/internal/sink"
)

// Type is the delivery type, and the key of its settings.
const Type = "kafka"

// Bounds and defaults of the settings.
const (
	MaxBrokers     = 100
	DefaultTimeout = 10 * time.Second
)

// Destination is the kafka type: one record per event.
func Destination() sink.Destination {
	return sink.Destination{Type: Type, Section: "kafka", New: func() sink.Settings { return &Settings{} },
		MaxBatchSize: 500, BatchTimeout: 10 * time.Millisecond}
}

// Settings are where a kafka hook produces. Password is write-only.
type Settings struct {
	Brokers []string `json:"brokers" yaml:"brokers"`
	Topic   string   `json:"topic" yaml:"topic"`
	// Key is the record key template; empty is the user's resolved
	// profile id, else the event id, so that one user's events keep
	// their order within a partition.
	Key         string        `json:"key,omitempty" yaml:"key"`
	Compression string        `json:"compression,omitempty" yaml:"compression"` // snappy (default), lz4, zstd, none
	SASL        string        `json:"sasl,omitempty" yaml:"sasl"`               // plain, scram-sha-256, scram-sha-512
	Username    string        `json:"username,omitempty" yaml:"username"`
	Password    string        `json:"password,omitempty" yaml:"password"`
	TLS         bool          `json:"tls,omitempty" yaml:"tls"`
	CAFile      string        `json:"ca_file,omitempty" yaml:"ca_file"` // PEM CAs of the brokers' certificates (with tls)
	Timeout     sink.Duration `json:"timeout" yaml:"timeout"`           // delivery timeout, 10s
}

var _ sink.Settings = (*Settings)(nil)

func (s *Settings) Defaults() {
	if s.Timeout == 0 {
		s.Timeout = sink.Duration(DefaultTimeout)
	}
	if s.Compression == "" {
		s.Compression = "snappy"
	}
}

// topicName is a legal Kafka topic name.
var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

func (s *Settings) Check(p *sink.Problems) {
	switch {
	case len(s.Brokers) == 0:
		p.Add("brokers", "at least one host:port")
	case len(s.Brokers) > MaxBrokers:
		p.Add("brokers", "at most %d", MaxBrokers)
	}
	for i, b := range s.Brokers {
		host, port, err := net.SplitHostPort(b)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil || n < 1 || n > 65535 || !sink.ValidHost(host) {
			p.Add(fmt.Sprintf("brokers[%d]", i), "%q is not host:port (port 1 to 65535)", b)
		}
	}
	if !topicName.MatchString(s.Topic) || s.Topic == "." || s.Topic == ".." {
		p.Add("topic", "required: 1 to 249 of a-z A-Z 0-9 . _ -")
	}
	if _, ok := Compressions[s.Compression]; !ok {
		p.Add("compression", "none, lz4, zstd or snappy")
	}
	if !SASLs[s.SASL] {
		p.Add("sasl", "plain, scram-sha-256 or scram-sha-512")
	}
	if s.SASL != "" && s.Username == "" {
		p.Add("username", "required with sasl")
	}
	p.Text("username", s.Username, false, sink.MaxCredential)
	p.Text("password", s.Password, false, sink.MaxCredential)
	p.Duration("timeout", s.Timeout, time.Millisecond, 10*time.Minute)
	if _, err := sink.TLSConfig(s.TLS, s.CAFile, ""); err != nil {
		p.Add("ca_file", "%v", err)
	}
}

func (s *Settings) Secrets() []sink.Secret {
	return []sink.Secret{{Name: "password", Value: &s.Password}}
}

// Needs the record key: the key template, else the resolved profile.
func (s *Settings) Needs() sink.Needs {
	return sink.Needs{Meta: true, Route: s.Key, RoutePath: "key", RouteByProfile: true}
}

func (s *Settings) AttemptTimeout() time.Duration { return time.Duration(s.Timeout) }

func (s *Settings) NewSink(env sink.Env) (sink.Sink, error) {
	cfg := Config{Brokers: s.Brokers, Topic: s.Topic, Compression: s.Compression, SASL: s.SASL, Username: s.Username,
		Password: s.Password, Timeout: time.Duration(s.Timeout), Guard: env.Guard}
	var err error
	if cfg.TLS, err = sink.TLSConfig(s.TLS, s.CAFile, ""); err != nil {
		return nil, err
	}
	return New(cfg)
}
