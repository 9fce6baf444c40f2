package dialect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/identity"
	"github.com/sluicehq/sluice/internal/project"
)

// DialectWebhook names the generic webhook / postback dialect (seed 001).
const DialectWebhook = "webhook"

// ReservedSegments are first path segments that are never a webhook
// service: other dialects and endpoints own them.
var ReservedSegments = map[string]string{
	"track":   "the track dialect (POST /track)",
	"v1":      "the commerce dialect (POST /v1/events)",
	"api":     "the admin API, served on the admin listener",
	"healthz": "health checks",
	"readyz":  "health checks",
	"metrics": "metrics, served on the admin listener",
	"sdk.js":  "the browser SDK",
}

// RedirService is the service name of tracked redirects: /redir/{name}/{projectId}?to=URL.
const RedirService = "redir"

var (
	segmentRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	uidRE     = regexp.MustCompile(`^[0-9]{10,22}$`)
)

// Webhook decodes the generic webhook / postback dialect:
// GET|POST /{service}/{name}/{projectId}, /{service}/{name} and /{service},
// with name and projectId also in the query or the body.
type Webhook struct {
	Projects Projects
	// NewUID mints a uid for a sender that brings none.
	NewUID func() event.ID
	// CreateProject, when set, creates a project on the first event sent
	// to an id that has none (the webhook_create_projects setting).
	CreateProject func(ctx context.Context, id uint32) (*project.Project, error)
	// BodyLimit caps a body (default 100 KiB).
	BodyLimit int64

	cookies cookieJar
}

var _ Dialect = (*Webhook)(nil)

// DefaultBodyLimit is the webhook body limit.
const DefaultBodyLimit = 100 << 10

// Webhook routes (metric labels).
const (
	RouteWebhook = "webhook"
	RoutePixel   = "pixel"
	RouteRedir   = "redir"
)

// Name implements Dialect.
func (w *Webhook) Name() string { return DialectWebhook }

// Match implements Dialect: every path the other dialects leave, but the
// root.
func (w *Webhook) Match(hr *http.Request) (string, bool) {
	p := strings.TrimSuffix(strings.TrimPrefix(hr.URL.Path, "/"), "/")
	if p == "" {
		return "", false
	}
	switch {
	case strings.HasPrefix(p, RedirService+"/") || p == RedirService:
		return RouteRedir, true
	case strings.HasSuffix(p, ".gif"):
		return RoutePixel, true
	}
	return RouteWebhook, true
}

// Accept implements Dialect: the method and the shape of the path.
func (w *Webhook) Accept(hr *http.Request, route string) (int64, error) {
	if hr.Method != http.MethodGet && hr.Method != http.MethodPost {
		return 0, &Error{Status: http.StatusMethodNotAllowed, Message: "method " + hr.Method + " is not allowed; use GET or POST",
			Header: map[string]string{"Allow": "GET, POST, OPTIONS"}}
	}
	if _, err := webhookPath(hr); err != nil {
		return 0, err
	}
	if w.BodyLimit <= 0 {
		return DefaultBodyLimit, nil
	}
	return w.BodyLimit, nil
}

// webhookSegments is the path of a webhook request, its ".gif" cut off.
type webhookSegments struct {
	segs  []string
	pixel bool
	redir bool
}

