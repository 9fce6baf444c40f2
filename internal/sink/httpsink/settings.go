package httpsink

import (
	"maps"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"

	"github.com/sluicehq/sluice/internal/sink"
)

// Type is the delivery type, and the key of its settings.
const Type = "http"

// Bounds of the settings (docs/hooks.md, "Limits").
const (
	MaxHeaders     = 50
	MaxHeaderName  = 256
	MaxHeaderValue = 4096
	MaxRegexLength = 1024
	DefaultTimeout = 10 * time.Second
)

// Destination is the http delivery type: batches POSTed as one signed
// JSON array.
func Destination() sink.Destination {
	return sink.Destination{Type: Type, Section: "http", New: func() sink.Settings { return &Settings{} }}
}

// Settings are an http hook's: where it POSTs its batches.
type Settings struct {
	URL     string            `json:"url" yaml:"url"`
	Timeout sink.Duration     `json:"timeout" yaml:"timeout"`
	Headers map[string]string `json:"headers,omitempty" yaml:"headers"`
	Auth    *Auth             `json:"auth,omitempty" yaml:"auth"`
	// SuccessRegex, when set, must match the response body.
	SuccessRegex string `json:"success_regex,omitempty" yaml:"success_regex"`
}

var _ sink.Settings = (*Settings)(nil)

func (s *Settings) Defaults() {
	if s.Timeout == 0 {
		s.Timeout = sink.Duration(DefaultTimeout)
	}
}

func (s *Settings) AttemptTimeout() time.Duration { return time.Duration(s.Timeout) }

// Check validates the URL, timeout, regex, auth and headers.
func (s *Settings) Check(p *sink.Problems) {
	p.URL("url", s.URL, "set http.auth")
	p.Duration("timeout", s.Timeout, time.Millisecond, 10*time.Minute)
	if s.SuccessRegex != "" {
		compileRegex(p, s.SuccessRegex)
	}
	withAuth := false
	if a := s.Auth; a != nil {
		checkAuth(p, a)
		withAuth = a.Type == "basic" || a.Type == "bearer"
	}
	checkHeaders(p, s.Headers, withAuth)
}

func (s *Settings) Secrets() []sink.Secret {
	if s.Auth == nil {
		return nil
	}
	return []sink.Secret{{Name: "password", Value: &s.Auth.Password}, {Name: "token", Value: &s.Auth.Token}}
}

// Needs nothing: the messages go as they are.
func (s *Settings) Needs() sink.Needs { return sink.Needs{} }

// NewSink makes the sink, signing with the hook's secrets.
func (s *Settings) NewSink(env sink.Env) (sink.Sink, error) {
	cfg := Config{URL: s.URL, Timeout: time.Duration(s.Timeout), Header: s.Headers, Secrets: env.Signing, Guard: env.Guard, Now: env.Now, Conns: env.InFlight}
	if s.SuccessRegex != "" {
		re, err := regexp.Compile(s.SuccessRegex)
		if err != nil {
			return nil, err
		}
		cfg.SuccessRegex = re
	}
	if s.Auth != nil {
		cfg.Auth = *s.Auth
	}
	return New(cfg)
}

func compileRegex(p *sink.Problems, src string) {
	if len(src) > MaxRegexLength {
		p.Add("success_regex", "at most %d bytes", MaxRegexLength)
		return
	}
	if _, err := regexp.Compile(src); err != nil {
		p.Add("success_regex", "%v", err)
	}
}

// sluiceHeaders are set by sluice or by the HTTP client on every request:
// a header of the hook would be overwritten or would break the request.
var sluiceHeaders = map[string]bool{
	"Content-Type": true, "Content-Length": true, "Content-Encoding": true, "Transfer-Encoding": true, "Host": true,
	"Connection": true, "Te": true, "Trailer": true, "Upgrade": true, "Keep-Alive": true, "Proxy-Connection": true,
	"User-Agent": true, "Webhook-Id": true, "Webhook-Timestamp": true, "Webhook-Signature": true,
}

// checkHeaders validates the headers: names are HTTP tokens, values
// carry no CR, LF or other control character, none is one sluice sets.
func checkHeaders(p *sink.Problems, hs map[string]string, withAuth bool) {
	if len(hs) > MaxHeaders {
		p.Add("headers", "at most %d headers", MaxHeaders)
		return
	}
	seen := map[string]string{}
	for _, k := range sortedKeys(hs) {
		path, v := sink.Key("headers", k), hs[k]
		canon := textproto.CanonicalMIMEHeaderKey(k)
		switch {
		case !httpguts.ValidHeaderFieldName(k):
			p.Add(path, "not a header name: letters, digits and !#$%%&'*+-.^_`|~ only")
		case len(k) > MaxHeaderName:
			p.Add(path, "a header name of at most %d bytes", MaxHeaderName)
		case sluiceHeaders[canon]:
			p.Add(path, "%s is set by sluice on every request", canon)
		case canon == "Authorization" && withAuth:
			p.Add(path, "Authorization is set by http.auth: remove one of them")
		case seen[canon] != "":
			p.Add(path, "the same header as %q (names are not case-sensitive)", seen[canon])
		case !httpguts.ValidHeaderFieldValue(v):
			p.Add(path, "the value has a CR, LF or another control character")
		case len(v) > MaxHeaderValue:
			p.Add(path, "a value of at most %d bytes", MaxHeaderValue)
		case !utf8.ValidString(v):
			p.Add(path, "the value is not valid UTF-8")
		}
		seen[canon] = k
	}
}

// checkAuth validates auth.
func checkAuth(p *sink.Problems, a *Auth) {
	switch a.Type {
	case "", "none":
		if a.Username != "" || a.Password != "" || a.Token != "" {
			p.Add("auth.type", "basic or bearer, to use a username, password or token")
		}
	case "basic":
		p.Text("auth.username", a.Username, true, sink.MaxCredential)
		if strings.Contains(a.Username, ":") {
			p.Add("auth.username", "a basic username cannot contain ':'")
		}
		p.Text("auth.password", a.Password, false, sink.MaxCredential)
	case "bearer":
		p.Text("auth.token", a.Token, true, sink.MaxCredential)
		if a.Token != strings.TrimSpace(a.Token) || strings.Contains(a.Token, " ") {
			p.Add("auth.token", "no spaces")
		}
	default:
		p.Add("auth.type", "none, basic or bearer")
	}
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
