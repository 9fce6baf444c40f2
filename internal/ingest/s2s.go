package ingest

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/sluicehq/sluice/internal/dialect"
)

// serveS2S is POST / (the server-to-server batch gateway). It answers
// {"accepted":n,"duplicates":m,"ids":[…]}, ids in message order, a
// duplicate's being the original's. Every error carries a code, the
// seed's where it has one.
func (s *Server) serveS2S(w http.ResponseWriter, r *http.Request) {
	fail := func(err error) {
		var de *dialect.Error
		switch {
		case !errors.As(err, &de):
			s.logger.Error("append to event log", "dialect", dialect.DialectS2S, "err", err)
			de = &dialect.Error{Status: http.StatusServiceUnavailable, Code: "UNAVAILABLE",
				Message: "the event log is unavailable; nothing was stored, retry later", Header: map[string]string{"Retry-After": "1"}}
		case de.Code == "":
			c := *de
			switch c.Status {
			case http.StatusMethodNotAllowed:
				c.Code = "METHOD_NOT_ALLOWED"
			case http.StatusRequestEntityTooLarge:
				c.Code = "PAYLOAD_TOO_LARGE"
			case http.StatusUnsupportedMediaType:
				c.Code = "UNSUPPORTED_MEDIA_TYPE"
			default:
				c.Code = dialect.CodeBadRequest
			}
			de = &c
		}
		s.fail(w, de)
	}
	if r.URL.Path != "/" || r.Method != http.MethodPost {
		fail(&dialect.Error{Status: http.StatusMethodNotAllowed, Message: "the s2s gateway takes POST /",
			Header: map[string]string{"Allow": "POST, OPTIONS"}})
		return
	}
	proj, err := s.s2s.Authenticate(r)
	if err != nil {
		fail(err)
		return
	}
	buf, err := s.readBody(w, r, s.cfg.S2SLimit)
	if err != nil {
		fail(err)
		return
	}
	defer putBuffer(buf)
	clientIP, secure := s.client(r)
	req := &dialect.Request{HTTP: r, Body: buf.Bytes(), ClientIP: clientIP, Secure: secure, ReceivedAt: s.cfg.Now()}
	evs, err := s.s2s.Decode(proj, req)
	if err != nil {
		fail(err)
		return
	}
	var elems [][]byte
	if s.keepContent(evs) {
		elems = batchElements(req.Body, "messages")
	}
	if len(elems) != len(evs) {
		elems = nil
	}
	// Every message has its own dedup key (its id): an Idempotency-Key
	// adds nothing here, but a malformed one is still refused.
	results, _, err := s.commit(req, evs, elems, nil)
	if err != nil {
		fail(err)
		return
	}
	s.m.events(dialect.DialectS2S, results)
	// {"accepted":n,"duplicates":m,"ids":[…]}, written by hand: a batch
	// answer carries up to a thousand ids.
	dups := 0
	for _, res := range results {
		if res.Duplicate {
			dups++
		}
	}
	b := make([]byte, 0, 64+len(results)*22)
	b = append(b, `{"accepted":`...)
	b = strconv.AppendInt(b, int64(len(results)-dups), 10)
	b = append(b, `,"duplicates":`...)
	b = strconv.AppendInt(b, int64(dups), 10)
	b = append(b, `,"ids":[`...)
	for i, res := range results {
		if i > 0 {
			b = append(b, ',')
		}
		b = res.ID.AppendJSON(b)
	}
	writeRaw(w, http.StatusOK, append(b, "]}\n"...))
}
