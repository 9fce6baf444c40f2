package dialect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/identity"
	"github.com/sluicehq/sluice/internal/project"
	"github.com/sluicehq/sluice/internal/schema"
)

// DialectCommerce names the typed e-commerce events dialect (seed 002).
const DialectCommerce = "commerce"

// Commerce keys: in.commerce.<eventType> for typed events (built-in or
// registered), in.commerce.custom.<name> for the others.
const (
	CommercePrefix       = "in.commerce."
	CommerceCustomPrefix = "in.commerce.custom."
)

const (
	commerceMaxName      = 256
	commerceMaxID        = 256
	commerceMaxMessageID = 128
	// commercePurchaseType is unique per project by uniqueTransactionId.
	commercePurchaseType = "purchase-v1"
	// cuidTypePhoneHash is the cuidType of a phone hash.
	cuidTypePhoneHash = "phone_hash"
)

// commerceEnvelope is every member an event may have.
var commerceEnvelope = map[string]bool{
	"name": true, "properties": true, "anonymousId": true, "userId": true, "messageId": true, "timestamp": true,
}

const (
	commerceUnknownField = "is not a field of an event: an event has name, properties, anonymousId, userId, messageId and timestamp"
)

// CommerceProjects is what the commerce dialect needs to know of projects:
// tokens, and the event types each registered.
type CommerceProjects interface {
	TrackProjects
	Schema(projectID uint32, typ string) (*project.SchemaRecord, bool)
	Schemas(projectID uint32) ([]*project.SchemaRecord, error)
}

// Commerce decodes POST /v1/events: one event, or {"batch":[…]}.
type Commerce struct {
	Projects CommerceProjects
	// EventLimit caps one event, alone or in a batch (default 32 KiB);
	// BatchLimit a POST /v1/events body (default 500 KiB).
	EventLimit int
	BatchLimit int64
	// Now is the clock that bounds timestamps (default time.Now).
	Now func() time.Time
}

var _ Dialect = (*Commerce)(nil)

// Commerce limits and route.
const (
	DefaultCommerceEvent = 32 << 10
	DefaultCommerceBatch = 500 << 10
	RouteCommerce        = "commerce"
)

// Name implements Dialect.
func (c *Commerce) Name() string { return DialectCommerce }

// Match implements Dialect: /v1 and everything below it.
func (c *Commerce) Match(hr *http.Request) (string, bool) {
	p := hr.URL.Path
	return RouteCommerce, p == "/v1" || strings.HasPrefix(p, "/v1/")
}

// Accept implements Dialect: POST /v1/events with JSON.
func (c *Commerce) Accept(hr *http.Request, route string) (int64, error) {
	if err := acceptJSONPost(hr, "/v1/events"); err != nil {
		return 0, err
	}
	if c.BatchLimit > 0 {
		return c.BatchLimit, nil
	}
	return DefaultCommerceBatch, nil
}

// Authenticate implements Dialect: the project of the request's token
// (Basic user name or Bearer, as in track).
func (c *Commerce) Authenticate(r *Request) (*project.Project, error) {
	return authenticateToken(c.Projects, r.HTTP)
}

// Decode implements Dialect.
func (c *Commerce) Decode(r *Request) (*Decoded, error) {
	ev, items, err := c.decode(r.Project, r)
	if err != nil {
		return nil, err
	}
	if items != nil {
		return &Decoded{Items: items, Batch: true}, nil
	}
	return &Decoded{Items: []Item{{Event: ev}}}, nil
}

// Answer implements Dialect.
func (c *Commerce) Answer(w http.ResponseWriter, r *Request, d *Decoded, out []Outcome) {
	if d.Batch {
		answerBatch(w, d, out, "event")
		return
	}
	answerEvent(w, d.Items[0].Event, out[0])
}

// Refuse implements Dialect.
func (c *Commerce) Refuse(err error) *Error { return refusal(err) }

func (c *Commerce) eventLimit() int {
	if c.EventLimit > 0 {
		return c.EventLimit
	}
	return DefaultCommerceEvent
}

