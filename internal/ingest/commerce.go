package ingest

import (
	"net/http"

	"github.com/sluicehq/sluice/internal/dialect"
	"github.com/sluicehq/sluice/internal/eventlog"
)

// serveCommerce is POST /v1/events: one typed e-commerce event, or
// {"batch":[…]} answered per event.
func (s *Server) serveCommerce(w http.ResponseWriter, r *http.Request) {
	proj, ok := s.acceptJSONPost(w, r, s.commerce.Authenticate, "/v1/events")
	if !ok {
		return
	}
	buf, err := s.readBody(w, r, s.cfg.CommerceBatchLimit)
	if err != nil {
		s.fail(w, err)
		return
	}
	defer putBuffer(buf)
	clientIP, secure := s.client(r)
	req := &dialect.Request{HTTP: r, Body: buf.Bytes(), ClientIP: clientIP, Secure: secure, ReceivedAt: s.cfg.Now()}
	ev, items, err := s.commerce.Decode(proj, req)
	if err != nil {
		s.fail(w, err)
		return
	}
	if items != nil {
		s.appendBatch(w, req, dialect.DialectCommerce, "event", items)
		return
	}
	result, err := s.commitOne(req, ev)
	if err != nil {
		s.fail(w, err)
		return
	}
	s.m.events(dialect.DialectCommerce, []eventlog.Result{result})
	writeAccepted(w, ev, result)
}
