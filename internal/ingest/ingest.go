// Package ingest is the ingest listener's HTTP handler: limits, client
// address, CORS, one decoder per dialect, append to the durable log, and
// one place that renders every error.
package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/dialect"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

// Appender is the part of the event log ingest needs.
type Appender interface {
	Append(ctx context.Context, events []*event.Event) ([]eventlog.Result, error)
}

// Config configures the ingest handler.
type Config struct {
	// BodyLimit caps a webhook request body in bytes (default 100 KiB).
	BodyLimit int64
	// TrackHitLimit caps one track hit, alone or in a batch (default 32 KiB).
	TrackHitLimit int64
	// TrackBatchLimit caps a POST /track/batch body (default 500 KiB).
	TrackBatchLimit int64
	// S2SLimit caps an s2s request body (default 1 MiB).
	S2SLimit int64
	// CommerceEventLimit caps one commerce event, alone or in a batch
	// (default 32 KiB); CommerceBatchLimit a POST /v1/events body
	// (default 500 KiB).
	CommerceEventLimit int64
	CommerceBatchLimit int64
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
}

// Default body limits.
const (
	DefaultBodyLimit       = 100 << 10
	DefaultTrackHitLimit   = 32 << 10
	DefaultTrackBatchLimit = 500 << 10
	DefaultS2SLimit        = 1 << 20
	DefaultCommerceEvent   = 32 << 10
	DefaultCommerceBatch   = 500 << 10
)

// Server is the ingest handler.
type Server struct {
	cfg      Config
	log      Appender
	webhook  *dialect.Webhook
	track    *dialect.Track
	s2s      *dialect.S2S
	commerce *dialect.Commerce
	projects Projects
	logger   *slog.Logger
	m        *metrics
	cookies  cookieJar
}

// Projects is what ingest needs to know of projects and tokens.
type Projects interface {
	dialect.Projects
	dialect.TrackProjects
	dialect.S2SProjects
	dialect.CommerceProjects
}

