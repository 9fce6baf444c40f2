// Package console is the web console served at / of the admin listener:
// server-rendered page shells (html/template) and plain ES modules that
// call the admin API, all embedded in the binary (no CDN, no build step).
//
// A browser signs in with the admin token and gets a session cookie
// (HttpOnly, SameSite=Strict, Secure under TLS, expiring); the admin API
// accepts that session as it accepts the bearer token, and every request
// that changes state must carry the session's CSRF token. No secret ever
// travels in a URL. Every answer forbids framing and sends a
// Content-Security-Policy without inline script.
package console

import (
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures the console.
type Config struct {
	// TokenHash is the SHA-256 of the admin token, which signs in.
	TokenHash [32]byte
	// SessionTTL is how long a session lasts (default 12h).
	SessionTTL time.Duration
	// MaxSessions bounds the sessions kept (default 1000; past it the one
	// that expires first goes).
	MaxSessions int
	// Version is shown in the footer and busts the static files' caches.
	Version string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Console is the console's handler, and the admin API's session check.
type Console struct {
	cfg      Config
	sessions *sessions
	pages    map[string]*template.Template
	static   http.Handler
	logger   *slog.Logger
	mux      *http.ServeMux
}

// page is one page of the console: its template and its title.
type page struct{ name, title string }

var pages = []page{
	{"overview", "Overview"}, {"live", "Live"}, {"events", "Events"}, {"projects", "Projects"},
	{"project", "Project"}, {"hooks", "Hooks"}, {"hook", "Hook"}, {"profiles", "Profiles"},
	{"signin", "Sign in"}, {"notfound", "Not found"},
}

// New returns the console.
func New(cfg Config, logger *slog.Logger) *Console {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 1000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Console{cfg: cfg, sessions: newSessions(cfg.SessionTTL, cfg.MaxSessions, cfg.Now), logger: logger,
		pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	for _, p := range pages {
		c.pages[p.name] = template.Must(template.ParseFS(templateFS, "templates/layout.html", "templates/"+p.name+".html"))
	}
	sub, _ := fs.Sub(staticFS, "static")
	c.static = http.StripPrefix("/static/", http.FileServerFS(sub))

	c.mux.HandleFunc("GET /static/", c.serveStatic)
	c.mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = "/static/icon.svg"
		c.serveStatic(w, r)
	})
	c.mux.HandleFunc("GET /signin", c.signinForm)
	c.mux.HandleFunc("POST /signin", c.signin)
	c.mux.HandleFunc("POST /signout", c.signout)
	for pattern, name := range map[string]string{
		"GET /{$}": "overview", "GET /live": "live", "GET /events": "events", "GET /projects": "projects",
		"GET /projects/{id}": "project", "GET /hooks": "hooks", "GET /hooks/new": "hook", "GET /hooks/{id}": "hook",
		"GET /profiles": "profiles",
	} {
		c.mux.HandleFunc(pattern, c.signedIn(name))
	}
	c.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		sess := c.sessions.get(r)
		if sess == nil {
			c.toSignin(w, r)
			return
		}
		c.render(w, r, http.StatusNotFound, "notfound", sess, nil)
	})
	return c
}

// ServeHTTP serves the console's pages, its static files and sign-in.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: under no-referrer a browser sends
	// "Origin: null" with its own form posts, and the origin is checked.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	c.mux.ServeHTTP(w, r)
}

// Authenticate is the admin API's check of a browser's session: a live
// session, with its CSRF token (X-CSRF-Token) when r changes state.
func (c *Console) Authenticate(r *http.Request) (bool, error) {
	return c.sessions.authenticate(r, r.Header.Get(csrfHeader))
}

func (c *Console) serveStatic(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	c.static.ServeHTTP(w, r)
}

// view is what a page's template sees.
type view struct {
	Title, Page, CSRF, Version string
	// ID is the page's subject (a project or hook id), from the path.
	ID string
	// Signin is the sign-in form's state.
	Signin *signinView
}