// webhookPath reads the path: one to three segments, not reserved.
func webhookPath(hr *http.Request) (webhookSegments, *Error) {
	p := strings.TrimPrefix(hr.URL.Path, "/")
	p = strings.TrimSuffix(p, "/")
	segs := strings.Split(p, "/")
	if p == "" || len(segs) > 3 {
		return webhookSegments{}, Errorf(http.StatusNotFound, "no route for %s; webhooks go to /{service}/{name}/{projectId}", hr.URL.Path)
	}
	ws := webhookSegments{segs: segs}
	last := len(segs) - 1
	if s, ok := strings.CutSuffix(segs[last], ".gif"); ok {
		ws.pixel = true
		segs[last] = s
	}
	for _, s := range segs {
		if s == "" {
			return ws, Errorf(http.StatusNotFound, "no route for %s: empty path segment", hr.URL.Path)
		}
	}
	if what, ok := ReservedSegments[segs[0]]; ok {
		return ws, Errorf(http.StatusNotFound, "/%s is reserved for %s", segs[0], what)
	}
	ws.redir = segs[0] == RedirService
	if ws.redir {
		if hr.Method != http.MethodGet {
			return ws, &Error{Status: http.StatusMethodNotAllowed, Message: "redirects take GET only",
				Header: map[string]string{"Allow": "GET, OPTIONS"}}
		}
		if ws.pixel {
			return ws, Errorf(http.StatusNotFound, "a redirect cannot be a pixel")
		}
	}
	return ws, nil
}

// webhookState is what Authenticate read of a request, for Decode.
type webhookState struct {
	path          webhookSegments
	query, body   *object
	bodyJSON      bool // the body was JSON, not form fields
	service, name string
}

// Authenticate implements Dialect: the project comes from the path, the
// query or the body; a project with webhook_auth token wants one of its
// tokens.
func (w *Webhook) Authenticate(r *Request) (*project.Project, error) {
	hr := r.HTTP
	ws, perr := webhookPath(hr)
	if perr != nil {
		return nil, perr
	}
	segs := ws.segs
	var errs event.FieldErrors
	query := &object{}
	if err := parseForm(hr.URL.RawQuery, query); err != nil {
		var te *event.TextError
		if errors.As(err, &te) {
			errs = append(errs, textFieldError(te, "query"))
		} else {
			errs.Add("query", err.Error())
		}
	}
	body := &object{}
	var bodyJSON bool
	if hr.Method == http.MethodPost {
		var e *Error
		if bodyJSON, e = parseBody(hr.Header.Get("Content-Type"), r.Body, body); e != nil {
			return nil, e
		}
	}
	if len(errs) > 0 {
		return nil, &Error{Status: http.StatusBadRequest, Message: "invalid request", Errors: errs}
	}

	service := segs[0]
	var name, projectStr string
	var haveProject, badName bool
	if len(segs) > 1 {
		name = segs[1]
	} else if v, ok := query.get("name"); ok {
		name, _ = firstString(v)
	} else if v, ok := body.get("name"); ok {
		var isStr bool
		if name, isStr = bodyString(v, bodyJSON); !isStr {
			errs.Add("name", "must be a string")
			badName = true
		}
	}
	if len(segs) > 2 {
		projectStr, haveProject = segs[2], true
	} else if v, ok := query.get("projectId"); ok {
		projectStr, _ = firstString(v)
		haveProject = true
	} else if v, ok := body.get("projectId"); ok {
		projectStr, haveProject = bodyScalar(v, bodyJSON), true
	}
	if !segmentRE.MatchString(service) {
		errs.Add("service", "must be 1 to 64 letters, digits, '_' or '-'")
	}
	switch {
	case name == "" && !badName:
		errs.Add("name", "is required: /{service}/{name}, ?name= or a \"name\" field in the body")
	case name != "" && !segmentRE.MatchString(name):
		errs.Add("name", "must be 1 to 64 letters, digits, '_' or '-'")
	}
	var projectID uint32
	if haveProject {
		n, err := strconv.ParseUint(projectStr, 10, 32)
		if err != nil {
			errs.Add("projectId", "must be a non-negative integer below 4294967296")
		}
		projectID = uint32(n)
	}
	if len(errs) > 0 {
		return nil, &Error{Status: http.StatusBadRequest, Message: "invalid request", Errors: errs}
	}

	proj, ok := w.Projects.Get(projectID)
	if !ok && w.CreateProject != nil {
		p, err := w.CreateProject(hr.Context(), projectID)
		if err != nil {
			return nil, err
		}
		proj, ok = p, true
	}
	if !ok {
		return nil, FieldError(http.StatusNotFound, "projectId", "project "+strconv.FormatUint(uint64(projectID), 10)+" does not exist")
	}
	if proj.Settings.AuthMode() == project.WebhookAuthToken {
		tok := requestToken(hr, query)
		if tok == "" {
			return nil, Unauthorized("project " + strconv.FormatUint(uint64(projectID), 10) + " requires a token: pass ?token= or HTTP Basic auth with the token as user name")
		}
		if !w.Projects.AuthenticateFor(projectID, tok) {
			return nil, Unauthorized("invalid token")
		}
		query.remove(TokenParam) // a credential, not event data
	} else if v, ok := query.get(TokenParam); ok {
		// A project that asks for no token still never keeps one as
		// data: a sender's live token (of any project) is dropped, where
		// another value of ?token= is the sender's data.
		if s, _ := firstString(v); w.Projects.IsToken(s) {
			query.remove(TokenParam)
		}
	}
	r.State = &webhookState{path: ws, query: query, body: body, bodyJSON: bodyJSON, service: service, name: name}
	return proj, nil
}