// decode reads the body: one event (single set) or a batch (batch set,
// one item per event, in order). A single invalid event is an *Error
// listing every violation; in a batch, invalid items do not stop valid
// ones.
func (c *Commerce) decode(p *project.Project, r *Request) (single *event.Event, batch []Item, err error) {
	data, err := compactJSON(r.Body)
	if err != nil {
		return nil, nil, FieldError(http.StatusBadRequest, "body", err.Error())
	}
	if len(data) == 0 || data[0] != '{' {
		return nil, nil, FieldError(http.StatusBadRequest, "body", `must be a JSON object: one event, or {"batch":[…]}`)
	}
	// A string that is not UTF-8 text fails its event: the whole request,
	// or its item of a batch.
	te := event.CheckJSONText(data)
	if te != nil && !strings.HasPrefix(te.Path, "batch[") {
		return nil, nil, textError(te, "")
	}
	var top object
	parseCompactObject(data, &top)
	now := r.ReceivedAt
	if c.Now != nil {
		now = c.Now()
	}
	times := eventTimesAt(now)
	raw, isBatch := top.get("batch")
	if !isBatch {
		if limit := c.eventLimit(); len(data) > limit {
			return nil, nil, Errorf(http.StatusRequestEntityTooLarge, "an event is larger than the limit of %d bytes", limit)
		}
		ev, errs := c.decodeEvent(p, r, &top, times)
		if len(errs) > 0 {
			return nil, nil, &Error{Status: http.StatusBadRequest, Message: "invalid event", Errors: errs}
		}
		return ev, nil, nil
	}
	if len(top.members) > 1 {
		for _, m := range top.members {
			if m.key != "batch" {
				return nil, nil, FieldError(http.StatusBadRequest, strings.TrimPrefix(pathSegment(m.key), "."), `a batch is {"batch":[event, …]} and nothing else`)
			}
		}
	}
	if len(raw) == 0 || raw[0] != '[' {
		return nil, nil, FieldError(http.StatusBadRequest, "batch", "must be an array of events")
	}
	elems := splitArray(raw)
	if len(elems) == 0 {
		return nil, nil, FieldError(http.StatusBadRequest, "batch", "is required: a non-empty array of events")
	}
	items := make([]Item, len(elems))
	var obj object
	for i, el := range elems {
		items[i].Raw = el
		switch {
		case len(el) > c.eventLimit():
			items[i].Status = http.StatusRequestEntityTooLarge
			items[i].Errors = event.FieldErrors{{Message: fmt.Sprintf("an event is larger than the limit of %d bytes", c.eventLimit())}}
		case el[0] != '{':
			items[i].Status = http.StatusBadRequest
			items[i].Errors = event.FieldErrors{{Message: "must be a JSON object (one event)"}}
		case te != nil && event.CheckJSONText(el) != nil:
			items[i].Status = http.StatusBadRequest
			items[i].Errors = event.FieldErrors{textFieldError(event.CheckJSONText(el), "")}
		default:
			parseCompactObject(el, &obj)
			ev, errs := c.decodeEvent(p, r, &obj, times)
			if len(errs) > 0 {
				items[i].Status, items[i].Errors = http.StatusBadRequest, errs
			} else {
				items[i].Event = ev
			}
		}
	}
	return nil, items, nil
}

// commerceEvent is what validation learns of an event.
type commerceEvent struct {
	name, typ, messageID, txID string
	time                       int64
	ids                        []event.Identity
}

