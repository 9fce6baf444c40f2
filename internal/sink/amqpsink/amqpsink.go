// Package amqpsink publishes hook messages to RabbitMQ, one AMQP message
// per event, with publisher confirms: a batch is delivered only when the
// broker has confirmed every message of it. Publishing is pipelined (all
// messages of a batch are sent, then the confirms are awaited together)
// and mandatory, so a message no queue takes comes back and fails the
// batch instead of vanishing.
package amqpsink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sluicehq/sluice/internal/sink"
)

// Config is where and how to publish.
type Config struct {
	// Host, Port (default 5672, 5671 with TLS), Username, Password and
	// VHost (default "/") address the broker.
	Host               string
	Port               int
	Username, Password string
	VHost              string
	TLS                *tls.Config
	// Queue, for a queue hook: messages go to it through the default
	// exchange; it is declared durable when it does not exist.
	Queue string
	// Exchange, ExchangeType (direct or topic), Durable and AutoDelete,
	// for an exchange hook: the exchange is declared so.
	Exchange     string
	ExchangeType string
	Durable      bool
	AutoDelete   bool
	// Timeout bounds connecting and waiting for the confirms of a batch.
	Timeout time.Duration
	// Guard is the SSRF guard applied when connecting.
	Guard *sink.Guard
}

// Sink publishes to one queue or exchange over one connection, opened on
// first use and opened again after a loss.
type Sink struct {
	cfg Config

	mu   sync.Mutex
	conn *amqp.Connection
	free []*pubChannel // idle confirming channels of conn
}

// pubChannel is a channel in confirm mode with its returns. A batch has a
// channel to itself, so concurrent batches (max_in_flight > 1) publish
// and await confirms side by side.
type pubChannel struct {
	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return
}

