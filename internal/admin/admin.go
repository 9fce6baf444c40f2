// Package admin is the admin listener: the REST API under /api/v1 (always
// behind the admin token), Prometheus metrics and health checks. Handlers
// return a value or an error; one function renders both.
package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/live"
	"github.com/sluicehq/sluice/internal/profile"
	"github.com/sluicehq/sluice/internal/project"
	"github.com/sluicehq/sluice/internal/strict"
)

// EventReader is the part of the event log the API reads.
type EventReader interface {
	Read(ctx context.Context, q eventlog.Query) ([]eventlog.Record, error)
	Head() event.ID
	Contents(ctx context.Context, ids []int64) (map[int64]event.Content, error)
}

// Live is the one follower of the log, fanning out to the live stream and
// to the long-polls of GET /api/v1/events?wait= (live.Hub).
type Live interface {
	Subscribe(f live.Filter, backlog int) (*live.Subscription, error)
}

// Sessions authenticates browser requests by the console's session cookie.
type Sessions interface {
	// Authenticate reports whether r carries a live session. For a method
	// that changes state, a session without its CSRF token is an error
	// (answered 403).
	Authenticate(r *http.Request) (bool, error)
}

// People answers the questions about persons: profiles by identity,
// their timelines, their erasure.
type People interface {
	Find(ctx context.Context, projectID uint32, idType, value string) (*profile.Profile, error)
	Events(ctx context.Context, projectID uint32, idType, value string, q profile.TimelineQuery) (*profile.EventsPage, error)
	Erase(ctx context.Context, projectID uint32, idType, value string) (profile.ErasedAnswer, error)
}

// Config configures the admin handler.
type Config struct {
	// TokenHash is the SHA-256 of the admin token.
	TokenHash [32]byte
	// Ready is nil while the server takes traffic, else why not (for
	// /readyz).
	Ready func() error
	// MaxWait caps the long-poll of GET /api/v1/events?wait= (default 60s).
	MaxWait time.Duration
	// Profiles answers the profile lookups; nil disables them.
	Profiles People
	// Hooks manages action hooks; nil disables the hook endpoints.
	Hooks *hook.Manager
	// Live feeds GET /api/v1/live and the long-polls; nil answers waits at
	// once and the live stream with 404.
	Live Live
	// Sessions, when set, lets the console's signed-in browsers call the
	// API as holders of the admin token do.
	Sessions Sessions
	// Overview samples the server's metrics for GET /api/v1/overview; nil
	// answers 404.
	Overview *Sampler
	// Console serves every path the API and the operational endpoints do
	// not; nil answers them 404.
	Console http.Handler
}

// Server is the admin handler.
type Server struct {
	cfg      Config
	projects *project.Store
	events   EventReader
	logger   *slog.Logger
	mux      *http.ServeMux
	routes   []string // "METHOD /path" of every API endpoint, for the OpenAPI test
}

