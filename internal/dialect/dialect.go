// Package dialect holds one decoder per wire format. A decoder turns an
// HTTP request into canonical events, or into an *Error that says exactly
// what is wrong, with the status to answer and the path of each offending
// field. Everything after decoding (append, respond) is shared by ingest.
package dialect

import (
	"fmt"
	"net/http"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/project"
)

// Dialect turns the requests of one wire format into canonical events, or
// into an *Error that says exactly what is wrong. The ingest handler
// serves every dialect through one path:
//
//	Match → Accept → read the body (Content-Encoding, limit) → Authenticate
//	→ Decode → identities → append (dedup, Idempotency-Key, contents) → Answer
//
// and renders every refusal in one place, through Refuse. A new dialect is
// one file implementing this, its golden files, and one line in the
// registry that app writes out.
type Dialect interface {
	// Name names the dialect on its events and in metrics.
	Name() string
	// Match reports whether the dialect serves the request, by its path,
	// and names the route (a metric label). Dialects are asked in their
	// registration order; the first that matches serves.
	Match(hr *http.Request) (route string, ok bool)
	// Accept checks what needs no body (method, path, content type) and
	// returns the largest body the route takes, in decoded bytes.
	Accept(hr *http.Request, route string) (limit int64, err error)
	// Authenticate finds the request's project.
	Authenticate(r *Request) (*project.Project, error)
	// Decode turns the request of r.Project into events.
	Decode(r *Request) (*Decoded, error)
	// Answer writes the answer to a request whose events are committed:
	// out[i] is the outcome of d.Items[i].
	Answer(w http.ResponseWriter, r *Request, d *Decoded, out []Outcome)
	// Refuse shapes a refusal the dialect's way (s2s adds the seed's
	// error codes). err is an *Error, or a failure of the log.
	Refuse(err error) *Error
}

// Request is what a dialect sees of an HTTP request.
type Request struct {
	// HTTP carries the method, URL, header and host. Its Body has already
	// been read (decoded and within the size limit) into Body.
	HTTP *http.Request
	// Route is the route Match named.
	Route string
	Body  []byte
	// ClientIP is the sender's address: the socket peer, or the address a
	// trusted proxy reported.
	ClientIP string
	// Secure is true when the sender reached sluice over TLS.
	Secure     bool
	ReceivedAt time.Time
	// Project is the project Authenticate found.
	Project *project.Project
	// State is a dialect's own, from Authenticate to Decode (the webhook
	// dialect parses the request once to find its project).
	State any
}

// Decoded is what a request holds.
type Decoded struct {
	// Items are the request's events in order. In a batch (Batch set) an
	// invalid item holds its refusal instead, and does not stop the
	// others; otherwise every item holds an event.
	Items []Item
	Batch bool
	// Pixel and Location are the webhook dialect's: answer a 1×1 GIF, or
	// redirect there.
	Pixel    bool
	Location string
}

// Events returns the events of the valid items, and each one's index in
// Items.
func (d *Decoded) Events() (evs []*event.Event, pos []int) {
	for i, it := range d.Items {
		if it.Event != nil {
			evs = append(evs, it.Event)
			pos = append(pos, i)
		}
	}
	return evs, pos
}

// Item is one event of a request, or one refused item of a batch.
type Item struct {
	Event *event.Event
	// Raw is the batch element the event came from, kept as its content
	// for hooks with include_content; nil keeps the whole request.
	Raw []byte
	// Status and Errors refuse an invalid item of a batch: 400, or 413
	// when it is too large; paths are relative to the item.
	Status int
	Errors event.FieldErrors
}

// Outcome is what became of one item's event.
type Outcome struct {
	ID        event.ID
	Duplicate bool
	// Conflict: the request's Idempotency-Key was first used for another
	// request, whose item at this position differs; nothing was stored.
	Conflict bool
}

// Projects is what decoders need to know about projects and tokens.
type Projects interface {
	Get(id uint32) (*project.Project, bool)
	AuthenticateFor(projectID uint32, secret string) bool
	// IsToken reports whether secret is a live token of any project.
	IsToken(secret string) bool
}

// Error is a request the dialect refuses: the status to answer, a message,
// and every violation found with its field path.
type Error struct {
	Status  int               `json:"-"`
	Code    string            `json:"code,omitempty"`
	Message string            `json:"message"`
	Errors  event.FieldErrors `json:"errors,omitempty"`
	// Header is added to the response, e.g. WWW-Authenticate on a 401.
	Header map[string]string `json:"-"`
}

func (e *Error) Error() string {
	if len(e.Errors) == 0 {
		return fmt.Sprintf("%d %s", e.Status, e.Message)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Message, e.Errors.Error())
}

// Errorf makes an *Error with one message and no field path.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// FieldError makes an *Error about one field.
func FieldError(status int, path, message string) *Error {
	return &Error{Status: status, Message: path + ": " + message, Errors: event.FieldErrors{{Path: path, Message: message}}}
}

// Unauthorized is a 401 that asks for HTTP Basic credentials.
func Unauthorized(message string) *Error {
	return &Error{
		Status: http.StatusUnauthorized, Message: message,
		Header: map[string]string{"WWW-Authenticate": `Basic realm="sluice"`},
	}
}