// decodeEvent validates one event (top, a parsed compact object) and
// builds its canonical event.
func (c *Commerce) decodeEvent(p *project.Project, r *Request, top *object, times eventTimes) (*event.Event, event.FieldErrors) {
	var errs event.FieldErrors
	// own holds the paths this function reported, so that the schema's
	// wording of the same problem is not added a second time.
	own := map[string]bool{}
	add := func(path, msg string) {
		own[path] = true
		errs = append(errs, event.FieldError{Path: path, Message: msg})
	}
	// null is absent, for every optional member.
	get := func(o *object, k string) ([]byte, bool) {
		v, ok := o.get(k)
		if !ok || string(v) == "null" {
			return nil, false
		}
		return v, true
	}
	var ce commerceEvent
	for _, m := range top.members {
		if !commerceEnvelope[m.key] {
			add(strings.TrimPrefix(pathSegment(m.key), "."), commerceUnknownField)
		}
	}
	if v, ok := get(top, "name"); !ok {
		add("name", "is required: the event's name, e.g. \"Purchase\"")
	} else if s, isStr := jsonString(v); !isStr || strings.TrimSpace(s) == "" || utf8.RuneCountInString(s) > commerceMaxName {
		add("name", fmt.Sprintf("must be a non-empty string of at most %d characters", commerceMaxName))
	} else {
		ce.name = s
	}
	for _, f := range []struct{ field, idType string }{{"anonymousId", identity.TypeAnonymousID}, {"userId", identity.TypeUserID}} {
		v, ok := get(top, f.field)
		if !ok {
			continue
		}
		if s, isStr := jsonString(v); !isStr || strings.TrimSpace(s) == "" || utf8.RuneCountInString(s) > commerceMaxID {
			add(f.field, fmt.Sprintf("must be a non-empty string of at most %d characters", commerceMaxID))
		} else {
			ce.ids = append(ce.ids, event.Identity{Type: f.idType, Value: s})
		}
	}
	if v, ok := get(top, "messageId"); ok {
		if s, isStr := jsonString(v); !isStr || s == "" || len(s) > commerceMaxMessageID {
			add("messageId", fmt.Sprintf("must be a non-empty string of at most %d bytes", commerceMaxMessageID))
		} else {
			ce.messageID = s
		}
	}
	ce.time = r.ReceivedAt.UnixMilli()
	if v, ok := get(top, "timestamp"); ok {
		s, isStr := jsonString(v)
		t, err := parseTimestamp(s)
		switch {
		case !isStr || err != nil:
			add("timestamp", "must be an ISO 8601 time with a zone, such as 2026-11-23T10:04:05.123Z or 20261123T100405Z")
		case !times.contain(t.UnixMilli()):
			add("timestamp", eventTimeRange)
		default:
			ce.time = t.UnixMilli()
		}
	}

	var props object
	hasProps := false
	if v, ok := get(top, "properties"); ok {
		if v[0] != '{' {
			add("properties", "must be an object")
		} else {
			parseCompactObject(v, &props)
			hasProps = true
		}
	}
	var sch *schema.Schema
	if hasProps {
		sch = c.eventType(p, &props, &ce, add)
	}
	if hasProps {
		changed := c.personalData(p, &props, sch, add)
		c.identities(p, &props, &ce, add)
		for _, fe := range commerceNumbers(props.json(), sch) {
			add(fe.Path, fe.Message)
		}
		if sch == nil && ce.typ == "" && !own["properties.value"] {
			if v, ok := get(&props, "value"); ok && !numericValue(v) {
				add("properties.value", "must be a number or a numeric string (a monetary value)")
			}
		}
		if sch != nil && !sch.ValidFast(props.json()) {
			// Not surely valid: the library finds and words every
			// violation (a valid event, the common case, skips it).
			doc, err := decodeAny(props.json())
			if err != nil {
				add("properties", err.Error())
			} else {
				for _, e := range sch.Validate(doc, "properties") {
					if !own[e.Path] {
						errs = append(errs, e)
					}
				}
			}
		}
		if sch != nil {
			if ce.typ == commercePurchaseType {
				if v, ok := get(&props, "uniqueTransactionId"); ok {
					ce.txID, _ = jsonString(v)
				}
			}
		}
		if changed {
			top.set("properties", props.json())
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	received := r.ReceivedAt.UnixMilli()
	ev := &event.Event{
		Channel:    event.ChannelHTTP,
		Service:    DialectCommerce,
		Name:       ce.name,
		ProjectID:  p.ID,
		TD:         transport(r),
		Data:       top.json(),
		Time:       ce.time,
		Dialect:    DialectCommerce,
		ReceivedAt: received,
		Identities: ce.ids,
	}
	if ce.typ != "" {
		ev.Key = CommercePrefix + ce.typ
	} else {
		ev.Key = CommerceCustomPrefix + KeySegment(ce.name)
	}
	switch {
	case ce.txID != "":
		// The seed's promise: one purchase per transaction.
		ev.DedupKey = "commerce:purchase:" + ce.txID
	case ce.messageID != "":
		ev.DedupKey = "commerce:msg:" + ce.messageID
	}
	return ev, nil
}

// eventType resolves properties.eventType to a schema: a built-in one, or
// one the project registered. No eventType is a custom event.
func (c *Commerce) eventType(p *project.Project, props *object, ce *commerceEvent, add func(path, msg string)) *schema.Schema {
	v, ok := props.get("eventType")
	if !ok || string(v) == "null" {
		return nil
	}
	s, isStr := jsonString(v)
	if !isStr {
		add("properties.eventType", "must be a string: one of the known event types, or leave it out for a custom event")
		return nil
	}
	if sch, ok := schema.Builtin(s); ok {
		ce.typ = s
		return sch
	}
	if rec, ok := c.Projects.Schema(p.ID, s); ok && rec.Compiled() != nil {
		ce.typ = s
		return rec.Compiled()
	}
	known := schema.BuiltinTypes()
	if recs, err := c.Projects.Schemas(p.ID); err == nil {
		for _, r := range recs {
			known = append(known, r.Type)
		}
	}
	sort.Strings(known)
	add("properties.eventType", fmt.Sprintf("unknown event type %q; the known types are %s (leave eventType out for a custom event)",
		s, strings.Join(known, ", ")))
	return nil
}

// personalData handles raw e-mail addresses and phone numbers in
// properties. With hash_pii they are hashed with the identity package and
// only the hashes are kept: email becomes hashedEmail, phone becomes cuid
// with cuidType phone_hash (or hashedPhone when the event already has a
// cuid). Without it, the built-in types refuse them: the seed wants
// hashes there. It reports whether props changed.
func (c *Commerce) personalData(p *project.Project, props *object, sch *schema.Schema, add func(path, msg string)) bool {
	email, hasEmail := props.get("email")
	phone, hasPhone := props.get("phone")
	hasEmail = hasEmail && string(email) != "null"
	hasPhone = hasPhone && string(phone) != "null"
	if !hasEmail && !hasPhone {
		return false
	}
	if !p.Settings.HashPII {
		if _, builtin := schema.Builtin(typeOf(props)); builtin && sch != nil { // a built-in type, resolved
			if hasEmail {
				add("properties.email", "raw e-mail addresses are not taken here and this project does not hash personal data: "+
					"send properties.hashedEmail, the SHA-256 of the lower-cased address (`sluice hash email <address>` prints it), "+
					"or turn on hash_pii for the project")
			}
			if hasPhone {
				add("properties.phone", "raw phone numbers are not taken here and this project does not hash personal data: "+
					"send properties.cuid, the SHA-256 of the normalised number (`sluice hash phone <number>` prints it), with cuidType \"phone_hash\", "+
					"or turn on hash_pii for the project")
			}
		}
		// Custom and registered events carry what their senders define.
		return false
	}
	changed := false
	if hasEmail {
		s, isStr := jsonString(email)
		h, err := identity.HashEmail(s)
		if !isStr || err != nil {
			add("properties.email", "must be an e-mail address (hash_pii is on: it is stored as its hash, hashedEmail)")
		} else {
			props.remove("email")
			if _, has := props.get("hashedEmail"); !has {
				props.set("hashedEmail", event.AppendString(nil, h))
			}
			changed = true
		}
	}
	if hasPhone {
		s, isStr := jsonString(phone)
		h, err := identity.HashPhone(s, p.Settings.DefaultRegion)
		if !isStr || err != nil {
			add("properties.phone", "cannot be read as a phone number in the project's default_region, so it cannot be hashed (hash_pii is on): "+
				"send properties.cuid with its SHA-256 and cuidType \"phone_hash\" instead")
		} else {
			props.remove("phone")
			if cuid, has := props.get("cuid"); !has || string(cuid) == "null" {
				props.set("cuid", event.AppendString(nil, h))
				props.set("cuidType", event.AppendString(nil, cuidTypePhoneHash))
			} else {
				props.set("hashedPhone", event.AppendString(nil, h))
			}
			changed = true
		}
	}
	return changed
}

// typeOf is properties.eventType, or "".
func typeOf(props *object) string {
	v, _ := props.get("eventType")
	s, _ := jsonString(v)
	return s
}

var emailLike = regexp.MustCompile(`^[^@\s]+@[^@\s]+$`)

// identities checks and collects the identity fields of properties:
// hashedEmail, cuid + cuidType, hashedPhone.
func (c *Commerce) identities(p *project.Project, props *object, ce *commerceEvent, add func(path, msg string)) {
	str := func(k string) (string, bool, bool) {
		v, ok := props.get(k)
		if !ok || string(v) == "null" {
			return "", false, false
		}
		s, isStr := jsonString(v)
		return s, true, isStr
	}
	if s, present, isStr := str("hashedEmail"); present {
		switch {
		case isStr && identity.IsHash(s):
			ce.ids = append(ce.ids, event.Identity{Type: identity.TypeEmailHash, Value: s})
		case isStr && emailLike.MatchString(strings.TrimSpace(s)):
			hint := "or turn on hash_pii for the project and send properties.email"
			if p.Settings.HashPII {
				hint = "or send the address as properties.email: this project hashes it"
			}
			add("properties.hashedEmail", "is a raw e-mail address; send its SHA-256 as 64 lowercase hex digits: "+
				"`sluice hash email <address>` prints it ("+hint+")")
		default:
			add("properties.hashedEmail", "must be the SHA-256 of the lower-cased e-mail address as 64 lowercase hex digits: `sluice hash email <address>` prints it")
		}
	}
	if s, present, isStr := str("hashedPhone"); present {
		if isStr && identity.IsHash(s) {
			ce.ids = append(ce.ids, event.Identity{Type: identity.TypePhoneHash, Value: s})
		} else {
			add("properties.hashedPhone", "must be the SHA-256 of the normalised phone number as 64 lowercase hex digits: `sluice hash phone <number>` prints it")
		}
	}
	cuid, hasCuid, cuidStr := str("cuid")
	cuidType, hasType, typeStr := str("cuidType")
	if !hasCuid {
		return
	}
	switch {
	case !cuidStr || strings.TrimSpace(cuid) == "":
		add("properties.cuid", "must be a non-empty string: a customer id, typed by cuidType")
	case !hasType:
		add("properties.cuidType", "is required when cuid is present")
	case !typeStr || strings.TrimSpace(cuidType) == "":
		add("properties.cuidType", "must be a non-empty string: the type of cuid, e.g. phone_hash or crm_id")
	case (cuidType == cuidTypePhoneHash || ce.typ == "login-v1") && !identity.IsHash(cuid):
		// login-v1 takes only phone hashes.
		msg := "must be the SHA-256 of the normalised phone number as 64 lowercase hex digits: `sluice hash phone <number>` prints it"
		if looksLikePhone(cuid) {
			msg = "is a raw phone number; " + msg
		}
		add("properties.cuid", msg)
	case cuidType == cuidTypePhoneHash:
		ce.ids = append(ce.ids, event.Identity{Type: identity.TypePhoneHash, Value: cuid})
	default:
		ce.ids = append(ce.ids, event.Identity{Type: "cuid:" + cuidType, Value: cuid})
	}
}

// looksLikePhone: digits with the usual separators, at least six digits.
func looksLikePhone(s string) bool {
	digits := 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case strings.ContainsRune("+-() .", r):
		default:
			return false
		}
	}
	return digits >= 6
}