// New returns the admin handler.
func New(cfg Config, projects *project.Store, events EventReader, gatherer prometheus.Gatherer, logger *slog.Logger) *Server {
	if cfg.Ready == nil {
		cfg.Ready = func() error { return nil }
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 60 * time.Second
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, projects: projects, events: events, logger: logger, mux: http.NewServeMux()}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError)}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.cfg.Ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	s.api("GET /api/v1/projects", s.listProjects)
	s.api("POST /api/v1/projects", s.createProject)
	s.api("GET /api/v1/projects/{id}", s.getProject)
	s.api("PATCH /api/v1/projects/{id}", s.updateProject)
	s.api("DELETE /api/v1/projects/{id}", s.deleteProject)
	s.api("GET /api/v1/projects/{id}/tokens", s.listTokens)
	s.api("POST /api/v1/projects/{id}/tokens", s.createToken)
	s.api("DELETE /api/v1/projects/{id}/tokens/{token}", s.revokeToken)
	s.api("GET /api/v1/projects/{id}/event-types", s.listEventTypes)
	s.api("POST /api/v1/projects/{id}/event-types", s.createEventType)
	s.api("GET /api/v1/projects/{id}/event-types/{slug}", s.getEventType)
	s.api("PATCH /api/v1/projects/{id}/event-types/{slug}", s.updateEventType)
	s.api("DELETE /api/v1/projects/{id}/event-types/{slug}", s.deleteEventType)
	s.api("GET /api/v1/projects/{id}/schemas", s.listSchemas)
	s.api("POST /api/v1/projects/{id}/schemas", s.registerSchema)
	s.api("GET /api/v1/projects/{id}/schemas/{type}", s.getSchema)
	s.api("DELETE /api/v1/projects/{id}/schemas/{type}", s.deleteSchema)
	s.api("GET /api/v1/schemas", s.listBuiltinSchemas)
	s.api("GET /api/v1/schemas/{type}", s.getBuiltinSchema)
	s.api("GET /api/v1/projects/{id}/profiles/{idType}/{value}", s.getProfile)
	s.api("GET /api/v1/projects/{id}/profiles/{idType}/{value}/events", s.profileEvents)
	s.api("DELETE /api/v1/projects/{id}/profiles/{idType}/{value}", s.eraseProfile)
	s.api("GET /api/v1/events", s.listEvents)
	s.api("GET /api/v1/events/{eventID}", s.getEvent)
	s.api("GET /api/v1/events/export", s.exportEvents)
	s.api("GET /api/v1/live", s.liveStream)
	s.api("GET /api/v1/overview", s.overview)
	s.api("GET /api/v1/hooks", s.listHooks)
	s.api("POST /api/v1/hooks", s.createHook)
	s.api("GET /api/v1/hooks/{id}", s.getHook)
	s.api("PUT /api/v1/hooks/{id}", s.updateHook)
	s.api("DELETE /api/v1/hooks/{id}", s.deleteHook)
	s.api("POST /api/v1/hooks/{id}/activate", s.activateHook)
	s.api("POST /api/v1/hooks/{id}/stop", s.stopHook)
	s.api("POST /api/v1/hooks/{id}/clone", s.cloneHook)
	s.api("POST /api/v1/hooks/{id}/rotate-secret", s.rotateHookSecret)
	s.api("POST /api/v1/hooks/{id}/test", s.testHook)
	s.api("GET /api/v1/hooks/{id}/deliveries", s.hookDeliveries)
	s.api("GET /api/v1/hooks/{id}/dead-letters", s.listDeadLetters)
	s.api("POST /api/v1/hooks/{id}/dead-letters/replay", s.replayDeadLetters)
	s.api("POST /api/v1/hooks/{id}/dead-letters/{dl}/replay", s.replayDeadLetters)
	// Profiling, behind the admin token like the API (not a session: a
	// browser has no business there).
	s.mux.Handle("/debug/pprof/", s.guard(http.HandlerFunc(pprof.Index)))
	s.mux.Handle("/debug/pprof/profile", s.guard(http.HandlerFunc(pprof.Profile)))
	s.mux.Handle("/debug/pprof/trace", s.guard(http.HandlerFunc(pprof.Trace)))
	s.mux.Handle("/debug/pprof/symbol", s.guard(http.HandlerFunc(pprof.Symbol)))
	s.mux.Handle("/debug/pprof/cmdline", s.guard(http.HandlerFunc(pprof.Cmdline)))
	s.mux.HandleFunc("/api/", s.authenticated(func(r *http.Request) (any, error) {
		return nil, errorf(http.StatusNotFound, "no API endpoint %s %s", r.Method, r.URL.Path)
	}))
	if cfg.Console != nil {
		s.mux.Handle("/", cfg.Console)
	} else {
		s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusNotFound, apiError{Status: http.StatusNotFound, Message: "not found; the API is under /api/v1"})
		})
	}
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// handlerFunc is an API handler: it returns what to encode, or an error.
type handlerFunc func(r *http.Request) (any, error)

