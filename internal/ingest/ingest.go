// Package ingest is the ingest listener's HTTP handler. Every dialect is
// served through one path: Match → Accept → read the body (Content-
// Encoding, limit) → Authenticate → Decode → identities (the project's
// identity_fields, canonical order) → append (dedup,
// Idempotency-Key, contents) → Answer, and every refusal is rendered in
// one place, shaped by its dialect. The dialects are a registry that app
// writes out; ingest knows none of them.
package ingest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/dialect"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/project"
)

// Appender is the part of the event log ingest needs: appends, and reads
// of the original of an idempotent repeat.
type Appender interface {
	Append(ctx context.Context, events []*event.Event) ([]eventlog.Result, error)
	Read(ctx context.Context, q eventlog.Query) ([]eventlog.Record, error)
}

// Config configures the ingest handler.
type Config struct {
	// TrustedProxies are the peers whose X-Forwarded-For, X-Real-IP and
	// X-Forwarded-Proto are believed.
	TrustedProxies []netip.Prefix
	// KeepContent reports whether the raw requests of a project are kept
	// beside its events (a hook with include_content wants them).
	KeepContent func(projectID uint32) bool
	// Ready is nil while the server takes traffic, else why not (for
	// /readyz).
	Ready func() error
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Refused, when set, is told of every refused request, after the
	// answer is written (the console's live view shows them). It must not
	// block.
	Refused func(Refusal)
}

// Refusal is a refused request, as Config.Refused is told of it.
type Refusal struct {
	Time    time.Time
	Dialect string
	// Project is the project the request was authenticated to, if any.
	Project *project.Project
	// ClientIP is the sender's address; Method and Path (no query) the
	// request's.
	ClientIP, Method, Path string
	// Error is what the sender was answered.
	Error *dialect.Error
}

// Server is the ingest handler.
type Server struct {
	cfg      Config
	log      Appender
	dialects []dialect.Dialect
	logger   *slog.Logger
	m        *metrics
}

// New returns the ingest handler serving dialects, asked in order which
// one serves a request (the catch-all webhook dialect goes last). reg may
// be nil.
func New(cfg Config, log Appender, dialects []dialect.Dialect, reg prometheus.Registerer, logger *slog.Logger) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Ready == nil {
		cfg.Ready = func() error { return nil }
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, dialects: dialects, logger: logger, m: newMetrics(reg)}
}

// Routes of the handler's own (metric label values).
const (
	routePreflight = "preflight"
	routeHealth    = "health"
	routeOther     = "other"
)

// ServeHTTP answers health checks and preflights, and hands every other
// request to the first dialect that matches it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	dialectName, route := "none", routeOther
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.logger.Error("panic in ingest handler", "panic", p, "path", r.URL.Path, "stack", string(debug.Stack()))
			if !rec.wroteHeader {
				writeJSON(rec, http.StatusInternalServerError, map[string]string{"message": "internal error; nothing was stored"})
			}
		}
		s.m.observe(dialectName, route, rec.status(), time.Since(start))
	}()

	cors(rec, r)
	if r.Method == http.MethodOptions {
		route = routePreflight
		preflight(rec, r)
		return
	}
	switch strings.TrimSuffix(r.URL.Path, "/") {
	case "/healthz":
		route = routeHealth
		writeJSON(rec, http.StatusOK, map[string]string{"status": "ok"})
		return
	case "/readyz":
		route = routeHealth
		if err := s.cfg.Ready(); err != nil {
			writeJSON(rec, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
		} else {
			writeJSON(rec, http.StatusOK, map[string]string{"status": "ready"})
		}
		return
	}
	for _, d := range s.dialects {
		if rt, ok := d.Match(r); ok {
			dialectName, route = d.Name(), rt
			s.serve(rec, r, d, rt)
			return
		}
	}
	writeJSON(rec, http.StatusNotFound, dialect.Errorf(http.StatusNotFound, "this is sluice's ingest listener: send webhooks to /{service}/{name}/{projectId}"))
}

