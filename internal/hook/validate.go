package hook

import (
	"fmt"
	"maps"
	"net/netip"
	"net/textproto"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
	"golang.org/x/net/http/httpguts"

	"github.com/sluicehq/sluice/internal/event"
)

// Bounds of a hook definition, checked when it is saved (docs/hooks.md,
// "Limits").
const (
	MaxNameLength  = 200
	MaxEventGlobs  = 100
	MaxURLLength   = 2048
	MaxHeaders     = 50
	MaxHeaderName  = 256
	MaxHeaderValue = 4096
	MaxCredential  = 4096 // a username, password or token
	MaxRegexLength = 1024
	MaxCustomData  = 100
	MaxCustomKey   = 128
	MaxTemplate    = 4096
	MaxRetryTimes  = 100
	MaxInFlight    = 64
	MaxDeadStreak  = 1000 // stop_after_dead_letters
	MaxBrokers     = 100
	MaxBrokerName  = 255 // an AMQP queue, exchange, vhost or user name (a short string)

	// A filter is at most MaxFilterLength bytes and MaxFilterNodes
	// syntax nodes. Its cost per event is bounded by its shape: a range
	// has whole-number literal bounds and at most MaxFilterRange
	// elements, a predicate (any, all, filter, map, …) is not nested in
	// another's, and repeat() is not available, so a filter runs in time
	// linear in its size and the event's.
	MaxFilterLength = 4096
	MaxFilterNodes  = 500
	MaxFilterRange  = 1000
)

// Error is a hook that cannot be saved: its Fields say where and why.
// It wraps ErrInvalid, or project.ErrNotFound for a project that does
// not exist.
type Error struct {
	Err     error
	Message string
	Fields  event.FieldErrors
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return e.Message
	}
	return e.Message + ": " + e.Fields.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// FieldErrors are the violations, for the API's errors list.
func (e *Error) FieldErrors() event.FieldErrors { return e.Fields }

// problems collects the violations of one definition.
type problems struct{ event.FieldErrors }

func (p *problems) add(path, format string, a ...any) {
	p.Add(path, fmt.Sprintf(format, a...))
}

func (p *problems) err() error {
	if len(p.FieldErrors) == 0 {
		return nil
	}
	return &Error{Err: ErrInvalid, Message: ErrInvalid.Error(), Fields: p.FieldErrors}
}

// key is the path of a map member: headers["X-Team"].
func key(path, k string) string { return path + "[" + strconv.Quote(k) + "]" }

// checkText refuses an empty (when required), overlong, non-UTF-8 or
// control-character value.
func checkText(p *problems, path, s string, required bool, max int) {
	switch {
	case s == "" && required:
		p.add(path, "required")
	case len(s) > max:
		p.add(path, "at most %d bytes", max)
	case !utf8.ValidString(s):
		p.add(path, "not valid UTF-8")
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		p.add(path, "a control character (CR, LF, tab, …) is not allowed")
	}
}

