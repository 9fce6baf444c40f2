package dialect

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/currency"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/identity"
	"github.com/sluicehq/sluice/internal/project"
)

// DialectS2S names the server-to-server batch gateway (seed 004).
const DialectS2S = "s2s"

// The seed's error codes.
const (
	CodeBadRequest             = "BAD_REQUEST"
	CodeInvalidParameters      = "INVALID_PARAMETERS"
	CodeS2SFeatureNotAvailable = "S2S_FEATURE_NOT_AVAILABLE"
	CodeEventTypeDoesNotExist  = "EVENT_TYPE_DOES_NOT_EXIST"
	s2sMaxMessages             = 1000
	s2sMaxIDLength             = 128
	s2sMaxAttributes           = 256
	s2sMaxAttributeKey         = 128
	s2sMaxAttributeValue       = 4096
	s2sUserKey                 = "in.s2s.user"
	s2sActionPrefix            = "in.s2s.action."
	s2sRevenuePrefix           = "in.s2s.revenue."
	s2sMessageUser             = "user"
	s2sMessageAction           = "action"
	s2sMessageRevenue          = "revenue"
	s2sDedupPrefix             = "s2s:"
	s2sBatchIdentityCustomUser = identity.TypeCustomUserID
	s2sBatchIdentityMetrixUser = identity.TypeMetrixUserID
	s2sHashPIIPhoneUnreadable  = "cannot be read as a phone number in the project's default_region, so it cannot be hashed (hash_pii is on): send hashedPhoneNumber instead"
)

// S2SProjects is what the s2s dialect needs to know of projects.
type S2SProjects interface {
	ByAppID(appID string) (*project.Project, bool)
	AuthenticateFor(projectID uint32, secret string) bool
	EventType(projectID uint32, slug string) (project.EventType, bool)
}

// S2S decodes POST / with X-Application-Id and X-API-Key.
type S2S struct {
	Projects S2SProjects
	// Now is the clock that bounds message times (default time.Now).
	Now func() time.Time
	// Limit caps a request body (default 1 MiB).
	Limit int64
}

var _ Dialect = (*S2S)(nil)

// s2s limit and route.
const (
	DefaultS2SLimit = 1 << 20
	RouteS2S        = "s2s"
)

// Name implements Dialect.
func (d *S2S) Name() string { return DialectS2S }

// Match implements Dialect: POST /, or any request to / that names an
// application.
func (d *S2S) Match(hr *http.Request) (string, bool) {
	if hr.URL.Path != "/" && hr.URL.Path != "" {
		return "", false
	}
	return RouteS2S, hr.Method == http.MethodPost || hr.Header.Get("X-Application-Id") != ""
}

// Accept implements Dialect: POST / only.
func (d *S2S) Accept(hr *http.Request, route string) (int64, error) {
	if hr.URL.Path != "/" || hr.Method != http.MethodPost {
		return 0, &Error{Status: http.StatusMethodNotAllowed, Message: "the s2s gateway takes POST /",
			Header: map[string]string{"Allow": "POST, OPTIONS"}}
	}
	if d.Limit > 0 {
		return d.Limit, nil
	}
	return DefaultS2SLimit, nil
}

// Answer implements Dialect: {"accepted":n,"duplicates":m,"ids":[…]}, ids
// in message order, a duplicate's being the original's; written by hand,
// as a batch answer carries up to a thousand ids.
func (d *S2S) Answer(w http.ResponseWriter, r *Request, dec *Decoded, out []Outcome) {
	dups := 0
	for _, o := range out {
		if o.Duplicate {
			dups++
		}
	}
	b := make([]byte, 0, 64+len(out)*22)
	b = append(b, `{"accepted":`...)
	b = strconv.AppendInt(b, int64(len(out)-dups), 10)
	b = append(b, `,"duplicates":`...)
	b = strconv.AppendInt(b, int64(dups), 10)
	b = append(b, `,"ids":[`...)
	for i, o := range out {
		if i > 0 {
			b = append(b, ',')
		}
		b = o.ID.AppendJSON(b)
	}
	WriteRaw(w, http.StatusOK, append(b, "]}\n"...))
}

