package amqpsink

import (
	"time"

	"github.com/sluicehq/sluice/internal/sink"
)

// The delivery types: to a queue (through the default exchange) or to an
// exchange with a routing key per message.
const (
	TypeQueue    = "rabbitmq_queue"
	TypeExchange = "rabbitmq_exchange"
)

// DefaultRoutingKey is an exchange hook's routing key: the seed's
// <db_id>.<event_type>.
const DefaultRoutingKey = "{{project_id}}.{{event.key}}"

// Bounds and defaults of the settings.
const (
	MaxName        = 255 // a queue, exchange, vhost or user name (an AMQP short string)
	DefaultTimeout = 10 * time.Second
	// Broker hooks publish each event as it comes: a short batch
	// timeout, and larger batches for the confirms to pipeline.
	DefaultBatchTimeout = 10 * time.Millisecond
	DefaultBatchSize    = 500
)

// QueueDestination is the rabbitmq_queue type.
func QueueDestination() sink.Destination {
	return sink.Destination{Type: TypeQueue, Section: "rabbitmq", New: func() sink.Settings { return &Settings{} },
		MaxBatchSize: DefaultBatchSize, BatchTimeout: DefaultBatchTimeout}
}

// ExchangeDestination is the rabbitmq_exchange type.
func ExchangeDestination() sink.Destination {
	return sink.Destination{Type: TypeExchange, Section: "rabbitmq", New: func() sink.Settings { return &Settings{exchange: true} },
		MaxBatchSize: DefaultBatchSize, BatchTimeout: DefaultBatchTimeout}
}

// Settings are where a rabbitmq_queue or rabbitmq_exchange hook
// publishes. Password is write-only.
type Settings struct {
	Host     string `json:"host" yaml:"host"`
	Port     int    `json:"port,omitempty" yaml:"port"` // 5672, 5671 with tls
	Username string `json:"username" yaml:"username"`
	Password string `json:"password,omitempty" yaml:"password"`
	VHost    string `json:"vhost,omitempty" yaml:"vhost"` // "/"
	TLS      bool   `json:"tls,omitempty" yaml:"tls"`
	// CAFile is a PEM file of the CAs that sign the broker's certificate
	// (with tls; default: the system's roots).
	CAFile string `json:"ca_file,omitempty" yaml:"ca_file"`
	// Queue, for rabbitmq_queue: declared durable when missing.
	Queue string `json:"queue,omitempty" yaml:"queue"`
	// Exchange, ExchangeType (direct or topic), Durable (default true) and
	// AutoDelete, for rabbitmq_exchange; RoutingKey is a template
	// (default {{project_id}}.{{event.key}}).
	Exchange     string        `json:"exchange,omitempty" yaml:"exchange"`
	ExchangeType string        `json:"exchange_type,omitempty" yaml:"exchange_type"`
	Durable      *bool         `json:"durable,omitempty" yaml:"durable"`
	AutoDelete   bool          `json:"auto_delete,omitempty" yaml:"auto_delete"`
	RoutingKey   string        `json:"routing_key,omitempty" yaml:"routing_key"`
	Timeout      sink.Duration `json:"timeout" yaml:"timeout"` // connect and confirm, 10s

	exchange bool // the type: rabbitmq_exchange
}

var _ sink.Settings = (*Settings)(nil)

func (s *Settings) Defaults() {
	if s.Timeout == 0 {
		s.Timeout = sink.Duration(DefaultTimeout)
	}
	if s.VHost == "" {
		s.VHost = "/"
	}
	if s.exchange {
		if s.ExchangeType == "" {
			s.ExchangeType = "direct"
		}
		if s.Durable == nil {
			t := true
			s.Durable = &t
		}
		if s.RoutingKey == "" {
			s.RoutingKey = DefaultRoutingKey
		}
	}
}

func (s *Settings) Check(p *sink.Problems) {
	if !sink.ValidHost(s.Host) {
		p.Add("host", "a host name or an IP address")
	}
	if s.Port < 0 || s.Port > 65535 {
		p.Add("port", "1 to 65535")
	}
	p.Text("username", s.Username, false, MaxName)
	p.Text("password", s.Password, false, sink.MaxCredential)
	p.Text("vhost", s.VHost, false, MaxName)
	p.Duration("timeout", s.Timeout, time.Millisecond, 10*time.Minute)
	if _, err := sink.TLSConfig(s.TLS, s.CAFile, s.Host); err != nil {
		p.Add("ca_file", "%v", err)
	}
	if !s.exchange {
		switch {
		case s.Queue == "" || s.Exchange != "":
			p.Add("queue", "required for rabbitmq_queue (and no exchange)")
		default:
			p.Text("queue", s.Queue, true, MaxName)
		}
		return
	}
	switch {
	case s.Exchange == "" || s.Queue != "":
		p.Add("exchange", "required for rabbitmq_exchange (and no queue)")
	default:
		p.Text("exchange", s.Exchange, true, MaxName)
	}
	if s.ExchangeType != "direct" && s.ExchangeType != "topic" {
		p.Add("exchange_type", "direct or topic")
	}
}

func (s *Settings) Secrets() []sink.Secret {
	return []sink.Secret{{Name: "password", Value: &s.Password}}
}

// Needs the event id, key and project of each message; an exchange its
// routing key.
func (s *Settings) Needs() sink.Needs {
	n := sink.Needs{Meta: true}
	if s.exchange {
		n.Route, n.RoutePath = s.RoutingKey, "routing_key"
	}
	return n
}

func (s *Settings) AttemptTimeout() time.Duration { return time.Duration(s.Timeout) }

func (s *Settings) NewSink(env sink.Env) (sink.Sink, error) {
	cfg := Config{Host: s.Host, Port: s.Port, Username: s.Username, Password: s.Password, VHost: s.VHost, Timeout: time.Duration(s.Timeout), Guard: env.Guard}
	if s.exchange {
		cfg.Exchange, cfg.ExchangeType, cfg.AutoDelete = s.Exchange, s.ExchangeType, s.AutoDelete
		cfg.Durable = s.Durable == nil || *s.Durable
	} else {
		cfg.Queue = s.Queue
	}
	var err error
	if cfg.TLS, err = sink.TLSConfig(s.TLS, s.CAFile, s.Host); err != nil {
		return nil, err
	}
	return New(cfg)
}
