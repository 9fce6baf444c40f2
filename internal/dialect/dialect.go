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

// Request is what a decoder sees of an HTTP request.
type Request struct {
	// HTTP carries the method, URL, header and host. Its Body has already
	// been read (within the size limit) into Body.
	HTTP *http.Request
	Body []byte
	// ClientIP is the sender's address: the socket peer, or the address a
	// trusted proxy reported.
	ClientIP string
	// Secure is true when the sender reached sluice over TLS.
	Secure     bool
	ReceivedAt time.Time
}

// Projects is what decoders need to know about projects and tokens.
type Projects interface {
	Get(id uint32) (*project.Project, bool)
	AuthenticateFor(projectID uint32, secret string) bool
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