// Decode implements Dialect: one event, its data the body's fields
// overlaid by the query's (the query wins).
func (w *Webhook) Decode(r *Request) (*Decoded, error) {
	st, ok := r.State.(*webhookState)
	if !ok {
		return nil, errors.New("webhook: Decode before Authenticate")
	}
	proj, query, body := r.Project, st.query, st.body
	res := &Decoded{Pixel: st.path.pixel}
	if st.path.redir {
		loc, e := redirectTarget(query, proj)
		if e != nil {
			return nil, e
		}
		res.Location = loc
	}
	for _, m := range query.members {
		body.set(m.key, m.val)
	}
	data := body.json()
	dedup, e := webhookDedupKey(proj, st.service, st.name, data)
	if e != nil {
		return nil, e
	}
	ms := r.ReceivedAt.UnixMilli()
	channel := event.ChannelHTTP
	switch {
	case res.Pixel:
		channel = event.ChannelPixel
	case st.path.redir:
		channel = event.ChannelRedir
	}
	uid, brought := w.uid(r.HTTP, query, body, st.bodyJSON)
	ev := &event.Event{
		Key:        "in.gen." + st.service + "." + st.name,
		Channel:    channel,
		Service:    st.service,
		Name:       st.name,
		ProjectID:  proj.ID,
		UID:        uid,
		TD:         transport(r),
		Data:       data,
		Time:       ms,
		Dialect:    DialectWebhook,
		ReceivedAt: ms,
		DedupKey:   dedup,
	}
	if brought {
		// A uid the sender brought names its browser; a new one names
		// nobody yet.
		ev.Identities = []event.Identity{{Type: identity.TypeUID, Value: uid}}
	}
	res.Items = []Item{{Event: ev}}
	return res, nil
}

// Answer implements Dialect: the uid cookie, then a GIF for a pixel, a 302
// for a redirect, else {"key":…,"id":…} ("duplicate":true for a repeat).
func (w *Webhook) Answer(rw http.ResponseWriter, r *Request, d *Decoded, out []Outcome) {
	ev := d.Items[0].Event
	h := rw.Header()
	h["Cache-Control"] = noStore
	h["Set-Cookie"] = []string{w.cookies.uid(ev.UID, r.ReceivedAt, r.Secure)}
	switch {
	case d.Location != "":
		h.Set("Location", d.Location)
		rw.WriteHeader(http.StatusFound)
	case d.Pixel:
		h.Set("Content-Type", "image/gif")
		h.Set("Content-Length", strconv.Itoa(len(transparentGIF)))
		rw.WriteHeader(http.StatusOK)
		_, _ = rw.Write(transparentGIF)
	default:
		// {"key":"in.gen.calltrack.call","id":"…"}, built by hand: this is
		// the hot path.
		b := make([]byte, 0, 64+len(ev.Key))
		b = append(b, `{"key":`...)
		b = event.AppendString(b, ev.Key)
		b = append(b, `,"id":`...)
		b = out[0].ID.AppendJSON(b)
		if out[0].Duplicate {
			b = append(b, `,"duplicate":true`...)
		}
		b = append(b, "}\n"...)
		WriteRaw(rw, http.StatusOK, b)
	}
}

