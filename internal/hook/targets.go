package hook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/amqpsink"
	"github.com/sluicehq/sluice/internal/sink/httpsink"
	"github.com/sluicehq/sluice/internal/sink/kafkasink"
)

// Delivery types.
const (
	TypeHTTP             = "http"
	TypeRabbitMQQueue    = "rabbitmq_queue"
	TypeRabbitMQExchange = "rabbitmq_exchange"
	TypeKafka            = "kafka"
)

// DefaultRoutingKey is an exchange hook's routing key: the seed's
// <db_id>.<event_type>.
const DefaultRoutingKey = "{{project_id}}.{{event.key}}"

// Broker hooks publish each event as it comes: a short batch timeout, and
// larger batches for the confirms to pipeline.
const (
	DefaultBrokerBatchTimeout = 10 * time.Millisecond
	DefaultBrokerBatchSize    = 500
)

// RabbitMQTarget is where a rabbitmq_queue or rabbitmq_exchange hook
// publishes. Password is write-only.
type RabbitMQTarget struct {
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
	Exchange     string   `json:"exchange,omitempty" yaml:"exchange"`
	ExchangeType string   `json:"exchange_type,omitempty" yaml:"exchange_type"`
	Durable      *bool    `json:"durable,omitempty" yaml:"durable"`
	AutoDelete   bool     `json:"auto_delete,omitempty" yaml:"auto_delete"`
	RoutingKey   string   `json:"routing_key,omitempty" yaml:"routing_key"`
	Timeout      Duration `json:"timeout" yaml:"timeout"` // connect and confirm, 10s
}

// KafkaTarget is where a kafka hook produces. Password is write-only.
type KafkaTarget struct {
	Brokers []string `json:"brokers" yaml:"brokers"`
	Topic   string   `json:"topic" yaml:"topic"`
	// Key is the record key template; empty is the user's resolved
	// profile id, else the event id, so that one user's events keep
	// their order within a partition.
	Key         string   `json:"key,omitempty" yaml:"key"`
	Compression string   `json:"compression,omitempty" yaml:"compression"` // snappy (default), lz4, zstd, none
	SASL        string   `json:"sasl,omitempty" yaml:"sasl"`               // plain, scram-sha-256, scram-sha-512
	Username    string   `json:"username,omitempty" yaml:"username"`
	Password    string   `json:"password,omitempty" yaml:"password"`
	TLS         bool     `json:"tls,omitempty" yaml:"tls"`
	CAFile      string   `json:"ca_file,omitempty" yaml:"ca_file"` // PEM CAs of the brokers' certificates (with tls)
	Timeout     Duration `json:"timeout" yaml:"timeout"`           // delivery timeout, 10s
}

// withoutSecrets is h with its write-only fields emptied (copies, never
// the shared targets).
func (h Hook) withoutSecrets() Hook {
	if h.HTTP != nil {
		t := *h.HTTP
		if t.Auth != nil {
			a := *t.Auth
			a.Password, a.Token = "", ""
			t.Auth = &a
		}
		h.HTTP = &t
	}
	if h.RabbitMQ != nil {
		t := *h.RabbitMQ
		t.Password = ""
		h.RabbitMQ = &t
	}
	if h.Kafka != nil {
		t := *h.Kafka
		t.Password = ""
		h.Kafka = &t
	}
	return h
}

// withSecrets is h with the stored secrets put back (for a clone).
func (h Hook) withSecrets(s secrets) Hook {
	h = h.withoutSecrets()
	switch {
	case h.HTTP != nil && h.HTTP.Auth != nil:
		h.HTTP.Auth.Password, h.HTTP.Auth.Token = s.Password, s.Token
	case h.RabbitMQ != nil:
		h.RabbitMQ.Password = s.Password
	case h.Kafka != nil:
		h.Kafka.Password = s.Password
	}
	return h
}

// givenSecrets are the write-only values sent with h ("" when not sent).
func (h Hook) givenSecrets() (password, token string) {
	switch {
	case h.HTTP != nil && h.HTTP.Auth != nil:
		return h.HTTP.Auth.Password, h.HTTP.Auth.Token
	case h.RabbitMQ != nil:
		return h.RabbitMQ.Password, ""
	case h.Kafka != nil:
		return h.Kafka.Password, ""
	}
	return "", ""
}

