// Package event defines the canonical event that every dialect produces and
// every consumer reads, its flake ids and its validation errors. It imports
// only the standard library.
package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Channels name the transport an event came in on.
const (
	ChannelHTTP  = "http"  // a webhook / postback request
	ChannelPixel = "pixel" // a 1×1 GIF request
	ChannelRedir = "redir" // a tracked redirect
)

// Event is the canonical envelope stored in the log. Its JSON form is the
// message of seed 001 (key, channel, service, name, projectId, uid, td, data,
// id, time) plus the dialect, the server's receive time, the dedup key and
// the identities found in the request.
type Event struct {
	Key       string `json:"key"`
	Channel   string `json:"channel"`
	Service   string `json:"service"`
	Name      string `json:"name"`
	ProjectID uint32 `json:"projectId"`
	UID       string `json:"uid,omitempty"`
	TD        TD     `json:"td"`
	// Data is the event's payload: a compact JSON object.
	Data json.RawMessage `json:"data"`
	// ID is assigned by the log when the event is committed; ids grow in
	// commit order, so a reader can follow the log "after id X".
	ID ID `json:"id"`
	// Time is when the event happened, in Unix milliseconds. Each dialect
	// documents where it comes from; for webhooks it is ReceivedAt.
	Time int64 `json:"time"`
	// Dialect is the wire format the event came in: webhook, track, …
	Dialect string `json:"dialect"`
	// ReceivedAt is the server clock when the request arrived, Unix ms.
	ReceivedAt int64 `json:"receivedAt"`
	// DedupKey, when set, is unique per project: a second event with the
	// same key is not stored.
	DedupKey   string     `json:"dedupKey,omitempty"`
	Identities []Identity `json:"identities,omitempty"`
	// Content, when set, is the raw request the event came in, kept
	// beside it for hooks with include_content. Events of one request
	// share one Content; it is not part of the canonical JSON.
	Content *Content `json:"-"`
}

// Content is a raw request body (or, for a request without one, its
// query string) as received.
type Content struct {
	Body       []byte
	ReceivedAt int64 // Unix ms
}

// TD is the transport data of the request that carried the event.
type TD struct {
	IP   string `json:"ip,omitempty"`
	UA   string `json:"ua,omitempty"`
	Ref  string `json:"ref,omitempty"`
	Host string `json:"host,omitempty"`
}

// Identity is one way of recognising the user, e.g. {"type":"email_hash",
// "value":"f660…"}.
type Identity struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Validate reports what makes e unfit for the log, parsing Data: it must
// be a JSON object whose strings are UTF-8 text.
func (e *Event) Validate() error {
	if err := e.CheckEnvelope(); err != nil {
		return err
	}
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		return errors.New("data is not a JSON object")
	}
	if te := CheckJSONText(e.Data); te != nil {
		return fmt.Errorf("data: %w", te)
	}
	return nil
}

// CheckEnvelope is Validate without parsing Data: it checks that Data is
// framed as an object. Decoders produce Data by parsing the request, so
// the log, on the hot path, does not parse it a second time.
func (e *Event) CheckEnvelope() error {
	var errs []error
	if e.Key == "" {
		errs = append(errs, errors.New("key is empty"))
	}
	if e.Dialect == "" {
		errs = append(errs, errors.New("dialect is empty"))
	}
	if n := len(e.Data); n > 0 && (n < 2 || e.Data[0] != '{' || e.Data[n-1] != '}') {
		errs = append(errs, errors.New("data is not a JSON object"))
	}
	if len(e.DedupKey) > 512 {
		errs = append(errs, errors.New("dedup key longer than 512 bytes"))
	}
	return errors.Join(errs...)
}

// MarshalJSON encodes the event in its canonical form.
func (e *Event) MarshalJSON() ([]byte, error) {
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		return nil, fmt.Errorf("event %s: data is not valid JSON", e.ID)
	}
	return e.AppendJSON(nil), nil
}

// AppendJSON appends the canonical JSON form of e to dst. Data is copied as
// is and must be a compact JSON object.
func (e *Event) AppendJSON(dst []byte) []byte {
	enc := e.Encode(nil)
	dst = append(dst, enc.Head()...)
	dst = strconv.AppendUint(dst, uint64(e.ID), 10)
	return append(dst, enc.Tail()...)
}

// Encoded is an event in canonical JSON with a gap where its id goes, so
// that the encoding can happen on the request's goroutine and the log's
// writer only splices the id in.
type Encoded struct {
	buf   []byte
	split int
}

// Head is the JSON up to the id's digits.
func (x Encoded) Head() []byte { return x.buf[:x.split] }

// Tail is the JSON after the id's digits.
func (x Encoded) Tail() []byte { return x.buf[x.split:] }

// Len is the encoded length without the id.
func (x Encoded) Len() int { return len(x.buf) }

// WithID appends the complete JSON with id spliced in to dst.
func (x Encoded) WithID(dst []byte, id ID) []byte {
	dst = append(dst, x.buf[:x.split]...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	return append(dst, x.buf[x.split:]...)
}

// Encode writes e as canonical JSON into dst (reusing its capacity) and
// leaves the id out; see Encoded.
func (e *Event) Encode(dst []byte) Encoded {
	b := dst[:0]
	b = append(b, `{"key":`...)
	b = appendString(b, e.Key)
	b = append(b, `,"channel":`...)
	b = appendString(b, e.Channel)
	b = append(b, `,"service":`...)
	b = appendString(b, e.Service)
	b = append(b, `,"name":`...)
	b = appendString(b, e.Name)
	b = append(b, `,"projectId":`...)
	b = strconv.AppendUint(b, uint64(e.ProjectID), 10)
	if e.UID != "" {
		b = append(b, `,"uid":`...)
		b = appendString(b, e.UID)
	}
	b = append(b, `,"td":{`...)
	n := len(b)
	b = appendField(b, n, "ip", e.TD.IP)
	b = appendField(b, n, "ua", e.TD.UA)
	b = appendField(b, n, "ref", e.TD.Ref)
	b = appendField(b, n, "host", e.TD.Host)
	b = append(b, `},"data":`...)
	if len(e.Data) == 0 {
		b = append(b, "{}"...)
	} else {
		b = append(b, e.Data...)
	}
	b = append(b, `,"id":"`...)
	split := len(b)
	b = append(b, `","time":`...)
	b = strconv.AppendInt(b, e.Time, 10)
	b = append(b, `,"dialect":`...)
	b = appendString(b, e.Dialect)
	b = append(b, `,"receivedAt":`...)
	b = strconv.AppendInt(b, e.ReceivedAt, 10)
	if e.DedupKey != "" {
		b = append(b, `,"dedupKey":`...)
		b = appendString(b, e.DedupKey)
	}
	if len(e.Identities) > 0 {
		b = append(b, `,"identities":[`...)
		for i, id := range e.Identities {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"type":`...)
			b = appendString(b, id.Type)
			b = append(b, `,"value":`...)
			b = appendString(b, id.Value)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, '}')
	return Encoded{buf: b, split: split}
}

// Decode parses a canonical JSON event, as stored in the log.
func Decode(b []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	return &e, nil
}

// appendField appends "name":"value" to an object whose members start at
// offset start, skipping empty values.
func appendField(b []byte, start int, name, value string) []byte {
	if value == "" {
		return b
	}
	if len(b) > start {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, `":`...)
	return appendString(b, value)
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does; U+2028 and U+2029 are escaped so the output is also
// valid JavaScript.
func AppendString(dst []byte, s string) []byte { return appendString(dst, s) }

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