func (s *Server) api(pattern string, h handlerFunc) {
	s.routes = append(s.routes, pattern)
	s.mux.HandleFunc(pattern, s.authenticated(h))
}

// guard lets only holders of the admin token through to h.
func (s *Server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if problem := s.bearer(r); problem != "" {
			s.unauthorized(w, problem)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) unauthorized(w http.ResponseWriter, problem string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="sluice-admin"`)
	writeJSON(w, http.StatusUnauthorized, apiError{Status: http.StatusUnauthorized, Message: problem})
}

// streamer is a handler's answer that writes itself (a stream).
type streamer func(w http.ResponseWriter)

// authenticated checks the admin token and renders the handler's outcome.
func (s *Server) authenticated(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		problem, err := s.authorized(r)
		if err != nil {
			writeJSON(w, http.StatusForbidden, apiError{Status: http.StatusForbidden, Message: err.Error()})
			return
		}
		if problem != "" {
			s.unauthorized(w, problem)
			return
		}
		if err := checkURLText(r); err != nil {
			s.renderError(w, r, err)
			return
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.logger.Error("panic in admin handler", "panic", p, "path", r.URL.Path, "stack", string(debug.Stack()))
				writeJSON(w, http.StatusInternalServerError, apiError{Status: 500, Message: "internal error"})
			}
		}()
		v, err := h(r)
		if err != nil {
			s.renderError(w, r, err)
			return
		}
		switch v := v.(type) {
		case streamer:
			v(w)
		case nil:
			w.WriteHeader(http.StatusNoContent)
		case created:
			writeJSON(w, http.StatusCreated, v.v)
		case rawJSON:
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(v)))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(v)
		default:
			writeJSON(w, http.StatusOK, v)
		}
	}
}

// authorized reports whether r carries the admin token, else a console
// session (with its CSRF token when it changes state).
func (s *Server) authorized(r *http.Request) (string, error) {
	if r.Header.Get("Authorization") != "" || s.cfg.Sessions == nil {
		return s.bearer(r), nil
	}
	ok, err := s.cfg.Sessions.Authenticate(r)
	if err != nil || ok {
		return "", err
	}
	return tokenRequired, nil
}

const tokenRequired = "admin token required: Authorization: Bearer <token>"

// bearer checks the request's admin token: it returns "" when it is the
// token, otherwise what is wrong (none sent, not a bearer token, or
// another token).
func (s *Server) bearer(r *http.Request) string {
	scheme, token, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	token = strings.TrimSpace(token)
	switch {
	case scheme == "":
		return tokenRequired
	case !strings.EqualFold(scheme, "bearer"):
		return "the Authorization header must be Bearer <admin token>"
	case token == "":
		return tokenRequired
	}
	h := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(h[:], s.cfg.TokenHash[:]) != 1 {
		return "invalid admin token"
	}
	return ""
}

// created marks a value answered with 201.
type created struct{ v any }

// rawJSON is written as is.
type rawJSON []byte

// apiError is the JSON error body of the admin API.
type apiError struct {
	Status  int               `json:"-"`
	Message string            `json:"message"`
	Errors  event.FieldErrors `json:"errors,omitempty"`
}

func (e *apiError) Error() string { return e.Message }

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{Status: status, Message: fmt.Sprintf(format, args...)}
}

// badField is a 400 about one field of the body or one query parameter.
func badField(path, format string, args ...any) *apiError {
	msg := fmt.Sprintf(format, args...)
	return &apiError{Status: http.StatusBadRequest, Message: path + ": " + msg, Errors: event.FieldErrors{{Path: path, Message: msg}}}
}

func (s *Server) renderError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, project.ErrNotFound):
		ae = &apiError{Status: http.StatusNotFound, Message: err.Error()}
	case errors.Is(err, project.ErrExists):
		ae = &apiError{Status: http.StatusConflict, Message: err.Error()}
	case errors.Is(err, hook.ErrNotFound):
		ae = &apiError{Status: http.StatusNotFound, Message: err.Error()}
	case errors.Is(err, hook.ErrInvalid):
		ae = &apiError{Status: http.StatusBadRequest, Message: err.Error()}
	case errors.Is(err, project.ErrInvalid):
		ae = &apiError{Status: http.StatusBadRequest, Message: err.Error()}
	case errors.Is(err, context.Canceled):
		// The client went away (then nothing reads this), or the server
		// is stopping and ends its long polls: a 503 says so, where an
		// empty 200 read as a broken answer.
		w.Header().Set("Retry-After", "1")
		ae = &apiError{Status: http.StatusServiceUnavailable, Message: "the server is stopping: try again once it is back"}
	default:
		s.logger.Error("admin API", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = &apiError{Status: http.StatusInternalServerError, Message: "internal error"}
	}
	// An error that names its fields (hook.Error) lists them.
	var fe interface{ FieldErrors() event.FieldErrors }
	if ae.Errors == nil && ae.Status < 500 && errors.As(err, &fe) {
		ae.Errors = fe.FieldErrors()
		var he *hook.Error
		if errors.As(err, &he) {
			ae.Message = he.Message
		}
	}
	writeJSON(w, ae.Status, ae)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"message":"internal error"}`)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// checkURLText refuses a path or query that does not decode to UTF-8 text:
// what the API stores and serves is text.
func checkURLText(r *http.Request) error {
	if _, problem := event.CheckText(r.URL.Path); problem != "" {
		return &apiError{Status: http.StatusBadRequest, Message: "the path is not valid UTF-8 text: " + problem,
			Errors: event.FieldErrors{{Path: "path", Message: "is not valid UTF-8 text: " + problem}}}
	}
	for k, vs := range r.URL.Query() {
		_, problem := event.CheckText(k)
		for _, v := range vs {
			if problem == "" {
				_, problem = event.CheckText(v)
			}
		}
		if problem != "" {
			path := "query" + event.PathSegment(strings.ToValidUTF8(k, "\uFFFD"))
			return &apiError{Status: http.StatusBadRequest, Message: path + " is not valid UTF-8 text: " + problem,
				Errors: event.FieldErrors{{Path: path, Message: "is not valid UTF-8 text: " + problem}}}
		}
	}
	return nil
}

// decode reads a JSON request body strictly into v.
func decode(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "reading the body: %v", err)
	}
	if len(b) > 1<<20 {
		return errorf(http.StatusRequestEntityTooLarge, "body is larger than 1 MiB")
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return &apiError{Status: http.StatusBadRequest, Message: "a JSON body is required", Errors: event.FieldErrors{{Path: "", Message: "a JSON body is required"}}}
	}
	if json.Valid(b) {
		if te := event.CheckJSONText(b); te != nil {
			return &apiError{Status: http.StatusBadRequest, Message: "invalid body: " + te.Error(),
				Errors: event.FieldErrors{{Path: te.Path, Message: te.Message()}}}
		}
	}
	if err := strict.DecodeJSON(b, v); err != nil {
		var fe event.FieldErrors
		if !errors.As(err, &fe) {
			fe = event.FieldErrors{{Message: err.Error()}}
		}
		return &apiError{Status: http.StatusBadRequest, Message: "invalid body: " + fe.Error(), Errors: fe}
	}
	return nil
}

func pathProject(r *http.Request) (uint32, error) {
	n, err := strconv.ParseUint(r.PathValue("id"), 10, 32)
	if err != nil {
		return 0, &apiError{Status: http.StatusBadRequest, Message: "project id must be a non-negative integer below 4294967296",
			Errors: event.FieldErrors{{Path: "id", Message: "not a project id"}}}
	}
	return uint32(n), nil
}