// Refuse implements Dialect: every refusal carries a code, the seed's
// where it has one.
func (d *S2S) Refuse(err error) *Error {
	var de *Error
	if !errors.As(err, &de) {
		u := Unavailable()
		u.Code = "UNAVAILABLE"
		return u
	}
	if de.Code != "" {
		return de
	}
	c := *de
	switch c.Status {
	case http.StatusMethodNotAllowed:
		c.Code = "METHOD_NOT_ALLOWED"
	case http.StatusRequestEntityTooLarge:
		c.Code = "PAYLOAD_TOO_LARGE"
	case http.StatusUnsupportedMediaType:
		c.Code = "UNSUPPORTED_MEDIA_TYPE"
	case http.StatusUnprocessableEntity:
		c.Code = "UNPROCESSABLE"
	case http.StatusServiceUnavailable:
		c.Code = "UNAVAILABLE"
	default:
		c.Code = CodeBadRequest
	}
	return &c
}

func s2sError(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Authenticate implements Dialect: the project of X-Application-Id, with
// X-API-Key one of its live tokens. Header names are case-insensitive
// (net/http canonicalises them).
func (d *S2S) Authenticate(r *Request) (*project.Project, error) {
	hr := r.HTTP
	appID := strings.TrimSpace(hr.Header.Get("X-Application-Id"))
	key := strings.TrimSpace(hr.Header.Get("X-API-Key"))
	switch {
	case appID == "" && key == "":
		return nil, s2sError(http.StatusForbidden, CodeInvalidParameters, "the X-Application-Id and X-API-Key headers are required")
	case appID == "":
		return nil, s2sError(http.StatusForbidden, CodeInvalidParameters, "the X-Application-Id header is required")
	case key == "":
		return nil, s2sError(http.StatusForbidden, CodeInvalidParameters, "the X-API-Key header is required")
	}
	p, ok := d.Projects.ByAppID(appID)
	if !ok || !d.Projects.AuthenticateFor(p.ID, key) {
		// One answer for an unknown application and a wrong key: it
		// does not tell which application ids exist.
		return nil, s2sError(http.StatusForbidden, CodeInvalidParameters, "X-Application-Id and X-API-Key do not match a live key of that application")
	}
	if !p.Settings.S2SEnabled() {
		return nil, s2sError(http.StatusForbidden, CodeS2SFeatureNotAvailable, "the s2s feature is switched off for this application")
	}
	return p, nil
}

// s2sMessage is one validated message, ready to become an event.
type s2sMessage struct {
	typ  string
	id   string
	time int64
	name string // slug of an action or revenue
	data []byte // the message as stored
	ids  []event.Identity
}

// Decode implements Dialect: the whole batch is validated and each message
// becomes one event, in order. Any invalid message fails the batch (400
// BAD_REQUEST listing every violation by message index and path); any
// unknown or wrong-kind slug fails it with 404 EVENT_TYPE_DOES_NOT_EXIST.
func (d *S2S) Decode(r *Request) (*Decoded, error) {
	p := r.Project
	if err := CheckContentType(r.HTTP); err != nil {
		return nil, s2sError(http.StatusBadRequest, CodeBadRequest, "content-type must be application/json")
	}
	bad := func(format string, args ...any) *Error {
		return s2sError(http.StatusBadRequest, CodeBadRequest, format, args...)
	}
	body, err := compactJSON(r.Body)
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "body: " + err.Error(),
			Errors: event.FieldErrors{{Path: "body", Message: err.Error()}}}
	}
	if len(body) == 0 || body[0] != '{' {
		return nil, bad("the body must be a JSON object {customUserId, metrixUserId, messages}")
	}
	if te := event.CheckJSONText(body); te != nil {
		fe := textFieldError(te, "")
		if rest, ok := strings.CutPrefix(fe.Path, "messages["); ok {
			if end := strings.IndexByte(rest, ']'); end > 0 {
				if i, err := strconv.Atoi(rest[:end]); err == nil {
					fe.Index = &i
				}
			}
		}
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "invalid request: nothing from this request was stored",
			Errors: event.FieldErrors{fe}}
	}
	env := &object{}
	parseCompactObject(body, env)
	var errs event.FieldErrors
	var customUserID, metrixUserID string
	var messages [][]byte
	for _, m := range env.members {
		switch m.key {
		case "customUserId", "metrixUserId":
			s, ok := jsonString(m.val)
			if !ok && string(m.val) != "null" {
				errs.Add(m.key, "must be a string")
			}
			if m.key == "customUserId" {
				customUserID = strings.TrimSpace(s)
			} else {
				metrixUserID = strings.TrimSpace(s)
			}
		case "messages":
			if m.val[0] != '[' {
				errs.Add("messages", "must be an array of messages")
				continue
			}
			messages = splitArray(m.val)
		default:
			errs.Add(m.key, "unknown field")
		}
	}
	if customUserID == "" && metrixUserID == "" {
		errs.Add("customUserId", "customUserId or metrixUserId is required")
	}
	if len(customUserID) > s2sMaxIDLength || len(metrixUserID) > s2sMaxIDLength {
		errs.Add("customUserId", "user ids are at most 128 characters")
	}
	switch {
	case env.index("messages") < 0:
		errs.Add("messages", "is required")
	case len(messages) == 0 && len(errs) == 0:
		errs.Add("messages", "must hold at least one message")
	case len(messages) > s2sMaxMessages:
		errs.Add("messages", fmt.Sprintf("holds %d messages; at most %d per request", len(messages), s2sMaxMessages))
	}
	if len(errs) > 0 {
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "invalid request", Errors: errs}
	}

	times := eventTimesAt(d.now())
	msgs := make([]s2sMessage, len(messages))
	var scratch [2]object // reused across messages: the message, its attributes
	for i, raw := range messages {
		d.validateMessage(p, i, raw, times, &msgs[i], &errs, &scratch)
	}
	if len(errs) > 0 {
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest,
			Message: "invalid messages: nothing from this request was stored", Errors: errs}
	}
	var missing event.FieldErrors
	for i := range msgs {
		m := &msgs[i]
		if m.typ == s2sMessageUser {
			continue
		}
		et, ok := d.Projects.EventType(p.ID, m.name)
		switch {
		case !ok:
			missing.AddAt(i, messagePath(i, "name"), fmt.Sprintf("no event type %q is defined for this application", m.name))
		case et.Kind != m.typ:
			missing.AddAt(i, messagePath(i, "name"), fmt.Sprintf("event type %q is declared as %s, not %s", m.name, et.Kind, m.typ))
		}
	}
	if len(missing) > 0 {
		return nil, &Error{Status: http.StatusNotFound, Code: CodeEventTypeDoesNotExist,
			Message: "unknown event types: nothing from this request was stored", Errors: missing}
	}

	received := r.ReceivedAt.UnixMilli()
	td := transport(r)
	var batchIDs []event.Identity
	if customUserID != "" {
		batchIDs = append(batchIDs, event.Identity{Type: s2sBatchIdentityCustomUser, Value: customUserID})
	}
	if metrixUserID != "" {
		batchIDs = append(batchIDs, event.Identity{Type: s2sBatchIdentityMetrixUser, Value: metrixUserID})
	}
	// One allocation for all events, and one for all their identities.
	store := make([]event.Event, len(msgs))
	items := make([]Item, len(msgs))
	nIDs := 0
	for i := range msgs {
		nIDs += len(batchIDs) + len(msgs[i].ids)
	}
	idStore := make([]event.Identity, 0, nIDs)
	for i := range msgs {
		m := &msgs[i]
		start := len(idStore)
		idStore = append(append(idStore, batchIDs...), m.ids...)
		e := &store[i]
		*e = event.Event{
			Channel: event.ChannelHTTP, Service: DialectS2S, ProjectID: p.ID, TD: td,
			Data: m.data, Time: m.time, Dialect: DialectS2S, ReceivedAt: received,
			DedupKey:   s2sDedupPrefix + m.id,
			Identities: idStore[start:len(idStore):len(idStore)],
		}
		switch m.typ {
		case s2sMessageUser:
			e.Key, e.Name = s2sUserKey, s2sMessageUser
		case s2sMessageAction:
			e.Key, e.Name = s2sActionPrefix+m.name, m.name
		default:
			e.Key, e.Name = s2sRevenuePrefix+m.name, m.name
		}
		items[i] = Item{Event: e, Raw: messages[i]}
	}
	return &Decoded{Items: items}, nil
}

