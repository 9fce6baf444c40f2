// Package ingest is the ingest listener's HTTP handler: limits, client
// address, CORS, one decoder per dialect, append to the durable log, and
// one place that renders every error.
package ingest

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
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
	// CreateProject, when set, creates a webhook project on the first
	// event sent to its id (webhook_create_projects).
	CreateProject func(ctx context.Context, id uint32) (*project.Project, error)
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
		webhook:  &dialect.Webhook{Projects: projects, NewUID: uids.Next, CreateProject: cfg.CreateProject},
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
	result, err := s.commitOne(req, ev)
	if err != nil {
		s.fail(w, err)
		return
	}
	s.m.events(dialect.DialectWebhook, []eventlog.Result{result})

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
		// the hot path. A repeat (by Idempotency-Key or the project's
		// webhook_dedup_field) names the original and "duplicate":true.
		b := make([]byte, 0, 64+len(ev.Key))
		b = append(b, `{"key":`...)
		b = event.AppendString(b, ev.Key)
		b = append(b, `,"id":`...)
		b = result.ID.AppendJSON(b)
		if result.Duplicate {
			b = append(b, `,"duplicate":true`...)
		}
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

// cookieJar renders the uid cookie: HttpOnly, three years. Under TLS it
// is SameSite=None; Secure, so pixels on other sites carry it; on plain
// HTTP browsers drop SameSite=None without Secure, so it is SameSite=Lax
// there. The attributes change once a second (Expires), so they are
// rendered once a second.
type cookieJar struct {
	mu     sync.Mutex
	sec    int64
	plain  string // "; Path=/; Expires=…; Max-Age=…; HttpOnly; SameSite=Lax"
	secure string // "; Path=/; Expires=…; Max-Age=…; HttpOnly; Secure; SameSite=None"
}