// Refuse implements Dialect.
func (w *Webhook) Refuse(err error) *Error { return refusal(err) }

// refusal is an *Error as it is, and a failure of the log as a 503.
func refusal(err error) *Error {
	var de *Error
	if errors.As(err, &de) {
		return de
	}
	return Unavailable()
}

// Unavailable is the refusal of a request the log could not take.
func Unavailable() *Error {
	return &Error{Status: http.StatusServiceUnavailable, Message: "the event log is unavailable; nothing was stored, retry later",
		Header: map[string]string{"Retry-After": "1"}}
}

var noStore = []string{"no-cache, no-store, must-revalidate"}

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

// maxWebhookDedupValue bounds a webhook_dedup_field value.
const maxWebhookDedupValue = 256

// webhookDedupKey is the dedup key of a webhook event of a project that
// names a webhook_dedup_field: "webhook:<service>.<name>:<value>", so the
// same order id under another event name is another event. A field that
// is absent (or null) gives none; one that is not a string or a number
// cannot name the event and is refused.
func webhookDedupKey(p *project.Project, service, name string, data []byte) (string, *Error) {
	field := p.Settings.WebhookDedupField
	if field == "" {
		return "", nil
	}
	segs, err := project.ParseFieldPath(field)
	if err != nil {
		return "", nil // validated when the setting was saved
	}
	v, ok := lookupCompact(data, segs)
	if !ok || string(v) == "null" {
		return "", nil
	}
	var val string
	switch {
	case v[0] == '"':
		val, _ = jsonString(v)
	case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
		val = canonicalNumber(string(v))
	default:
		return "", FieldError(http.StatusBadRequest, field, "is the project's webhook_dedup_field: it must be a string or a number")
	}
	if val == "" || len(val) > maxWebhookDedupValue {
		return "", FieldError(http.StatusBadRequest, field, fmt.Sprintf("is the project's webhook_dedup_field: it must be 1 to %d bytes", maxWebhookDedupValue))
	}
	return "webhook:" + service + "." + name + ":" + val, nil
}

