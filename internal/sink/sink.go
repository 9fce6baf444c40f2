// Package sink declares what the hook delivery loop sends batches through
// and the destination contract that delivery types implement
// (Destination, Settings). Sinks only report what happened; the retry
// policy lives in the loop (internal/hook). Implementations live in
// sub-packages named after the technology: sink/httpsink, sink/amqpsink,
// sink/kafkasink, sink/ga4sink, sink/bigquerysink and sink/clickhousesink;
// sink/sinktest is the conformance suite each of them runs.
package sink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Batch is what one delivery carries.
type Batch struct {
	// ID is stable across the attempts and replays of one batch
	// (webhook-id for HTTP).
	ID string
	// Messages are the JSON messages, in log order.
	Messages [][]byte
	// Attempt is 1 for the first delivery.
	Attempt int
	// Meta has one entry per message, when the settings' Needs ask.
	Meta []Meta
	// Test marks a pre-test: a destination with a validation endpoint
	// (GA4's) sends it there, and nothing is recorded.
	Test bool
}

// MetaAt is message i's description, or a bare one (an id made from the
// batch's) when the loop gave none.
func (b *Batch) MetaAt(i int) Meta {
	if i < len(b.Meta) {
		return b.Meta[i]
	}
	return Meta{EventID: fmt.Sprintf("%s-%d", b.ID, i)}
}

// Sink delivers batches.
type Sink interface {
	// Deliver sends b once. It returns nil when the target confirmed it,
	// or an error; *Error says how to classify it.
	Deliver(ctx context.Context, b *Batch) (*Report, error)
	// Close releases connections.
	Close() error
}

// Report is what a delivery attempt learned from the target, success or
// not: for the attempt log and the pre-test.
type Report struct {
	// Request is what was sent (HTTP: method, URL, headers, body).
	Request *RequestInfo `json:"request,omitempty"`
	// Status is the target's answer code (HTTP status), 0 when none.
	Status int `json:"status"`
	// Response is the start of the answer (at most 1 KiB for the log).
	Response string        `json:"response,omitempty"`
	Latency  time.Duration `json:"latencyNs"`
}

// RequestInfo is the exact request a sink sent.
type RequestInfo struct {
	Method string              `json:"method"`
	URL    string              `json:"url"`
	Header map[string][]string `json:"header"`
	Body   string              `json:"body"`
}

// Meta describes one message for sinks that handle messages one by one
// (RabbitMQ, Kafka, GA4, tables), with what their Needs ask for.
type Meta struct {
	EventID   string
	Key       string
	ProjectID uint32
	// Route is the message's RabbitMQ routing key or Kafka record key,
	// rendered by the hook.
	Route string
	// Profile is the user's resolved profile (nil when none), with
	// Needs.Profile.
	Profile *Profile
	// Custom are the project's custom dimensions and metrics the event
	// carries, with Needs.Custom.
	Custom []Custom
}

// NetError classifies a failure to reach the target: blocked by the
// guard, DNS, timeout, or connect.
func NetError(err error) *Error {
	var dns *net.DNSError
	var ne net.Error
	switch {
	case errors.Is(err, ErrBlocked):
		return &Error{Class: ClassBlocked, Err: err}
	case errors.As(err, &dns):
		return &Error{Class: ClassDNS, Err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &Error{Class: ClassTimeout, Err: err}
	}
	return &Error{Class: ClassConnect, Err: err}
}

// Error classes for the attempt log and metrics.
const (
	ClassDNS     = "dns"
	ClassConnect = "connect"
	ClassTimeout = "timeout"
	ClassStatus  = "status"
	ClassRegex   = "regex"
	ClassBroker  = "broker"
	ClassBlocked = "blocked" // the SSRF guard refused the address
	ClassInvalid = "invalid" // the target's protocol cannot carry the batch as it is
)

// Error is a failed delivery.
type Error struct {
	Class string
	// RetryAfter is the target's Retry-After, when it sent one.
	RetryAfter time.Duration
	// Gone: the target said it will never accept (HTTP 410); the hook
	// stops.
	Gone bool
	// Permanent: the batch can never be delivered as it is (an event
	// breaks a limit of the target's protocol); it is parked as a dead
	// letter at once, without the retries.
	Permanent bool
	Err       error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %v", e.Class, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Classify returns the class of err ("" for nil).
func Classify(err error) string {
	if err == nil {
		return ""
	}
	var se *Error
	if errors.As(err, &se) {
		return se.Class
	}
	return ClassConnect
}