type signinView struct {
	Next, Token, Error string
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, sess *session, si *signinView) {
	t := c.pages[name]
	v := view{Page: name, Version: c.cfg.Version, Signin: si}
	for _, p := range pages {
		if p.name == name {
			v.Title = p.title
		}
	}
	if sess != nil {
		v.CSRF = sess.csrf
	}
	v.ID = r.PathValue("id")
	if name == "hook" && v.ID == "" {
		v.Title = "New hook"
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", v); err != nil {
		c.logger.Error("render console page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// signedIn serves page name to a signed-in browser, and sends any other
// to sign in.
func (c *Console) signedIn(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := c.sessions.get(r)
		if sess == nil {
			c.toSignin(w, r)
			return
		}
		c.render(w, r, http.StatusOK, name, sess, nil)
	}
}

func (c *Console) toSignin(w http.ResponseWriter, r *http.Request) {
	target := "/signin"
	if next := r.URL.RequestURI(); next != "/" && safeNext(next) {
		target += "?next=" + url.QueryEscape(next)
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// safeNext accepts only a path of this site as where to go after signing
// in (no //host, no scheme).
func safeNext(next string) bool {
	// Browsers drop tabs and newlines from a URL and read a backslash as
	// a slash: "/\t/evil.com" or "/\\evil.com" would leave the origin.
	// None is taken anywhere in the path.
	if len(next) > 2048 || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		strings.ContainsFunc(next, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return false
	}
	u, err := url.Parse(next)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil
}

func (c *Console) cookie(r *http.Request, name, value string, maxAge time.Duration) *http.Cookie {
	ck := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil}
	if maxAge < 0 {
		ck.MaxAge = -1
	} else {
		ck.MaxAge = int(maxAge / time.Second)
		ck.Expires = c.cfg.Now().Add(maxAge)
	}
	return ck
}

// signinForm shows the sign-in form, with a fresh token against login
// CSRF in a cookie and in the form.
func (c *Console) signinForm(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	if !safeNext(next) {
		next = "/"
	}
	if c.sessions.get(r) != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	tok := randomToken()
	http.SetCookie(w, c.cookie(r, signinCookie, tok, time.Hour))
	c.render(w, r, http.StatusOK, "signin", nil, &signinView{Next: next, Token: tok})
}

// signin checks the admin token and starts a session.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	next := r.PostForm.Get("next")
	if !safeNext(next) {
		next = "/"
	}
	fail := func(status int, msg string) {
		tok := randomToken()
		http.SetCookie(w, c.cookie(r, signinCookie, tok, time.Hour))
		c.render(w, r, status, "signin", nil, &signinView{Next: next, Token: tok, Error: msg})
	}
	ck, err := r.Cookie(signinCookie)
	form := r.PostForm.Get(csrfField)
	if err != nil || form == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(form)) != 1 || checkOrigin(r) != nil {
		fail(http.StatusForbidden, "The sign-in form expired or came from elsewhere (cookies are needed). Try again.")
		return
	}
	h := sha256.Sum256([]byte(strings.TrimSpace(r.PostForm.Get("token"))))
	if subtle.ConstantTimeCompare(h[:], c.cfg.TokenHash[:]) != 1 {
		c.logger.Info("console sign-in refused: wrong admin token", "remote", r.RemoteAddr)
		fail(http.StatusUnauthorized, "That is not the admin token.")
		return
	}
	value, _ := c.sessions.create()
	http.SetCookie(w, c.cookie(r, sessionCookie, value, c.cfg.SessionTTL))
	http.SetCookie(w, c.cookie(r, signinCookie, "", -1))
	c.logger.Info("console sign-in", "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// signout ends the session (the form carries its CSRF token).
func (c *Console) signout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	ok, err := c.sessions.authenticate(r, r.PostForm.Get(csrfField))
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	if ok {
		c.sessions.end(r)
	}
	http.SetCookie(w, c.cookie(r, sessionCookie, "", -1))
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}