// canonicalNumber writes a JSON number by its value, so that 17, 17.0 and
// 1.7e1 name one order: an integer below 2^53 in digits, another number in
// Go's shortest form. A number that is not a float64 stays as written.
func canonicalNumber(n string) string {
	if !strings.ContainsAny(n, ".eE") {
		return n
	}
	f, err := strconv.ParseFloat(n, 64)
	switch {
	case err != nil || math.IsInf(f, 0):
		return n
	case f == math.Trunc(f) && math.Abs(f) < 1<<53:
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// lookupCompact returns the value at segs in b, a compact JSON object.
func lookupCompact(b []byte, segs []string) ([]byte, bool) {
	var o object
	for _, seg := range segs {
		if len(b) == 0 || b[0] != '{' {
			return nil, false
		}
		parseCompactObject(b, &o)
		v, ok := o.get(seg)
		if !ok {
			return nil, false
		}
		b = v
	}
	return b, true
}

// parseBody reads a POST body into o by its content type, and reports
// whether it was read as JSON (else as form fields). A body said to be
// JSON must be a JSON object, an empty one too (as track and commerce
// answer it); any other empty body has no fields.
func parseBody(contentType string, body []byte, o *object) (isJSON bool, e *Error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = ""
	}
	isJSON = mt == "application/json" || strings.HasSuffix(mt, "+json")
	if !isJSON && len(bytes.TrimSpace(body)) == 0 {
		return false, nil
	}
	kind := ""
	switch {
	case isJSON:
		kind = "json"
	case mt == "application/x-www-form-urlencoded":
		kind = "form"
	case mt == "" || mt == "text/plain":
		// Senders that cannot set a content type: sniff.
		if t := bytes.TrimLeft(body, " \t\r\n"); t[0] == '{' || t[0] == '[' {
			kind = "json"
		} else {
			kind = "form"
		}
	default:
		return false, Errorf(http.StatusUnsupportedMediaType, "content type %q is not supported; send application/json or application/x-www-form-urlencoded", mt)
	}
	if kind == "json" {
		err = parseJSONObject(body, o)
	} else {
		err = parseForm(string(body), o)
	}
	if te := (*event.TextError)(nil); errors.As(err, &te) {
		return false, textError(te, "body")
	}
	if err != nil {
		return false, FieldError(http.StatusBadRequest, "body", err.Error())
	}
	return kind == "json", nil
}

// bodyString is a routing value of the body as a string: in a JSON body a
// JSON string (an array is refused as a number is), in a form body also a
// repeated key's first value, as in the query.
func bodyString(raw []byte, isJSON bool) (string, bool) {
	if isJSON {
		return jsonString(raw)
	}
	return firstString(raw)
}

// bodyScalar renders a routing value of the body (projectId, uid) as
// text: a string as bodyString reads it, anything else as its JSON (a
// number's digits; an array or an object, which no routing value matches).
func bodyScalar(raw []byte, isJSON bool) string {
	if s, ok := bodyString(raw, isJSON); ok {
		return s
	}
	return string(raw)
}

// uid takes the user id from the query, else the body, else the uid
// cookie; a missing or malformed one is replaced by a new flake id.
// brought reports whether the sender's was kept.
func (w *Webhook) uid(hr *http.Request, query, body *object, bodyJSON bool) (uid string, brought bool) {
	var cand string
	if v, ok := query.get("uid"); ok {
		cand, _ = firstString(v)
	} else if v, ok := body.get("uid"); ok {
		cand = bodyScalar(v, bodyJSON)
	} else if c, err := hr.Cookie("uid"); err == nil {
		cand = c.Value
	}
	if uidRE.MatchString(cand) {
		return cand, true
	}
	return w.NewUID().String(), false
}

// TokenParam is the query parameter that carries a project token.
const TokenParam = "token"

// requestToken finds a project token: ?token=, HTTP Basic (the token is the
// user name) or Bearer.
func requestToken(hr *http.Request, query *object) string {
	if v, ok := query.get(TokenParam); ok {
		s, _ := firstString(v)
		return s
	}
	return HeaderToken(hr)
}

// HeaderToken returns the token of an Authorization header: the user name
// of HTTP Basic auth, or a Bearer token.
func HeaderToken(hr *http.Request) string {
	if user, _, ok := hr.BasicAuth(); ok {
		return user
	}
	if auth := hr.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		return strings.TrimSpace(auth[7:])
	}
	return ""
}

// redirectTarget validates ?to= against the project's redirect allow-list.
func redirectTarget(query *object, proj *project.Project) (string, *Error) {
	v, ok := query.get("to")
	to, isStr := firstString(v)
	if !ok || !isStr || to == "" {
		return "", FieldError(http.StatusBadRequest, "to", "is required: the URL to redirect to")
	}
	u, err := url.Parse(to)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return "", FieldError(http.StatusBadRequest, "to", "must be an absolute http or https URL")
	}
	if u.User != nil || strings.ContainsAny(to, "\\\r\n\t") {
		return "", FieldError(http.StatusBadRequest, "to", "must not contain credentials, backslashes or control characters")
	}
	if !proj.Settings.RedirectAllowed(u.Hostname()) {
		return "", FieldError(http.StatusBadRequest, "to",
			"host "+strconv.Quote(u.Hostname())+" is not in project "+strconv.FormatUint(uint64(proj.ID), 10)+"'s redirect_hosts")
	}
	return u.String(), nil
}