// New returns the ingest handler. reg may be nil.
func New(cfg Config, log Appender, projects Projects, uids *event.Generator, reg prometheus.Registerer, logger *slog.Logger) *Server {
	if cfg.BodyLimit <= 0 {
		cfg.BodyLimit = DefaultBodyLimit
	}
	if cfg.TrackHitLimit <= 0 {
		cfg.TrackHitLimit = DefaultTrackHitLimit
	}
	if cfg.TrackBatchLimit <= 0 {
		cfg.TrackBatchLimit = DefaultTrackBatchLimit
	}
	if cfg.S2SLimit <= 0 {
		cfg.S2SLimit = DefaultS2SLimit
	}
	if cfg.CommerceEventLimit <= 0 {
		cfg.CommerceEventLimit = DefaultCommerceEvent
	}
	if cfg.CommerceBatchLimit <= 0 {
		cfg.CommerceBatchLimit = DefaultCommerceBatch
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Ready == nil {
		cfg.Ready = func() error { return nil }
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cfg:      cfg,
		log:      log,
		webhook:  &dialect.Webhook{Projects: projects, NewUID: uids.Next},
		track:    &dialect.Track{Projects: projects, HitLimit: int(cfg.TrackHitLimit)},
		s2s:      &dialect.S2S{Projects: projects, Now: cfg.Now},
		commerce: &dialect.Commerce{Projects: projects, EventLimit: int(cfg.CommerceEventLimit), Now: cfg.Now},
		projects: projects,
		logger:   logger,
		m:        newMetrics(reg),
	}
}

// Routes (metric label values).
const (
	routeWebhook    = "webhook"
	routePixel      = "pixel"
	routeRedir      = "redir"
	routePreflight  = "preflight"
	routeHealth     = "health"
	routeOther      = "other"
	routeTrack      = "track"
	routeTrackBatch = "track_batch"
	routeS2S        = "s2s"
	routeCommerce   = "commerce"
)

// ServeHTTP dispatches on the first path segment.
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
	first, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	switch first {
	case "healthz":
		route = routeHealth
		writeJSON(rec, http.StatusOK, map[string]string{"status": "ok"})
	case "readyz":
		route = routeHealth
		if err := s.cfg.Ready(); err != nil {
			writeJSON(rec, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
		} else {
			writeJSON(rec, http.StatusOK, map[string]string{"status": "ready"})
		}
	case "track":
		dialectName, route = dialect.DialectTrack, routeTrack
		if p := strings.TrimSuffix(r.URL.Path, "/"); p == "/track/batch" {
			route = routeTrackBatch
		}
		s.serveTrack(rec, r, route == routeTrackBatch)
	case "v1":
		dialectName, route = dialect.DialectCommerce, routeCommerce
		s.serveCommerce(rec, r)
	case "":
		if r.Method == http.MethodPost || r.Header.Get("X-Application-Id") != "" {
			dialectName, route = dialect.DialectS2S, routeS2S
			s.serveS2S(rec, r)
			return
		}
		s.fail(rec, dialect.Errorf(http.StatusNotFound, "this is sluice's ingest listener: send webhooks to /{service}/{name}/{projectId}"))
	default:
		dialectName = dialect.DialectWebhook
		route = webhookRoute(first, r.URL.Path)
		s.serveWebhook(rec, r)
	}
}

func webhookRoute(first, path string) string {
	switch {
	case first == dialect.RedirService:
		return routeRedir
	case strings.HasSuffix(strings.TrimSuffix(path, "/"), ".gif"):
		return routePixel
	}
	return routeWebhook
}

func (s *Server) serveWebhook(w http.ResponseWriter, r *http.Request) {
	buf, err := s.readBody(w, r, s.cfg.BodyLimit)
	if err != nil {
		s.fail(w, err)
		return
	}
	defer putBuffer(buf)
	clientIP, secure := s.client(r)
	now := s.cfg.Now()
	req := &dialect.Request{HTTP: r, Body: buf.Bytes(), ClientIP: clientIP, Secure: secure, ReceivedAt: now}
	res, err := s.webhook.Decode(req)
	if err != nil {
		s.fail(w, err)
		return
	}
	ev := res.Event
	results, err := s.append(req, []*event.Event{ev})
	if err != nil {
		s.fail(w, err)
		return
	}
	s.m.events(dialect.DialectWebhook, results)

	h := w.Header()
	h["Cache-Control"] = noStore
	h["Set-Cookie"] = []string{s.cookies.uid(ev.UID, now, secure)}
	switch {
	case res.Location != "":
		h.Set("Location", res.Location)
		w.WriteHeader(http.StatusFound)
	case res.Pixel:
		h.Set("Content-Type", "image/gif")
		h.Set("Content-Length", strconv.Itoa(len(transparentGIF)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(transparentGIF)
	default:
		// {"key":"in.gen.calltrack.call","id":"…"}, built by hand: this is
		// the hot path.
		b := make([]byte, 0, 48+len(ev.Key))
		b = append(b, `{"key":`...)
		b = event.AppendString(b, ev.Key)
		b = append(b, `,"id":`...)
		b = results[0].ID.AppendJSON(b)
		b = append(b, "}\n"...)
		writeRaw(w, http.StatusOK, b)
	}
}

var (
	noStore         = []string{"no-cache, no-store, must-revalidate"}
	contentTypeJSON = []string{"application/json"}
)

// uidCookieAge is three years, in seconds.
const uidCookieAge = 3 * 365 * 24 * 60 * 60

// cookieJar renders the uid cookie: HttpOnly, three years, SameSite=None,
// Secure under TLS. The attributes change once a second (Expires), so they
// are rendered once a second.
type cookieJar struct {
	mu     sync.Mutex
	sec    int64
	attrs  string // "; Path=/; Expires=…; Max-Age=…; HttpOnly; SameSite=None"
	secure string // attrs + "; Secure"
}

func (c *cookieJar) uid(uid string, now time.Time, secure bool) string {
	sec := now.Unix()
	c.mu.Lock()
	if sec != c.sec || c.attrs == "" {
		full := (&http.Cookie{
			Name: "uid", Value: "0", Path: "/",
			MaxAge: uidCookieAge, Expires: now.Add(uidCookieAge * time.Second),
			HttpOnly: true, SameSite: http.SameSiteNoneMode,
		}).String()
		c.attrs = strings.TrimPrefix(full, "uid=0")
		c.secure = c.attrs + "; Secure"
		c.sec = sec
	}
	attrs := c.attrs
	if secure {
		attrs = c.secure
	}
	c.mu.Unlock()
	return "uid=" + uid + attrs
}

// transparentGIF is a 1×1 transparent GIF.
var transparentGIF = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

var bufferPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 {
		b.Reset()
		bufferPool.Put(b)
	}
}

// append commits the events of one request, with the raw request beside
// them when their project keeps contents: the body (or, without one, the
// query string).
func (s *Server) append(req *dialect.Request, evs []*event.Event) ([]eventlog.Result, error) {
	if s.keepContent(evs) {
		raw := req.Body
		if len(raw) == 0 {
			raw = []byte(req.HTTP.URL.RawQuery)
		}
		// A copy: the body's buffer goes back to a pool.
		c := &event.Content{Body: bytes.Clone(raw), ReceivedAt: req.ReceivedAt.UnixMilli()}
		for _, ev := range evs {
			ev.Content = c
		}
	}
	return s.log.Append(req.HTTP.Context(), evs)
}

// appendItems commits the events of a batch request; items[i] is the raw
// JSON of the batch element evs[i] came from, kept as its content (not the
// whole batch, which could make every message of a hook batch carry a
// megabyte).
func (s *Server) appendItems(req *dialect.Request, evs []*event.Event, items [][]byte) ([]eventlog.Result, error) {
	if s.keepContent(evs) {
		at := req.ReceivedAt.UnixMilli()
		for i, ev := range evs {
			ev.Content = &event.Content{Body: bytes.Clone(items[i]), ReceivedAt: at}
		}
	}
	return s.log.Append(req.HTTP.Context(), evs)
}

// keepContent reports whether the raw requests of these events' project
// are kept: a hook asks for them, and the project does not hash PII (a
// raw request holds the phone numbers and e-mails hashing keeps out).
func (s *Server) keepContent(evs []*event.Event) bool {
	if s.cfg.KeepContent == nil || len(evs) == 0 || !s.cfg.KeepContent(evs[0].ProjectID) {
		return false
	}
	p, ok := s.projects.Get(evs[0].ProjectID)
	return ok && !p.Settings.HashPII
}

// batchElements returns the raw elements of the array at path in body.
func batchElements(body []byte, path string) [][]byte {
	var out [][]byte
	gjson.GetBytes(body, path).ForEach(func(_, v gjson.Result) bool {
		out = append(out, []byte(v.Raw))
		return true
	})
	return out
}

// readBody reads the body of a POST within limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64) (*bytes.Buffer, error) {
	buf := bufferPool.Get().(*bytes.Buffer)
	if r.Method != http.MethodPost {
		return buf, nil
	}
	if r.ContentLength > limit {
		putBuffer(buf)
		return nil, tooLarge(limit)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		putBuffer(buf)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(limit)
		}
		return nil, dialect.Errorf(http.StatusBadRequest, "reading the body: %v", err)
	}
	return buf, nil
}

func tooLarge(limit int64) *dialect.Error {
	return dialect.Errorf(http.StatusRequestEntityTooLarge, "body is larger than the limit of %d bytes", limit)
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

// fail renders err: a dialect error as its status and JSON body, anything
// else (the log failed) as 503 with nothing stored.
func (s *Server) fail(w http.ResponseWriter, err error) {
	var de *dialect.Error
	if errors.As(err, &de) {
		for k, v := range de.Header {
			w.Header().Set(k, v)
		}
		writeJSON(w, de.Status, de)
		return
	}
	s.logger.Error("append to event log", "err", err)
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"message": "the event log is unavailable; nothing was stored, retry later"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"message":"internal error"}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

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