// brokerDefaults fills the settings of the broker targets.
func (h *Hook) brokerDefaults() {
	if r := h.RabbitMQ; r != nil {
		if r.Timeout == 0 {
			r.Timeout = Duration(DefaultTimeout)
		}
		if r.VHost == "" {
			r.VHost = "/"
		}
		if h.Type == TypeRabbitMQExchange {
			if r.ExchangeType == "" {
				r.ExchangeType = "direct"
			}
			if r.Durable == nil {
				t := true
				r.Durable = &t
			}
			if r.RoutingKey == "" {
				r.RoutingKey = DefaultRoutingKey
			}
		}
	}
	if k := h.Kafka; k != nil {
		if k.Timeout == 0 {
			k.Timeout = Duration(DefaultTimeout)
		}
		if k.Compression == "" {
			k.Compression = "snappy"
		}
	}
}

// compileTarget validates the broker targets; the route template goes to c.
func (h *Hook) compileTarget(c *compiled, p *problems) {
	switch h.Type {
	case TypeRabbitMQQueue, TypeRabbitMQExchange:
		r := h.RabbitMQ
		if r == nil {
			p.add("rabbitmq", "required for type %s (host, port, username, password, vhost, queue or exchange)", h.Type)
			return
		}
		if !validHost(r.Host) {
			p.add("rabbitmq.host", "a host name or an IP address")
		}
		if r.Port < 0 || r.Port > 65535 {
			p.add("rabbitmq.port", "1 to 65535")
		}
		checkText(p, "rabbitmq.username", r.Username, false, MaxBrokerName)
		checkText(p, "rabbitmq.password", r.Password, false, MaxCredential)
		checkText(p, "rabbitmq.vhost", r.VHost, false, MaxBrokerName)
		checkDuration(p, "rabbitmq.timeout", r.Timeout, time.Millisecond, 10*time.Minute)
		if _, err := tlsConfig(r.TLS, r.CAFile, r.Host); err != nil {
			p.add("rabbitmq.ca_file", "%v", err)
		}
		if h.Type == TypeRabbitMQQueue {
			switch {
			case r.Queue == "" || r.Exchange != "":
				p.add("rabbitmq.queue", "required for rabbitmq_queue (and no exchange)")
			default:
				checkText(p, "rabbitmq.queue", r.Queue, true, MaxBrokerName)
			}
			return
		}
		switch {
		case r.Exchange == "" || r.Queue != "":
			p.add("rabbitmq.exchange", "required for rabbitmq_exchange (and no queue)")
		default:
			checkText(p, "rabbitmq.exchange", r.Exchange, true, MaxBrokerName)
		}
		if r.ExchangeType != "direct" && r.ExchangeType != "topic" {
			p.add("rabbitmq.exchange_type", "direct or topic")
		}
		if f, ok := checkTemplate(p, "rabbitmq.routing_key", "routing_key", r.RoutingKey); ok {
			c.route = &f
		}
	case TypeKafka:
		k := h.Kafka
		if k == nil {
			p.add("kafka", "required for type kafka (brokers, topic, key, compression, sasl, tls)")
			return
		}
		switch {
		case len(k.Brokers) == 0:
			p.add("kafka.brokers", "at least one host:port")
		case len(k.Brokers) > MaxBrokers:
			p.add("kafka.brokers", "at most %d", MaxBrokers)
		}
		for i, b := range k.Brokers {
			host, port, err := net.SplitHostPort(b)
			n, perr := strconv.Atoi(port)
			if err != nil || perr != nil || n < 1 || n > 65535 || !validHost(host) {
				p.add(fmt.Sprintf("kafka.brokers[%d]", i), "%q is not host:port (port 1 to 65535)", b)
			}
		}
		if !kafkaTopic.MatchString(k.Topic) || k.Topic == "." || k.Topic == ".." {
			p.add("kafka.topic", "required: 1 to 249 of a-z A-Z 0-9 . _ -")
		}
		if _, ok := kafkasink.Compressions[k.Compression]; !ok {
			p.add("kafka.compression", "none, lz4, zstd or snappy")
		}
		if !kafkasink.SASLs[k.SASL] {
			p.add("kafka.sasl", "plain, scram-sha-256 or scram-sha-512")
		}
		if k.SASL != "" && k.Username == "" {
			p.add("kafka.username", "required with sasl")
		}
		checkText(p, "kafka.username", k.Username, false, MaxCredential)
		checkText(p, "kafka.password", k.Password, false, MaxCredential)
		checkDuration(p, "kafka.timeout", k.Timeout, time.Millisecond, 10*time.Minute)
		if _, err := tlsConfig(k.TLS, k.CAFile, ""); err != nil {
			p.add("kafka.ca_file", "%v", err)
		}
		if k.Key != "" {
			if f, ok := checkTemplate(p, "kafka.key", "key", k.Key); ok {
				c.route = &f
			}
		}
	default:
		p.add("type", "http, rabbitmq_queue, rabbitmq_exchange or kafka")
	}
}