// numericValue: a JSON number, or a string holding a decimal number
// ("12.50", "-3", "1e3"; not "0x10", "NaN" or "Infinity").
func numericValue(raw []byte) bool {
	if len(raw) > 0 && raw[0] != '"' {
		_, ok := jsonFloat(raw)
		return ok
	}
	s, ok := jsonString(raw)
	if !ok || !decimalRE.MatchString(strings.TrimSpace(s)) {
		return false
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return err == nil && !math.IsInf(f, 0)
}

var decimalRE = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// decodeAny decodes compact JSON the way the schema validator wants it:
// numbers as json.Number.
func decodeAny(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// commerceNumbers is the violation of every number in props (compact
// JSON, at path properties) that does not fit what reads it (see
// numberProblem): a 64-bit float, and where the event's schema types it
// integer a 64-bit integer (quantity 99999999999999999999999 or 1e400 was
// stored, and profiles clamped it). A scan of the text clears a common
// event without allocating; only one with a suspect number is walked,
// with its schema beside it.
func commerceNumbers(props []byte, sch *schema.Schema) event.FieldErrors {
	if !suspectNumbers(props) {
		return nil
	}
	var w numberWalk
	var applies []map[string]any
	if sch != nil {
		if err := json.Unmarshal(sch.Doc, &w.root); err == nil {
			applies = w.applicable(w.root, 0, nil)
		}
	}
	w.value(props, "properties", applies)
	return w.errs
}

// suspectNumbers reports whether b, compact JSON, has a number that may
// not fit an integer field or a float.
func suspectNumbers(b []byte) bool {
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c == '"':
			i = scanString(b, i)
		case c == '-' || (c >= '0' && c <= '9'):
			end := scanValue(b, i)
			if numberProblem(b[i:end], true) != "" {
				return true
			}
			i = end
		default:
			i++
		}
	}
	return false
}

