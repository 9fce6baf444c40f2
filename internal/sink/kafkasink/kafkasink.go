// Package kafkasink produces hook messages to Kafka with franz-go: one
// record per event, the idempotent producer with acks=all, and a batch
// delivered only when every record of it is acknowledged.
package kafkasink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicehq/sluice/internal/sink"
)

// Config is where and how to produce.
type Config struct {
	Brokers []string
	Topic   string
	// Compression: snappy (default, as franz-go's), lz4, zstd or none.
	Compression string
	// SASL: "" (none), plain, scram-sha-256 or scram-sha-512.
	SASL               string
	Username, Password string
	TLS                *tls.Config
	// Timeout bounds the delivery of a batch (the record delivery
	// timeout).
	Timeout time.Duration
	// Guard is the SSRF guard applied to every broker connection.
	Guard *sink.Guard
}

// Compressions are the accepted Config.Compression values.
var Compressions = map[string]kgo.CompressionCodec{
	"none": kgo.NoCompression(), "": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(),
	"zstd": kgo.ZstdCompression(), "snappy": kgo.SnappyCompression(),
}

// SASLs are the accepted Config.SASL values.
var SASLs = map[string]bool{"": true, "plain": true, "scram-sha-256": true, "scram-sha-512": true}

// Sink produces to one topic.
type Sink struct {
	cfg  Config
	opts []kgo.Opt

	mu sync.Mutex
	cl *kgo.Client
}

// New makes the client; it connects on first use.
func New(cfg Config) (*Sink, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" {
		return nil, errors.New("kafka: brokers and topic are required")
	}
	codec, ok := Compressions[cfg.Compression]
	if !ok {
		return nil, fmt.Errorf("kafka: compression %q: snappy, lz4, zstd or none", cfg.Compression)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	d := cfg.Guard.Dialer()
	d.Timeout = cfg.Timeout
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.ProducerBatchCompression(codec),
		kgo.RecordDeliveryTimeout(cfg.Timeout),
		kgo.ProducerLinger(0),
		kgo.ClientID("sluice"),
	}
	if cfg.TLS != nil {
		td := &tls.Dialer{NetDialer: d, Config: cfg.TLS}
		opts = append(opts, kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
			return td.DialContext(ctx, network, host)
		}))
	} else {
		opts = append(opts, kgo.Dialer(d.DialContext))
	}
	var mech sasl.Mechanism
	switch cfg.SASL {
	case "":
	case "plain":
		mech = plain.Auth{User: cfg.Username, Pass: cfg.Password}.AsMechanism()
	case "scram-sha-256":
		mech = scram.Auth{User: cfg.Username, Pass: cfg.Password}.AsSha256Mechanism()
	case "scram-sha-512":
		mech = scram.Auth{User: cfg.Username, Pass: cfg.Password}.AsSha512Mechanism()
	default:
		return nil, fmt.Errorf("kafka: sasl %q: plain, scram-sha-256 or scram-sha-512", cfg.SASL)
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return &Sink{cfg: cfg, opts: opts, cl: cl}, nil
}

// client is the current client.
func (s *Sink) client() *kgo.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cl
}

// reset replaces a client whose records did not finish in time: closing
// it fails what it still buffers, so a target that keeps refusing does
// not pile up copies of every retried batch.
func (s *Sink) reset(old *kgo.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cl != old {
		return
	}
	if cl, err := kgo.NewClient(s.opts...); err == nil {
		s.cl = cl
		go old.Close()
	}
}

// Deliver produces every message of b as a record (key: the message's
// route; headers: the event id, key and project) and waits until all are
// acknowledged by all in-sync replicas.
func (s *Sink) Deliver(ctx context.Context, b *sink.Batch) (*sink.Report, error) {
	start := time.Now()
	rep := &sink.Report{}
	recs := make([]*kgo.Record, len(b.Messages))
	for i, msg := range b.Messages {
		m := b.MetaAt(i)
		recs[i] = &kgo.Record{Key: []byte(m.Route), Value: msg, Headers: []kgo.RecordHeader{
			{Key: "sluice-event-id", Value: []byte(m.EventID)},
			{Key: "sluice-key", Value: []byte(m.Key)},
			{Key: "sluice-project-id", Value: []byte(fmt.Sprint(m.ProjectID))},
			{Key: "sluice-batch-id", Value: []byte(b.ID)},
		}}
		if i == 0 {
			rep.Request = &sink.RequestInfo{Method: "PRODUCE", URL: "kafka://" + strings.Join(s.cfg.Brokers, ",") + "/" + s.cfg.Topic + " key " + m.Route,
				Header: map[string][]string{"sluice-event-id": {m.EventID}, "sluice-key": {m.Key}, "sluice-project-id": {fmt.Sprint(m.ProjectID)}}, Body: string(msg)}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout+time.Second)
	defer cancel()
	cl := s.client()
	errs := make([]error, len(recs))
	var left atomic.Int64
	left.Store(int64(len(recs)))
	done := make(chan struct{})
	for i, r := range recs {
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			errs[i] = err
			if left.Add(-1) == 0 {
				close(done)
			}
		})
	}
	select {
	case <-done:
	case <-ctx.Done():
		// The client may hold records in flight past any timeout (the
		// idempotent producer cannot drop them): give up on this client.
		s.reset(cl)
		rep.Latency = time.Since(start)
		rep.Response = fmt.Sprintf("%d of %d records not acknowledged in time", left.Load(), len(recs))
		return rep, &sink.Error{Class: sink.ClassTimeout, Err: fmt.Errorf("%d of %d records not acknowledged within %s", left.Load(), len(recs), s.cfg.Timeout)}
	}
	rep.Latency = time.Since(start)
	failed := 0
	var first error
	for _, err := range errs {
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	if failed == 0 {
		last := recs[len(recs)-1]
		rep.Response = fmt.Sprintf("%d acknowledged (last: partition %d offset %d)", len(recs), last.Partition, last.Offset)
		return rep, nil
	}
	rep.Response = fmt.Sprintf("%d of %d records failed: %v", failed, len(recs), first)
	return rep, classify(ctx, fmt.Errorf("%d of %d records not acknowledged: %w", failed, len(recs), first))
}

func classify(ctx context.Context, err error) error {
	var ke *kerr.Error
	switch {
	case errors.Is(err, sink.ErrBlocked):
		return &sink.Error{Class: sink.ClassBlocked, Err: err}
	case errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, context.DeadlineExceeded), ctx.Err() != nil:
		return &sink.Error{Class: sink.ClassTimeout, Err: err}
	case errors.As(err, &ke):
		return &sink.Error{Class: sink.ClassBroker, Err: err}
	}
	return sink.NetError(err)
}

// Close flushes nothing (Deliver waits for its records) and closes the
// client.
func (s *Sink) Close() error {
	s.client().Close()
	return nil
}