func (c *cookieJar) uid(uid string, now time.Time, secure bool) string {
	sec := now.Unix()
	c.mu.Lock()
	if sec != c.sec || c.plain == "" {
		attrs := func(secure bool, mode http.SameSite) string {
			full := (&http.Cookie{
				Name: "uid", Value: "0", Path: "/",
				MaxAge: uidCookieAge, Expires: now.Add(uidCookieAge * time.Second),
				HttpOnly: true, Secure: secure, SameSite: mode,
			}).String()
			return strings.TrimPrefix(full, "uid=0")
		}
		c.plain = attrs(false, http.SameSiteLaxMode)
		c.secure = attrs(true, http.SameSiteNoneMode)
		c.sec = sec
	}
	a := c.plain
	if secure {
		a = c.secure
	}
	c.mu.Unlock()
	return "uid=" + uid + a
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

// commit appends the events of one request. items, when given, holds the
// raw batch element each event came from, kept as its content (not the
// whole batch, which could make every message of a hook batch carry a
// megabyte); otherwise a project that keeps contents keeps the request:
// its body or, without one, its query string without the credential.
// Headers, where the other credentials travel (Authorization, X-API-Key),
// are never kept. pos[i] is the position of evs[i] in the request (nil:
// 0, 1, …), which names it under an Idempotency-Key.
//
// conflicts[i] is true when evs[i] repeats an Idempotency-Key of an
// earlier request that carried something else: nothing was stored for it.
func (s *Server) commit(req *dialect.Request, evs []*event.Event, items [][]byte, pos []int) (results []eventlog.Result, conflicts []bool, err error) {
	idemKey, err := idempotencyKey(req.HTTP)
	if err != nil {
		return nil, nil, err
	}
	if s.keepContent(evs) {
		at := req.ReceivedAt.UnixMilli()
		if items != nil {
			for i, ev := range evs {
				ev.Content = &event.Content{Body: bytes.Clone(items[i]), ReceivedAt: at}
			}
		} else {
			var raw []byte
			if len(req.Body) > 0 {
				// A copy: the body's buffer goes back to a pool.
				raw = bytes.Clone(req.Body)
			} else {
				raw = []byte(withoutCredentials(req.HTTP.URL.RawQuery))
			}
			c := &event.Content{Body: raw, ReceivedAt: at}
			for _, ev := range evs {
				ev.Content = c
			}
		}
	}
	var idem []bool // evs[i] is deduplicated by the Idempotency-Key
	if idemKey != "" {
		idem = make([]bool, len(evs))
		for i, ev := range evs {
			if ev.DedupKey != "" {
				continue // its own dedup key (hitId, messageId, …) is stronger
			}
			p := i
			if pos != nil {
				p = pos[i]
			}
			ev.DedupKey = idempotencyPrefix + idemKey + ":" + strconv.Itoa(p)
			idem[i] = true
		}
	}
	results, err = s.log.Append(req.HTTP.Context(), evs)
	if err != nil || idem == nil {
		return results, nil, err
	}
	return results, s.idempotencyConflicts(req, evs, results, idem), nil
}

// commitOne commits a request of one event; an Idempotency-Key first used
// for another request is a 422.
func (s *Server) commitOne(req *dialect.Request, ev *event.Event) (eventlog.Result, error) {
	results, conflicts, err := s.commit(req, []*event.Event{ev}, nil, nil)
	if err != nil {
		return eventlog.Result{}, err
	}
	if conflicts != nil && conflicts[0] {
		return eventlog.Result{}, idempotencyConflict(req.HTTP)
	}
	return results[0], nil
}

// withoutCredentials returns a raw query string without its ?token=
// pairs, byte for byte otherwise.
func withoutCredentials(rawQuery string) string {
	if !strings.Contains(rawQuery, "token") && !strings.Contains(rawQuery, "%") {
		return rawQuery
	}
	parts := strings.Split(rawQuery, "&")
	kept := parts[:0]
	for _, part := range parts {
		k, _, _ := strings.Cut(part, "=")
		if key, err := url.QueryUnescape(k); err == nil && key == dialect.TokenParam {
			continue
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, "&")
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

// readBody reads the body of a POST within limit, decoding its
// Content-Encoding (gzip, deflate): the limit applies to the decoded body
// as well as to the bytes on the wire, so a compression bomb stops at it.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64) (*bytes.Buffer, error) {
	buf := bufferPool.Get().(*bytes.Buffer)
	if r.Method != http.MethodPost {
		return buf, nil
	}
	codings, err := contentCodings(r.Header)
	if err != nil {
		putBuffer(buf)
		return nil, err
	}
	if r.ContentLength > limit {
		putBuffer(buf)
		return nil, tooLarge(limit)
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, limit)
	var release []func()
	defer func() {
		for _, f := range release {
			f()
		}
	}()
	// Codings are listed in the order they were applied: undo the last first.
	for i := len(codings) - 1; i >= 0; i-- {
		dec, done, err := decoder(codings[i], body)
		if err != nil {
			putBuffer(buf)
			return nil, err
		}
		body, release = dec, append(release, done)
	}
	if len(codings) > 0 {
		body = io.LimitReader(body, limit+1)
	}
	n, err := buf.ReadFrom(body)
	if err != nil {
		putBuffer(buf)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(limit)
		}
		if len(codings) > 0 {
			return nil, dialect.FieldError(http.StatusBadRequest, "body", "cannot be decoded as "+strings.Join(codings, ", ")+": "+err.Error())
		}
		return nil, dialect.Errorf(http.StatusBadRequest, "reading the body: %v", err)
	}
	if n > limit {
		putBuffer(buf)
		return nil, dialect.Errorf(http.StatusRequestEntityTooLarge, "body is larger than the limit of %d bytes once decoded (%s)", limit, strings.Join(codings, ", "))
	}
	return buf, nil
}

// contentCodings returns the request's content codings, in the order
// applied, without identity; a coding sluice cannot decode is a 415.
func contentCodings(h http.Header) ([]string, error) {
	vals := h.Values("Content-Encoding")
	if len(vals) == 0 {
		return nil, nil
	}
	var out []string
	for _, v := range vals {
		for _, c := range strings.Split(v, ",") {
			c = strings.ToLower(strings.TrimSpace(c))
			switch c {
			case "", "identity":
			case "gzip", "x-gzip", "deflate":
				out = append(out, c)
			default:
				return nil, &dialect.Error{Status: http.StatusUnsupportedMediaType,
					Message: "Content-Encoding " + strconv.Quote(c) + " is not supported; send the body uncompressed or with gzip or deflate",
					Errors:  event.FieldErrors{{Path: "Content-Encoding", Message: "must be gzip, deflate or identity"}},
					Header:  map[string]string{"Accept-Encoding": "gzip, deflate"}}
			}
		}
	}
	if len(out) > 2 {
		return nil, dialect.FieldError(http.StatusUnsupportedMediaType, "Content-Encoding", "at most two codings are decoded")
	}
	return out, nil
}

var gzipPool sync.Pool

// decoder wraps r in a reader of the coding; done returns its state to a
// pool. deflate is the zlib format (RFC 9110), or a raw deflate stream,
// which some senders send under that name.
func decoder(coding string, r io.Reader) (io.Reader, func(), error) {
	bad := func(err error) error {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return dialect.FieldError(http.StatusBadRequest, "body", "cannot be decoded as "+coding+": "+err.Error())
	}
	switch coding {
	case "gzip", "x-gzip":
		zr, _ := gzipPool.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(r)
		} else {
			err = zr.Reset(r)
		}
		if err != nil {
			return nil, nil, bad(err)
		}
		zr.Multistream(true)
		return zr, func() { gzipPool.Put(zr) }, nil
	default: // deflate
		br := bufio.NewReaderSize(r, 512)
		head, err := br.Peek(2)
		if err != nil && len(head) < 2 {
			return nil, nil, bad(fmt.Errorf("stream too short: %w", err))
		}
		if head[0]&0x0f == 8 && (uint16(head[0])<<8|uint16(head[1]))%31 == 0 {
			zr, err := zlib.NewReader(br)
			if err != nil {
				return nil, nil, bad(err)
			}
			return zr, func() { zr.Close() }, nil
		}
		fr := flate.NewReader(br)
		return fr, func() { fr.Close() }, nil
	}
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