// numberWalk walks a document and the JSON Schema beside it, as far as
// the schema's properties, items, prefixItems, $ref (within the document)
// and allOf, anyOf and oneOf lead; a value they do not reach is a number
// of no particular type.
type numberWalk struct {
	root any // the schema document
	errs event.FieldErrors
}

func (w *numberWalk) value(v []byte, path string, applies []map[string]any) {
	switch c := v[0]; {
	case c == '{':
		var o object
		parseCompactObject(v, &o)
		for _, m := range o.members {
			w.value(m.val, path+pathSegment(m.key), w.children(applies, m.key, -1))
		}
	case c == '[':
		for it := (arrayIter{b: v}); it.next(); {
			w.value(it.elem, path+"["+strconv.Itoa(it.n)+"]", w.children(applies, "", it.n))
		}
	case c == '-' || (c >= '0' && c <= '9'):
		if msg := numberProblem(v, typesInteger(applies)); msg != "" {
			w.errs.Add(path, msg)
		}
	}
}

// applicable appends s and the schemas that apply to the same value with
// it: its $ref, allOf, anyOf and oneOf, each schema once, followed to a
// bounded depth.
func (w *numberWalk) applicable(s any, depth int, out []map[string]any) []map[string]any {
	m, ok := s.(map[string]any)
	if !ok || depth > 32 {
		return out
	}
	for _, o := range out {
		if reflect.ValueOf(o).UnsafePointer() == reflect.ValueOf(m).UnsafePointer() {
			return out // a $ref back to a schema already here
		}
	}
	out = append(out, m)
	if ref, ok := m["$ref"].(string); ok {
		out = w.applicable(w.pointer(ref), depth+1, out)
	}
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		list, _ := m[k].([]any)
		for _, sub := range list {
			out = w.applicable(sub, depth+1, out)
		}
	}
	return out
}