func (d *S2S) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func messagePath(i int, field string) string {
	if field == "" {
		return "messages[" + strconv.Itoa(i) + "]"
	}
	return "messages[" + strconv.Itoa(i) + "]." + field
}

// The fields each message type takes.
var (
	s2sCommon = map[string]bool{"type": true, "id": true, "time": true}
	s2sUser   = map[string]bool{
		"firstName": true, "lastName": true, "phoneNumber": true, "phone": true, "hashedPhoneNumber": true,
		"email": true, "hashedEmail": true, "country": true, "city": true, "region": true, "locality": true,
		"gender": true, "birthday": true, "channels": true, "customAttributes": true,
	}
	s2sAction  = map[string]bool{"name": true, "attributes": true}
	s2sRevenue = map[string]bool{"name": true, "revenue": true, "currency": true}
	s2sGenders = map[string]bool{"Male": true, "Female": true, "Other": true}
	s2sChannel = map[string]bool{"SMS": true, "Push": true, "Email": true}
)

// validateMessage checks message i and fills m; violations go to errs.
func (d *S2S) validateMessage(p *project.Project, i int, raw []byte, times eventTimes, m *s2sMessage, errs *event.FieldErrors, scratch *[2]object) {
	add := func(field, msg string) { errs.AddAt(i, messagePath(i, field), msg) }
	if raw[0] != '{' {
		add("", "must be an object")
		return
	}
	obj := &scratch[0]
	parseCompactObject(raw, obj)
	defer func() { m.data = obj.json() }() // before the scratch object is reused
	if v, ok := obj.get("type"); !ok {
		add("type", "is required: user, action or revenue")
	} else {
		switch string(v) { // compared without allocating
		case `"user"`:
			m.typ = s2sMessageUser
		case `"action"`:
			m.typ = s2sMessageAction
		case `"revenue"`:
			m.typ = s2sMessageRevenue
		default:
			add("type", "must be user, action or revenue")
		}
	}
	if v, ok := obj.get("id"); !ok {
		add("id", "is required")
	} else if s, isStr := jsonString(v); !isStr || s == "" || len(s) > s2sMaxIDLength {
		add("id", "must be a non-empty string of at most 128 characters")
	} else {
		m.id = s
	}
	if v, ok := obj.get("time"); !ok {
		add("time", "is required: the event's time in Unix milliseconds")
	} else if t, isInt := jsonInt(v); !isInt {
		add("time", "must be an integer: Unix milliseconds")
	} else if !times.contain(t) {
		add("time", eventTimeRange+" (Unix milliseconds)")
	} else {
		m.time = t
	}
	var allowed map[string]bool
	switch m.typ {
	case s2sMessageUser:
		allowed = s2sUser
	case s2sMessageAction:
		allowed = s2sAction
	case s2sMessageRevenue:
		allowed = s2sRevenue
	}
	for _, mem := range obj.members {
		if s2sCommon[mem.key] {
			continue
		}
		if allowed == nil { // the type is wrong: the rest cannot be judged
			continue
		}
		if !allowed[mem.key] {
			add(mem.key, "unknown field for a "+m.typ+" message")
		}
	}
	switch m.typ {
	case s2sMessageUser:
		d.validateUser(p, i, obj, m, errs, &scratch[1])
	case s2sMessageAction, s2sMessageRevenue:
		if v, ok := obj.get("name"); !ok {
			add("name", "is required: the event type's slug")
		} else if s, isStr := jsonString(v); !isStr || s == "" {
			add("name", "must be the event type's slug")
		} else {
			m.name = s
		}
		if m.typ == s2sMessageAction {
			if v, ok := obj.get("attributes"); ok {
				checkStringMap(v, &scratch[1], func(path, msg string) { add("attributes"+path, msg) })
			}
			break
		}
		if v, ok := obj.get("revenue"); !ok {
			add("revenue", "is required")
		} else if f, isNum := jsonFloat(v); !isNum {
			add("revenue", "must be a number")
		} else if f < 0 {
			add("revenue", "must not be negative")
		}
		if v, ok := obj.get("currency"); !ok {
			add("currency", "is required: an ISO 4217 code such as IRR, USD or EUR")
		} else if s, _ := jsonString(v); !currency.Valid(s) {
			add("currency", "must be an ISO 4217 currency code such as IRR, USD or EUR")
		}
	}
}

