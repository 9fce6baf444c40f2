package sink

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/strict"
)

// Bounds shared by the destinations' settings.
const (
	MaxURLLength  = 2048
	MaxCredential = 4096 // a username, password, token or API secret
)

// Problems collects the violations of one hook definition, each with the
// path of its field. In scopes it to a section, so that a destination
// names its fields as they are inside its section.
type Problems struct {
	list   *event.FieldErrors
	prefix string
}

// NewProblems returns an empty collection.
func NewProblems() *Problems { return &Problems{list: &event.FieldErrors{}} }

// In returns p scoped to path: In("http").Add("url", …) adds "http.url".
func (p *Problems) In(path string) *Problems {
	return &Problems{list: p.list, prefix: p.path(path) + "."}
}

func (p *Problems) path(path string) string {
	if path == "" {
		return strings.TrimSuffix(p.prefix, ".")
	}
	return p.prefix + path
}

// Add records a violation at path ("" is the scope itself).
func (p *Problems) Add(path, format string, a ...any) {
	p.list.Add(p.path(path), fmt.Sprintf(format, a...))
}

// Errors are the violations so far, in the order found.
func (p *Problems) Errors() event.FieldErrors { return *p.list }

// Key is the path of a map member: headers["X-Team"].
func Key(path, k string) string { return strict.Key(path, k) }

// Text refuses an empty (when required), overlong, non-UTF-8 or
// control-character value.
func (p *Problems) Text(path, s string, required bool, max int) {
	switch {
	case s == "" && required:
		p.Add(path, "required")
	case len(s) > max:
		p.Add(path, "at most %d bytes", max)
	case !utf8.ValidString(s):
		p.Add(path, "not valid UTF-8")
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		p.Add(path, "a control character (CR, LF, tab, …) is not allowed")
	}
}

// Duration refuses d outside lo..hi.
func (p *Problems) Duration(path string, d Duration, lo, hi time.Duration) {
	if d < Duration(lo) || d > Duration(hi) {
		p.Add(path, "%v to %v", ShortDuration(lo), ShortDuration(hi))
	}
}

// URL checks an http:// or https:// URL (schemes, when given, narrow it);
// credentials says where they go instead of the URL ("set http.auth").
func (p *Problems) URL(path, raw, credentials string, schemes ...string) *url.URL {
	if len(schemes) == 0 {
		schemes = []string{"http", "https"}
	}
	want := strings.Join(schemes, ":// or ") + "://"
	if raw == "" {
		p.Add(path, "required: an %s URL", want)
		return nil
	}
	if len(raw) > MaxURLLength {
		p.Add(path, "at most %d bytes", MaxURLLength)
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		p.Add(path, "not a URL: %v", err)
		return nil
	}
	okScheme := false
	for _, s := range schemes {
		okScheme = okScheme || u.Scheme == s
	}
	switch {
	case !okScheme:
		p.Add(path, "an %s URL", want)
	case u.Opaque != "" || u.Host == "":
		p.Add(path, "no host: write %s://host[:port]/path", u.Scheme)
	case u.User != nil:
		p.Add(path, "credentials in the URL are not allowed: %s", credentials)
	case u.Fragment != "" || strings.HasSuffix(raw, "#"):
		p.Add(path, "a fragment (#…) is never sent: remove it")
	case strings.ContainsFunc(raw, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		p.Add(path, "a control character (CR, LF, tab, …) is not allowed")
	default:
		if port := u.Port(); port != "" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				p.Add(path, "port %s: 1 to 65535", port)
				return nil
			}
		} else if strings.HasSuffix(u.Host, ":") {
			p.Add(path, "an empty port: write host:port or leave the port out")
			return nil
		}
		if !ValidHost(u.Hostname()) {
			p.Add(path, "%q is not a host name or an IP address", u.Hostname())
			return nil
		}
		return u
	}
	return nil
}

// ValidHost accepts an IP address or a DNS name (letters, digits, '-',
// '_' in dot-separated labels of at most 63 bytes).
func ValidHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return !strings.Contains(h, "%") // no zones
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// TLSConfig is a connection's TLS: nil without tls; the CAs of caFile,
// else the system's roots.
func TLSConfig(enabled bool, caFile, serverName string) (*tls.Config, error) {
	if !enabled {
		if caFile != "" {
			return nil, errors.New("set tls: true to use a CA file")
		}
		return nil, nil
	}
	c := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return c, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	c.RootCAs = pool
	return c, nil
}

// Duration is a time.Duration written as "15s" in JSON and YAML.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`a duration is a string such as "15s" or "1m"`)
	}
	return d.set(s)
}

func (d *Duration) UnmarshalYAML(n *yaml.Node) error { return d.set(n.Value) }

func (d *Duration) set(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration (write e.g. 500ms, 15s or 1m)", s)
	}
	*d = Duration(v)
	return nil
}

// ShortDuration writes 1h rather than 1h0m0s.
func ShortDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

// DecodeSecret reads a hook's signing secret (Standard Webhooks): whsec_
// and base64 after the prefix.
func DecodeSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return nil, errors.New("a signing secret starts with whsec_")
	}
	k, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(k) < 24 || len(k) > 64 {
		return nil, errors.New("a signing secret is whsec_ and 24 to 64 bytes in base64")
	}
	return k, nil
}