// serve is the one path of every dialect.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, d dialect.Dialect, route string) {
	limit, err := d.Accept(r, route)
	if err != nil {
		s.refuse(w, r, d, nil, err)
		return
	}
	buf, err := s.readBody(w, r, limit)
	if err != nil {
		s.refuse(w, r, d, nil, err)
		return
	}
	defer putBuffer(buf)
	clientIP, secure := s.client(r)
	req := &dialect.Request{HTTP: r, Route: route, Body: buf.Bytes(), ClientIP: clientIP, Secure: secure, ReceivedAt: s.cfg.Now()}
	if req.Project, err = d.Authenticate(req); err != nil {
		s.refuse(w, r, d, req.Project, err)
		return
	}
	dec, err := d.Decode(req)
	if err != nil {
		s.refuse(w, r, d, req.Project, err)
		return
	}
	if err := dialect.Identities(req.Project, dec); err != nil {
		s.refuse(w, r, d, req.Project, err)
		return
	}
	out, err := s.commit(req, dec)
	if err != nil {
		s.refuse(w, r, d, req.Project, err)
		return
	}
	if !dec.Batch {
		for _, o := range out {
			if o.Conflict {
				s.refuse(w, r, d, req.Project, dialect.IdempotencyConflict())
				return
			}
		}
	}
	s.m.events(d.Name(), req.Project.ID, out)
	d.Answer(w, req, dec, out)
}

// refuse renders a refusal, shaped by its dialect: an *Error as its
// status, headers and JSON body; a failure of the log as a 503 with
// nothing stored. Config.Refused is told.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, d dialect.Dialect, p *project.Project, err error) {
	var de *dialect.Error
	switch {
	case errors.As(err, &de):
	case errors.Is(err, eventlog.ErrUnavailable):
		// The log said so once when it went down; it says so again when
		// it recovers. One line per refused request would flood the log.
		s.logger.Debug("append to event log", "dialect", d.Name(), "err", err)
	default:
		s.logger.Error("append to event log", "dialect", d.Name(), "err", err)
	}
	e := d.Refuse(err)
	for k, v := range e.Header {
		w.Header().Set(k, v)
	}
	writeJSON(w, e.Status, e)
	if s.cfg.Refused != nil {
		ip, _ := s.client(r)
		s.cfg.Refused(Refusal{Time: s.cfg.Now(), Dialect: d.Name(), Project: p, ClientIP: ip, Method: r.Method, Path: r.URL.Path, Error: e})
	}
}

// keepContent reports whether the raw requests of project p are kept: a
// hook asks for them, and the project does not hash PII (a raw request
// holds the phone numbers and e-mails hashing keeps out).
func (s *Server) keepContent(p *project.Project) bool {
	return s.cfg.KeepContent != nil && p != nil && s.cfg.KeepContent(p.ID) && !p.Settings.HashPII
}

// client returns the sender's address and whether it reached us over TLS.
// Forwarding headers count only when the socket peer is a trusted proxy.
func (s *Server) client(r *http.Request) (ip string, secure bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !s.trusted(peer.Unmap()) {
		return host, r.TLS != nil
	}
	secure = r.TLS != nil || strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")), "https")
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		parts := strings.Split(strings.Join(xff, ","), ",")
		// Walk from the right: the first address that is not one of our
		// proxies is the client. Left of it, anyone could have written it.
		for i := len(parts) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[i]))
			if err != nil {
				break
			}
			a = a.Unmap()
			if !s.trusted(a) || i == 0 {
				return a.String(), secure
			}
		}
	}
	if xr := strings.TrimSpace(r.Header.Get("X-Real-IP")); xr != "" {
		if a, err := netip.ParseAddr(xr); err == nil {
			return a.Unmap().String(), secure
		}
	}
	return host, secure
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// cors answers any origin, with credentials, as the original does: ingest
// only accepts writes, and browsers send pixels and beacons from anywhere.
func cors(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Add("Vary", "Origin")
}

func preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		h.Set("Access-Control-Allow-Headers", req)
	} else {
		h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Application-Id, X-API-Key")
	}
	h.Set("Access-Control-Max-Age", "86400")
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// writeJSON writes v as a JSON answer.
func writeJSON(w http.ResponseWriter, status int, v any) { dialect.WriteJSON(w, status, v) }

// recorder remembers the status for metrics and the panic handler.
type recorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.code, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) status() int {
	if !r.wroteHeader {
		return http.StatusOK
	}
	return r.code
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

var _ io.Writer = (*recorder)(nil)