// validateUser checks a user message's attributes, collects its identity
// hashes and, when the project hashes PII, replaces raw phone numbers and
// e-mail addresses by their hashes in the stored message.
func (d *S2S) validateUser(p *project.Project, i int, obj *object, m *s2sMessage, errs *event.FieldErrors, scratch *object) {
	add := func(field, msg string) { errs.AddAt(i, messagePath(i, field), msg) }
	str := func(field string) (string, bool) {
		v, ok := obj.get(field)
		if !ok {
			return "", false
		}
		s, isStr := jsonString(v)
		if !isStr {
			add(field, "must be a string")
			return "", false
		}
		return s, true
	}
	for _, f := range []string{"firstName", "lastName", "country", "city", "region", "locality"} {
		if s, ok := str(f); ok && len(s) > 1024 {
			add(f, "is longer than 1024 characters")
		}
	}
	if g, ok := str("gender"); ok && !s2sGenders[g] {
		add("gender", "must be Male, Female or Other")
	}
	if v, ok := obj.get("birthday"); ok {
		if _, isInt := jsonInt(v); !isInt {
			add("birthday", "must be an integer: Unix milliseconds")
		}
	}
	if v, ok := obj.get("channels"); ok {
		if v[0] != '[' {
			add("channels", "must be an array of SMS, Push or Email")
		} else {
			seen := map[string]bool{}
			for j, el := range splitArray(v) {
				s, _ := jsonString(el)
				path := "channels[" + strconv.Itoa(j) + "]"
				switch {
				case !s2sChannel[s]:
					add(path, "must be SMS, Push or Email")
				case seen[s]:
					add(path, s+" is listed twice")
				}
				seen[s] = true
			}
		}
	}
	if v, ok := obj.get("customAttributes"); ok {
		checkStringMap(v, scratch, func(path, msg string) { add("customAttributes"+path, msg) })
	}

	// Phone: phoneNumber, or phone as the seed's curl example sends it.
	phoneField := ""
	var phone string
	for _, f := range []string{"phoneNumber", "phone"} {
		if s, ok := str(f); ok {
			if phoneField != "" {
				add(f, "give phoneNumber or phone, not both")
				continue
			}
			phoneField, phone = f, s
		}
	}
	hashedPhone, hasHashedPhone := str("hashedPhoneNumber")
	if hasHashedPhone && !identity.IsHash(hashedPhone) {
		add("hashedPhoneNumber", "must be a SHA-256 as 64 lowercase hex digits (see `sluice hash phone`)")
		hasHashedPhone = false
	}
	if phoneField != "" {
		h, err := identity.HashPhone(phone, p.Settings.DefaultRegion)
		switch {
		case err == nil:
			if !hasHashedPhone {
				hashedPhone, hasHashedPhone = h, true
			}
		case p.Settings.HashPII:
			add(phoneField, s2sHashPIIPhoneUnreadable)
		}
		// Without hash_pii a phone number that cannot be read is kept as
		// sent (the seed's own example masks one: "+98917*******").
	}
	email, hasEmail := str("email")
	hashedEmail, hasHashedEmail := str("hashedEmail")
	if hasHashedEmail && !identity.IsHash(hashedEmail) {
		add("hashedEmail", "must be a SHA-256 as 64 lowercase hex digits (see `sluice hash email`)")
		hasHashedEmail = false
	}
	if hasEmail {
		h, err := identity.HashEmail(email)
		if err != nil {
			add("email", "must be an e-mail address")
		} else if !hasHashedEmail {
			hashedEmail, hasHashedEmail = h, true
		}
	}
	if hasHashedPhone {
		m.ids = append(m.ids, event.Identity{Type: identity.TypePhoneHash, Value: hashedPhone})
	}
	if hasHashedEmail {
		m.ids = append(m.ids, event.Identity{Type: identity.TypeEmailHash, Value: hashedEmail})
	}
	if p.Settings.HashPII {
		// The raw values never reach disk: the stored message carries
		// only their hashes.
		if phoneField != "" {
			obj.remove(phoneField)
			if hasHashedPhone {
				obj.set("hashedPhoneNumber", event.AppendString(nil, hashedPhone))
			}
		}
		if hasEmail {
			obj.remove("email")
			if hasHashedEmail {
				obj.set("hashedEmail", event.AppendString(nil, hashedEmail))
			}
		}
	}
}

// checkStringMap checks that raw is an object of string values, using o
// as scratch.
func checkStringMap(raw []byte, o *object, add func(path, msg string)) {
	if raw[0] != '{' {
		add("", "must be an object of string values")
		return
	}
	parseCompactObject(raw, o)
	if len(o.members) > s2sMaxAttributes {
		add("", fmt.Sprintf("has %d entries; at most %d", len(o.members), s2sMaxAttributes))
	}
	for _, mem := range o.members {
		switch {
		case mem.key == "" || len(mem.key) > s2sMaxAttributeKey:
			add(pathSegment(mem.key), "keys are 1 to 128 characters")
		case mem.val[0] != '"':
			add(pathSegment(mem.key), "must be a string")
		case len(mem.val) > s2sMaxAttributeValue+2:
			add(pathSegment(mem.key), "is longer than 4096 characters")
		}
	}
}