// children are the schemas that apply to member key (or, for an array,
// element idx) of a value the schemas apply to.
func (w *numberWalk) children(applies []map[string]any, key string, idx int) []map[string]any {
	var out []map[string]any
	for _, m := range applies {
		var sub any
		if idx < 0 {
			props, _ := m["properties"].(map[string]any)
			if s, ok := props[key]; ok {
				sub = s
			} else {
				sub = m["additionalProperties"]
			}
		} else {
			prefix, _ := m["prefixItems"].([]any)
			if idx < len(prefix) {
				sub = prefix[idx]
			} else {
				sub = m["items"]
			}
		}
		out = w.applicable(sub, 0, out)
	}
	return out
}

// pointer resolves a $ref within the schema document ("#", "#/$defs/x").
func (w *numberWalk) pointer(ref string) any {
	rest, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil
	}
	cur := w.root
	for _, seg := range strings.Split(strings.TrimPrefix(rest, "/"), "/") {
		if seg == "" {
			continue
		}
		seg = strings.NewReplacer("~1", "/", "~0", "~").Replace(seg)
		switch c := cur.(type) {
		case map[string]any:
			cur = c[seg]
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	return cur
}

// typesInteger reports whether one of the schemas types its value integer.
func typesInteger(applies []map[string]any) bool {
	for _, m := range applies {
		switch t := m["type"].(type) {
		case string:
			if t == "integer" {
				return true
			}
		case []any:
			for _, e := range t {
				if e == "integer" {
					return true
				}
			}
		}
	}
	return false
}