// checkURL validates an http target's URL.
func checkURL(p *problems, raw string) {
	const path = "http.url"
	if raw == "" {
		p.add(path, "required: an http:// or https:// URL")
		return
	}
	if len(raw) > MaxURLLength {
		p.add(path, "at most %d bytes", MaxURLLength)
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		p.add(path, "not a URL: %v", unwrapURLError(err))
		return
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		p.add(path, "an http:// or https:// URL")
	case u.Opaque != "" || u.Host == "":
		p.add(path, "no host: write http://host[:port]/path")
	case u.User != nil:
		p.add(path, "credentials in the URL are not allowed: set http.auth")
	case u.Fragment != "" || strings.HasSuffix(raw, "#"):
		p.add(path, "a fragment (#…) is never sent: remove it")
	default:
		if port := u.Port(); port != "" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				p.add(path, "port %s: 1 to 65535", port)
			}
		} else if strings.HasSuffix(u.Host, ":") {
			p.add(path, "an empty port: write host:port or leave the port out")
		}
		if !validHost(u.Hostname()) {
			p.add(path, "%q is not a host name or an IP address", u.Hostname())
		}
	}
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// validHost accepts an IP address or a DNS name (letters, digits, '-',
// '_' in dot-separated labels of at most 63 bytes).
func validHost(h string) bool {
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

// sluiceHeaders are set by sluice or by the HTTP client on every request:
// a header of the hook would be overwritten or would break the request.
var sluiceHeaders = map[string]bool{
	"Content-Type": true, "Content-Length": true, "Content-Encoding": true, "Transfer-Encoding": true, "Host": true,
	"Connection": true, "Te": true, "Trailer": true, "Upgrade": true, "Keep-Alive": true, "Proxy-Connection": true,
	"User-Agent": true, "Webhook-Id": true, "Webhook-Timestamp": true, "Webhook-Signature": true,
}

// checkHeaders validates http.headers: names are HTTP tokens, values
// carry no CR, LF or other control character, none is one sluice sets.
func checkHeaders(p *problems, hs map[string]string, withAuth bool) {
	if len(hs) > MaxHeaders {
		p.add("http.headers", "at most %d headers", MaxHeaders)
		return
	}
	seen := map[string]string{}
	for _, k := range sortedKeys(hs) {
		path, v := key("http.headers", k), hs[k]
		canon := textproto.CanonicalMIMEHeaderKey(k)
		switch {
		case !httpguts.ValidHeaderFieldName(k):
			p.add(path, "not a header name: letters, digits and !#$%%&'*+-.^_`|~ only")
		case len(k) > MaxHeaderName:
			p.add(path, "a header name of at most %d bytes", MaxHeaderName)
		case sluiceHeaders[canon]:
			p.add(path, "%s is set by sluice on every request", canon)
		case canon == "Authorization" && withAuth:
			p.add(path, "Authorization is set by http.auth: remove one of them")
		case seen[canon] != "":
			p.add(path, "the same header as %q (names are not case-sensitive)", seen[canon])
		case !httpguts.ValidHeaderFieldValue(v):
			p.add(path, "the value has a CR, LF or another control character")
		case len(v) > MaxHeaderValue:
			p.add(path, "a value of at most %d bytes", MaxHeaderValue)
		case !utf8.ValidString(v):
			p.add(path, "the value is not valid UTF-8")
		}
		seen[canon] = k
	}
}

// checkAuth validates http.auth.
func checkAuth(p *problems, a *HTTPAuth) {
	switch a.Type {
	case "", "none":
		if a.Username != "" || a.Password != "" || a.Token != "" {
			p.add("http.auth.type", "basic or bearer, to use a username, password or token")
		}
	case "basic":
		checkText(p, "http.auth.username", a.Username, true, MaxCredential)
		if strings.Contains(a.Username, ":") {
			p.add("http.auth.username", "a basic username cannot contain ':'")
		}
		checkText(p, "http.auth.password", a.Password, false, MaxCredential)
	case "bearer":
		checkText(p, "http.auth.token", a.Token, true, MaxCredential)
		if a.Token != strings.TrimSpace(a.Token) || strings.Contains(a.Token, " ") {
			p.add("http.auth.token", "no spaces")
		}
	default:
		p.add("http.auth.type", "none, basic or bearer")
	}
}

// compileFilter compiles a filter within its bounds.
func compileFilter(p *problems, src string) *vm.Program {
	if len(src) > MaxFilterLength {
		p.add("filter", "at most %d bytes", MaxFilterLength)
		return nil
	}
	tree, err := parser.Parse(src)
	if err != nil {
		p.add("filter", "%v", err)
		return nil
	}
	c := &filterCost{}
	ast.Walk(&tree.Node, c)
	if c.problem != "" {
		p.add("filter", "%s", c.problem)
		return nil
	}
	prog, err := expr.Compile(src, expr.Env(map[string]any{"event": map[string]any{}, "profile": map[string]any{}}), expr.AsBool(),
		expr.MaxNodes(MaxFilterNodes), expr.DisableBuiltin("repeat"))
	if err != nil {
		p.add("filter", "%v", err)
		return nil
	}
	return prog
}

// filterCost finds the shapes whose cost per event is not bounded by the
// filter's size and the event's: a large or non-literal range, and a
// predicate inside another's (quadratic in the event's arrays).
type filterCost struct{ problem string }

func (c *filterCost) Visit(node *ast.Node) {
	if c.problem != "" {
		return
	}
	switch n := (*node).(type) {
	case *ast.BinaryNode:
		if n.Operator != ".." {
			return
		}
		from, ok1 := intLiteral(n.Left)
		to, ok2 := intLiteral(n.Right)
		switch {
		case !ok1 || !ok2:
			c.problem = "a range (a..b) needs whole-number literal bounds"
		case to-from+1 > MaxFilterRange:
			c.problem = fmt.Sprintf("the range %d..%d has %d elements; at most %d", from, to, to-from+1, MaxFilterRange)
		}
	case *ast.BuiltinNode:
		if n.Name == "repeat" {
			c.problem = "repeat() is not available in filters"
		}
	case *ast.PredicateNode:
		inner := &predicateFinder{}
		ast.Walk(&n.Node, inner)
		if inner.found != "" {
			c.problem = fmt.Sprintf("%s(…) inside another predicate: a filter may not nest predicates (any, all, filter, map, …)", inner.found)
		}
	}
}

type predicateFinder struct{ found string }

func (f *predicateFinder) Visit(node *ast.Node) {
	if b, ok := (*node).(*ast.BuiltinNode); ok && f.found == "" {
		for _, a := range b.Arguments {
			if _, ok := a.(*ast.PredicateNode); ok {
				f.found = b.Name
			}
		}
	}
}

func intLiteral(n ast.Node) (int, bool) {
	switch x := n.(type) {
	case *ast.IntegerNode:
		return x.Value, true
	case *ast.UnaryNode:
		if v, ok := intLiteral(x.Node); ok && x.Operator == "-" {
			return -v, true
		}
	}
	return 0, false
}

// checkRegex compiles http.success_regex.
func checkRegex(p *problems, s string) *regexp.Regexp {
	if len(s) > MaxRegexLength {
		p.add("http.success_regex", "at most %d bytes", MaxRegexLength)
		return nil
	}
	re, err := regexp.Compile(s)
	if err != nil {
		p.add("http.success_regex", "%v", err)
		return nil
	}
	return re
}

// checkTemplate parses a template field (custom_data, a routing or record
// key) at path.
func checkTemplate(p *problems, path, k, v string) (customField, bool) {
	if len(v) > MaxTemplate {
		p.add(path, "at most %d bytes", MaxTemplate)
		return customField{}, false
	}
	if !utf8.ValidString(v) {
		p.add(path, "not valid UTF-8")
		return customField{}, false
	}
	f, err := parseTemplate(k, v)
	if err != nil {
		p.add(path, "%v", err)
		return customField{}, false
	}
	return f, true
}

// kafkaTopic is a legal Kafka topic name.
var kafkaTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