// tlsConfig is a broker connection's TLS: nil without tls; the CAs of
// caFile, else the system's roots.
func tlsConfig(enabled bool, caFile, serverName string) (*tls.Config, error) {
	if !enabled {
		if caFile != "" {
			return nil, errors.New("set tls: true to use a CA file")
		}
		return nil, nil
	}
	c := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return c, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	c.RootCAs = pool
	return c, nil
}

// newSink builds the sink of a hook.
func (m *Manager) newSink(r *row, comp *compiled) (sink.Sink, error) {
	h := r.hook
	switch h.Type {
	case TypeRabbitMQQueue, TypeRabbitMQExchange:
		t := h.RabbitMQ
		cfg := amqpsink.Config{Host: t.Host, Port: t.Port, Username: t.Username, Password: r.secrets.Password, VHost: t.VHost,
			Queue: t.Queue, Exchange: t.Exchange, ExchangeType: t.ExchangeType, AutoDelete: t.AutoDelete,
			Timeout: time.Duration(t.Timeout), Guard: m.guard}
		if t.Durable != nil {
			cfg.Durable = *t.Durable
		}
		var err error
		if cfg.TLS, err = tlsConfig(t.TLS, t.CAFile, t.Host); err != nil {
			return nil, err
		}
		return amqpsink.New(cfg)
	case TypeKafka:
		t := h.Kafka
		cfg := kafkasink.Config{Brokers: t.Brokers, Topic: t.Topic, Compression: t.Compression, SASL: t.SASL, Username: t.Username,
			Password: r.secrets.Password, Timeout: time.Duration(t.Timeout), Guard: m.guard}
		var err error
		if cfg.TLS, err = tlsConfig(t.TLS, t.CAFile, ""); err != nil {
			return nil, err
		}
		return kafkasink.New(cfg)
	}
	sec := r.secrets.Signing
	if len(sec) > 1 && r.secrets.PreviousUntil > 0 && m.cfg.Now().UnixMilli() > r.secrets.PreviousUntil {
		sec = sec[:1]
	}
	hc := httpsink.Config{URL: h.HTTP.URL, Timeout: time.Duration(h.HTTP.Timeout), Header: h.HTTP.Headers, SuccessRegex: comp.regex,
		Secrets: sec, Guard: m.guard, Now: m.cfg.Now}
	if a := h.HTTP.Auth; a != nil {
		hc.Auth = httpsink.Auth{Type: a.Type, Username: a.Username, Password: r.secrets.Password, Token: r.secrets.Token}
	}
	return httpsink.New(hc)
}

// metaFor describes each message for the broker sinks: its event id, key,
// project and route (routing key or record key). HTTP needs none.
func (m *Manager) metaFor(ctx context.Context, h *Hook, comp *compiled, msgs [][]byte) []sink.Meta {
	if h.Type == TypeHTTP {
		return nil
	}
	out := make([]sink.Meta, len(msgs))
	var scratch []byte
	for i, msg := range msgs {
		f := gjson.GetManyBytes(msg, "id", "key", "projectId", "time")
		md := sink.Meta{EventID: f[0].String(), Key: f[1].String(), ProjectID: uint32(f[2].Uint())}
		switch {
		case comp.route != nil:
			rc := renderContext{body: msg, time: time.UnixMilli(f[3].Int())}
			if p, ok := m.projects.Get(md.ProjectID); ok {
				rc.projectName = p.Name
			}
			scratch = appendField(scratch[:0], *comp.route, &rc)
			md.Route = string(scratch)
		default: // kafka: the user's resolved id, else the event id
			md.Route = md.EventID
			if p := m.profileOf(ctx, md.ProjectID, msg); p != nil {
				md.Route = strconv.FormatInt(p.id, 10)
			}
		}
		out[i] = md
	}
	return out
}

// timeout is how long one delivery attempt may take, with a margin over
// the target's own timeout.
func (h *Hook) timeout() time.Duration {
	d := DefaultTimeout
	switch {
	case h.HTTP != nil && h.HTTP.Timeout > 0:
		d = time.Duration(h.HTTP.Timeout)
	case h.RabbitMQ != nil && h.RabbitMQ.Timeout > 0:
		d = time.Duration(h.RabbitMQ.Timeout)
	case h.Kafka != nil && h.Kafka.Timeout > 0:
		d = time.Duration(h.Kafka.Timeout)
	}
	return d + 2*time.Second
}
