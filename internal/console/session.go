package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Cookie and header names.
const (
	sessionCookie = "sluice_session"
	signinCookie  = "sluice_signin" // the sign-in form's CSRF token
	csrfHeader    = "X-CSRF-Token"
	csrfField     = "csrf"
)

// sessions holds the signed-in browsers in memory: a restart signs every
// browser out. Only the SHA-256 of a session cookie is kept.
type sessions struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	m  map[[32]byte]*session
}

type session struct {
	csrf    string
	expires time.Time
}

func newSessions(ttl time.Duration, max int, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, max: max, now: now, m: map[[32]byte]*session{}}
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails on Linux (crypto/rand panics otherwise)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session and returns its cookie value.
func (s *sessions) create() (cookie string, sess *session) {
	cookie = randomToken()
	sess = &session{csrf: randomToken(), expires: s.now().Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, v := range s.m {
		if !now.Before(v.expires) {
			delete(s.m, k)
		}
	}
	// At the bound, the session that expires first goes.
	for len(s.m) >= s.max {
		var oldest [32]byte
		var at time.Time
		for k, v := range s.m {
			if at.IsZero() || v.expires.Before(at) {
				oldest, at = k, v.expires
			}
		}
		delete(s.m, oldest)
	}
	s.m[sha256.Sum256([]byte(cookie))] = sess
	return cookie, sess
}

// get returns the live session of r, if any.
func (s *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	k := sha256.Sum256([]byte(c.Value))
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[k]
	if !ok {
		return nil
	}
	if !s.now().Before(sess.expires) {
		delete(s.m, k)
		return nil
	}
	return sess
}

// end ends the session of r.
func (s *sessions) end(r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.mu.Lock()
		delete(s.m, sha256.Sum256([]byte(c.Value)))
		s.mu.Unlock()
	}
}

// Errors of Authenticate.
var (
	errCSRF   = errors.New("the session's CSRF token is missing or wrong: send it as X-CSRF-Token (the console does)")
	errOrigin = errors.New("a request that changes state must come from the console's own origin")
)

// safe methods change nothing and need no CSRF token.
func safe(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// checkOrigin refuses a request whose Origin (sent by browsers with every
// POST) is another site than the listener itself.
func checkOrigin(r *http.Request) error {
	o := r.Header.Get("Origin")
	if o == "" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || u.Host != r.Host {
		return errOrigin
	}
	return nil
}

// authenticate reports whether r carries a live session; a state-changing
// request also needs the session's CSRF token in csrf (a header or a form
// field) and no foreign Origin.
func (s *sessions) authenticate(r *http.Request, csrf string) (bool, error) {
	sess := s.get(r)
	if sess == nil {
		return false, nil
	}
	if safe(r.Method) {
		return true, nil
	}
	if err := checkOrigin(r); err != nil {
		return false, err
	}
	if csrf == "" || subtle.ConstantTimeCompare([]byte(csrf), []byte(sess.csrf)) != 1 {
		return false, errCSRF
	}
	return true, nil
}