// New checks cfg; it does not connect.
func New(cfg Config) (*Sink, error) {
	if cfg.Host == "" {
		return nil, errors.New("amqp: host is required")
	}
	if (cfg.Queue == "") == (cfg.Exchange == "") {
		return nil, errors.New("amqp: a queue or an exchange, not both")
	}
	if cfg.Port == 0 {
		cfg.Port = 5672
		if cfg.TLS != nil {
			cfg.Port = 5671
		}
	}
	if cfg.VHost == "" {
		cfg.VHost = "/"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.ExchangeType == "" {
		cfg.ExchangeType = amqp.ExchangeDirect
	}
	return &Sink{cfg: cfg}, nil
}

// Target describes where messages go, for the pre-test and errors.
func (s *Sink) Target() string {
	where := s.address() + " vhost " + s.cfg.VHost
	if s.cfg.Queue != "" {
		return where + " queue " + s.cfg.Queue
	}
	return where + " exchange " + s.cfg.Exchange
}

func (s *Sink) address() string {
	scheme := "amqp"
	if s.cfg.TLS != nil {
		scheme = "amqps"
	}
	return scheme + "://" + net.JoinHostPort(s.cfg.Host, fmt.Sprint(s.cfg.Port))
}

// connect opens the connection and declares the queue or exchange.
// Called with mu held.
func (s *Sink) connect() error {
	if s.conn != nil && !s.conn.IsClosed() {
		return nil
	}
	s.resetLocked()
	d := s.cfg.Guard.Dialer()
	d.Timeout = s.cfg.Timeout
	conn, err := amqp.DialConfig(s.address()+"/", amqp.Config{
		SASL:  []amqp.Authentication{&amqp.PlainAuth{Username: s.cfg.Username, Password: s.cfg.Password}},
		Vhost: s.cfg.VHost,
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := d.Dial(network, addr)
			if err != nil {
				return nil, err
			}
			// The handshake must finish within the timeout too.
			if err := c.SetDeadline(time.Now().Add(s.cfg.Timeout)); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
		TLSClientConfig: s.cfg.TLS,
		Heartbeat:       10 * time.Second,
		Properties:      amqp.Table{"connection_name": "sluice hook"},
	})
	if err != nil {
		return sink.NetError(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return &sink.Error{Class: sink.ClassBroker, Err: err}
	}
	defer ch.Close()
	if s.cfg.Queue != "" {
		if _, err := ch.QueueDeclare(s.cfg.Queue, true, false, false, false, nil); err != nil {
			// A queue that exists with other properties is still a
			// queue to publish to: check that it exists.
			if ch, err = conn.Channel(); err == nil {
				defer ch.Close()
				_, err = ch.QueueDeclarePassive(s.cfg.Queue, true, false, false, false, nil)
			}
			if err != nil {
				conn.Close()
				return &sink.Error{Class: sink.ClassBroker, Err: fmt.Errorf("declare queue %s: %w", s.cfg.Queue, err)}
			}
		}
	} else if err := ch.ExchangeDeclare(s.cfg.Exchange, s.cfg.ExchangeType, s.cfg.Durable, s.cfg.AutoDelete, false, false, nil); err != nil {
		conn.Close()
		return &sink.Error{Class: sink.ClassBroker, Err: fmt.Errorf("declare exchange %s: %w", s.cfg.Exchange, err)}
	}
	s.conn = conn
	return nil
}

// take returns an idle confirming channel, opening one when none is.
func (s *Sink) take() (*pubChannel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.connect(); err != nil {
		return nil, err
	}
	for len(s.free) > 0 {
		pc := s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
		if !pc.ch.IsClosed() {
			return pc, nil
		}
	}
	ch, err := s.conn.Channel()
	if err != nil {
		s.resetLocked()
		return nil, &sink.Error{Class: sink.ClassBroker, Err: err}
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, &sink.Error{Class: sink.ClassBroker, Err: fmt.Errorf("enable publisher confirms: %w", err)}
	}
	// Returns come before the confirm of the same message; the buffer
	// holds a whole batch's, so the connection's reader never waits.
	return &pubChannel{conn: s.conn, ch: ch, returns: ch.NotifyReturn(make(chan amqp.Return, 10001))}, nil
}

// give puts a channel back after a batch that went well.
func (s *Sink) give(pc *pubChannel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pc.conn == s.conn && !pc.ch.IsClosed() {
		s.free = append(s.free, pc)
		return
	}
	pc.ch.Close()
}

// drop closes a channel after a failed batch (its unconfirmed messages
// stay on it), and the connection too when that is what failed.
func (s *Sink) drop(pc *pubChannel) {
	pc.ch.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if pc.conn == s.conn && s.conn != nil && s.conn.IsClosed() {
		s.resetLocked()
	}
}

func (s *Sink) resetLocked() {
	if s.conn != nil {
		s.conn.Close()
	}
	s.conn, s.free = nil, nil
}

// Deliver publishes every message of b and waits for the broker to
// confirm them all. A nack, a return (no queue took it), a lost
// connection or no confirm before the timeout fails the batch; the loop
// then publishes the whole batch again (duplicates are possible, losses
// are not).
func (s *Sink) Deliver(ctx context.Context, b *sink.Batch) (*sink.Report, error) {
	start := time.Now()
	rep := &sink.Report{}
	pc, err := s.take()
	if err != nil {
		return rep, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	exchange := s.cfg.Exchange
	ids := make(map[string]bool, len(b.Messages))
	dcs := make([]*amqp.DeferredConfirmation, 0, len(b.Messages))
	for i, msg := range b.Messages {
		m := b.MetaAt(i)
		key := m.Route
		if s.cfg.Queue != "" {
			key = s.cfg.Queue
		}
		p := amqp.Publishing{
			DeliveryMode: amqp.Persistent, ContentType: "application/json", MessageId: m.EventID,
			Timestamp: start, AppId: "sluice", Body: msg,
			Headers: amqp.Table{"sluice-key": m.Key, "sluice-project-id": int64(m.ProjectID), "sluice-batch-id": b.ID},
		}
		if i == 0 {
			rep.Request = &sink.RequestInfo{Method: "PUBLISH", URL: s.Target() + " routing key " + key,
				Header: map[string][]string{"message-id": {m.EventID}, "sluice-key": {m.Key}, "sluice-project-id": {fmt.Sprint(m.ProjectID)}}, Body: string(msg)}
		}
		dc, err := pc.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, p)
		if err != nil {
			s.drop(pc)
			return rep, classify(ctx, fmt.Errorf("publish: %w", err))
		}
		ids[m.EventID] = true
		dcs = append(dcs, dc)
	}
	nacked := 0
	for _, dc := range dcs {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			// Unconfirmed messages stay on this channel: start afresh.
			s.drop(pc)
			return rep, classify(ctx, fmt.Errorf("waiting for the broker's confirms: %w", err))
		}
		if !ok {
			nacked++
		}
	}
	rep.Latency = time.Since(start)
	var returned []amqp.Return
	for drained := false; !drained; {
		select {
		case r, ok := <-pc.returns:
			if !ok { // the channel closed
				drained = true
				break
			}
			if ids[r.MessageId] {
				returned = append(returned, r)
			}
		default:
			drained = true
		}
	}
	lost := pc.ch.IsClosed() || pc.conn.IsClosed()
	if lost {
		s.drop(pc)
	} else {
		s.give(pc)
	}
	switch {
	case nacked > 0 && lost:
		// Pending confirms of a closed channel read as nacks.
		rep.Response = fmt.Sprintf("%d of %d messages unconfirmed", nacked, len(dcs))
		return rep, &sink.Error{Class: sink.ClassConnect, Err: fmt.Errorf("the connection closed before the broker confirmed %d of %d messages", nacked, len(dcs))}
	case nacked > 0:
		rep.Response = fmt.Sprintf("%d of %d messages nacked", nacked, len(dcs))
		return rep, &sink.Error{Class: sink.ClassBroker, Err: fmt.Errorf("the broker refused (nack) %d of %d messages", nacked, len(dcs))}
	case len(returned) > 0:
		r := returned[0]
		rep.Response = fmt.Sprintf("%d returned: %d %s", len(returned), r.ReplyCode, r.ReplyText)
		return rep, &sink.Error{Class: sink.ClassBroker, Err: fmt.Errorf("%d of %d messages were returned unroutable (%d %s, exchange %q, routing key %q): no queue is bound for them",
			len(returned), len(dcs), r.ReplyCode, r.ReplyText, r.Exchange, r.RoutingKey)}
	}
	rep.Response = fmt.Sprintf("%d confirmed", len(dcs))
	return rep, nil
}

func classify(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return &sink.Error{Class: sink.ClassTimeout, Err: err}
	}
	var ae *amqp.Error
	if errors.As(err, &ae) || strings.Contains(err.Error(), "channel/connection is not open") {
		return &sink.Error{Class: sink.ClassBroker, Err: err}
	}
	return sink.NetError(err)
}

// Close closes the connection.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
	return nil
}
