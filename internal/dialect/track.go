package dialect

import (
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/internal/dialect/trackfields"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/project"
)

// DialectTrack names the Tracking API postback dialect (seed 000).
const DialectTrack = "track"

// Track keys: the semantic transaction event and custom events.
const (
	TrackTransactionKey = "in.track.transaction.completed"
	trackCustomPrefix   = "in.track.custom."
	// TransactionEvent is the one semantic event name of the seed.
	TransactionEvent = "Completed Transaction"
)

// trackKinds are the validation kinds of the table's types.
var trackKinds = map[trackfields.Type]kind{
	trackfields.String:         kString,
	trackfields.Number:         kNumber,
	trackfields.Integer:        kInteger,
	trackfields.Record:         kRecord,
	trackfields.RecordArray:    kRecordArray,
	trackfields.Timestamp:      kTimestamp,
	trackfields.StringOrNumber: kStringOrNumber,
}

// trackChecks are the rules of the seed's table beyond its types, by path.
var trackChecks = map[string]func(any) string{
	"hitId":       uuidV1,
	"event.value": nonNegative,
}

// trackTree is the seed's field table (trackfields.Table) as a validation
// tree.
var trackTree = func() *node {
	root := &node{kind: kRecord}
	checked := 0
	for _, row := range trackfields.Table {
		segs, err := project.ParseFieldPath(row.Path)
		if err != nil || trackfields.Path(segs) != row.Path {
			panic(fmt.Sprintf("track table: %q is not a path in the table's notation (%v)", row.Path, err)) // the table is a constant
		}
		k, ok := trackKinds[row.Type]
		if !ok {
			panic(fmt.Sprintf("track table: %s has no kind", row.Path))
		}
		n := root.add(segs, k)
		n.required, n.check = row.Required, trackChecks[row.Path]
		if n.check != nil {
			checked++
		}
	}
	if checked != len(trackChecks) {
		panic("track table: a check names a path the table does not have")
	}
	return root
}()

func uuidV1(v any) string {
	s, ok := v.(string)
	if !ok {
		return "must be a string"
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "must be a UUID"
	}
	if u.Version() != 1 || u.Variant() != uuid.RFC4122 {
		return fmt.Sprintf("must be a UUID of version 1 with the RFC 4122 variant (this one is version %d, variant %s)", u.Version(), u.Variant())
	}
	return ""
}

// TrackProjects is what the track dialect needs to know of projects.
type TrackProjects interface {
	Get(id uint32) (*project.Project, bool)
	Authenticate(secret string) (projectID uint32, tokenID string, ok bool)
}

// Track decodes POST /track and POST /track/batch.
type Track struct {
	Projects TrackProjects
	// HitLimit caps one hit, alone or in a batch (default 32 KiB);
	// BatchLimit a POST /track/batch body (default 500 KiB).
	HitLimit   int
	BatchLimit int64

	mu    sync.Mutex
	trees map[uint32]cachedTree // per-project trees with custom fields
}

type cachedTree struct {
	settings project.TrackSettings
	tree     *node
}

var _ Dialect = (*Track)(nil)

// Track limits and routes.
const (
	DefaultTrackHitLimit   = 32 << 10
	DefaultTrackBatchLimit = 500 << 10
	RouteTrack             = "track"
	RouteTrackBatch        = "track_batch"
)

// Name implements Dialect.
func (t *Track) Name() string { return DialectTrack }

// Match implements Dialect: /track and everything below it.
func (t *Track) Match(hr *http.Request) (string, bool) {
	p := strings.TrimSuffix(hr.URL.Path, "/")
	switch {
	case p == "/track/batch":
		return RouteTrackBatch, true
	case p == "/track" || strings.HasPrefix(p, "/track/"):
		return RouteTrack, true
	}
	return "", false
}

// Accept implements Dialect: POST /track or /track/batch, with JSON.
func (t *Track) Accept(hr *http.Request, route string) (int64, error) {
	if err := acceptJSONPost(hr, "/track", "/track/batch"); err != nil {
		return 0, err
	}
	if route == RouteTrackBatch {
		if t.BatchLimit > 0 {
			return t.BatchLimit, nil
		}
		return DefaultTrackBatchLimit, nil
	}
	return int64(t.hitLimit()), nil
}

func (t *Track) hitLimit() int {
	if t.HitLimit > 0 {
		return t.HitLimit
	}
	return DefaultTrackHitLimit
}

// acceptJSONPost checks what the token-authenticated JSON dialects share:
// one of paths (a trailing slash allowed), POST, a JSON body.
func acceptJSONPost(hr *http.Request, paths ...string) error {
	if p := strings.TrimSuffix(hr.URL.Path, "/"); !slices.Contains(paths, p) {
		return Errorf(http.StatusNotFound, "no route for %s: POST %s", hr.URL.Path, strings.Join(paths, " or POST "))
	}
	if hr.Method != http.MethodPost {
		return &Error{Status: http.StatusMethodNotAllowed, Message: "method " + hr.Method + " is not allowed; use POST",
			Header: map[string]string{"Allow": "POST, OPTIONS"}}
	}
	if err := CheckContentType(hr); err != nil {
		return err
	}
	return nil
}

// Authenticate implements Dialect: the project of the request's token,
// the HTTP Basic user name (the password is empty, as the seed shows) or
// a Bearer token.
func (t *Track) Authenticate(r *Request) (*project.Project, error) {
	return authenticateToken(t.Projects, r.HTTP)
}

// Decode implements Dialect: one hit, or {"batch":[hit, …]} validated hit
// by hit.
func (t *Track) Decode(r *Request) (*Decoded, error) {
	if r.Route == RouteTrackBatch {
		items, err := t.DecodeBatch(r.Project, r)
		if err != nil {
			return nil, err
		}
		return &Decoded{Items: items, Batch: true}, nil
	}
	ev, err := t.DecodeHit(r.Project, r)
	if err != nil {
		return nil, err
	}
	return &Decoded{Items: []Item{{Event: ev}}}, nil
}

// Answer implements Dialect.
func (t *Track) Answer(w http.ResponseWriter, r *Request, d *Decoded, out []Outcome) {
	if d.Batch {
		answerBatch(w, d, out, "hit")
		return
	}
	answerEvent(w, d.Items[0].Event, out[0])
}

// Refuse implements Dialect.
func (t *Track) Refuse(err error) *Error { return refusal(err) }

// authenticateToken finds the project of a project token sent as the HTTP
// Basic user name or as a Bearer token.
func authenticateToken(projects TrackProjects, hr *http.Request) (*project.Project, error) {
	auth := hr.Header.Get("Authorization")
	if auth == "" {
		return nil, Unauthorized("an API token is required: Authorization: Basic base64(token + \":\")")
	}
	tok := HeaderToken(hr)
	if tok == "" {
		return nil, Unauthorized("malformed Authorization header: use Basic with the API token as user name, or Bearer")
	}
	pid, _, ok := projects.Authenticate(tok)
	if !ok {
		return nil, Unauthorized("invalid API token")
	}
	p, ok := projects.Get(pid)
	if !ok {
		return nil, Unauthorized("invalid API token")
	}
	return p, nil
}

// CheckContentType refuses anything but JSON.
func CheckContentType(hr *http.Request) *Error {
	mt, _, err := mime.ParseMediaType(hr.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return Errorf(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	return nil
}

// tree returns the project's validation tree: the seed's table plus its
// declared custom dimensions and metrics.
func (t *Track) tree(p *project.Project) *node {
	st := p.Settings.Track
	if len(st.CustomDimensions) == 0 && len(st.CustomMetrics) == 0 {
		return trackTree
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.trees[p.ID]; ok && sameTrackSettings(c.settings, st) {
		return c.tree
	}
	tree := trackTree.clone()
	// A custom field at a field of the table, inside one or around some
	// is left out: the table's own rule stands there, whatever the
	// settings say (Settings.Validate refuses those that disagree with
	// it, but settings saved before it did are still read).
	declare := func(list []project.CustomField, t trackfields.Type) {
		for _, c := range list {
			segs, err := project.ParseFieldPath(c.Where())
			if err != nil {
				continue
			}
			if _, table := trackfields.Find(segs); table || trackfields.Conflict(segs, t) != "" {
				continue
			}
			tree.add(segs, trackKinds[t])
		}
	}
	declare(st.CustomDimensions, trackfields.String)
	declare(st.CustomMetrics, trackfields.Number)
	if t.trees == nil {
		t.trees = map[uint32]cachedTree{}
	}
	t.trees[p.ID] = cachedTree{settings: st, tree: tree}
	return tree
}

func sameTrackSettings(a, b project.TrackSettings) bool {
	eq := func(x, y []project.CustomField) bool {
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	return eq(a.CustomDimensions, b.CustomDimensions) && eq(a.CustomMetrics, b.CustomMetrics)
}

// DecodeHit turns one hit (the body of POST /track) into an event.
func (t *Track) DecodeHit(p *project.Project, r *Request) (*event.Event, error) {
	e, errs, err := t.decodeHit(p, r, r.Body)
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, &Error{Status: http.StatusBadRequest, Message: "invalid hit", Errors: errs}
	}
	return e, nil
}

// decodeHit validates one hit. A document that is not a JSON object is an
// error; violations of the table are returned as field errors.
func (t *Track) decodeHit(p *project.Project, r *Request, raw []byte) (*event.Event, event.FieldErrors, error) {
	if limit := t.hitLimit(); len(raw) > limit {
		return nil, nil, Errorf(http.StatusRequestEntityTooLarge, "a hit is larger than the limit of %d bytes", limit)
	}
	data, err := compactJSON(raw)
	if err != nil {
		return nil, nil, FieldError(http.StatusBadRequest, "body", err.Error())
	}
	if len(data) == 0 || data[0] != '{' {
		return nil, nil, FieldError(http.StatusBadRequest, "body", "must be a JSON object (one hit)")
	}
	return t.decodeCompactHit(p, r, data)
}

// decodeCompactHit validates one hit, data a compact JSON object.
func (t *Track) decodeCompactHit(p *project.Project, r *Request, data []byte) (*event.Event, event.FieldErrors, error) {
	if te := event.CheckJSONText(data); te != nil {
		return nil, event.FieldErrors{textFieldError(te, "")}, nil
	}
	var doc object
	parseCompactObject(data, &doc)
	var errs event.FieldErrors
	t.tree(p).validate(&doc, nil, &errs)
	at := trackTime(&doc, r.ReceivedAt, &errs)
	if len(errs) > 0 {
		return nil, errs, nil
	}
	ev := buildTrackEvent(p, r, &doc, data)
	ev.Time = at
	return ev, nil, nil
}

// trackTimeFields are the times a hit may carry: sentAt, and the event's
// own (originalTimestamp, else timestamp).
var trackTimeFields = []string{"sentAt", "originalTimestamp", "timestamp"}

// trackTime is the time of a hit received at received: the event's own
// time corrected for the sender's clock skew as Segment does,
// timestamp = receivedAt − (sentAt − originalTimestamp), or receivedAt
// when the hit has no time of its own. Each time the hit carries, and the
// corrected one, must be within eventTimes: one that is not is a
// violation at the field that gave it (sentAt 9999 with originalTimestamp
// 0000 made a time of year −7973). Times the table refused are left to its
// violations.
func trackTime(doc *object, received time.Time, errs *event.FieldErrors) int64 {
	times := eventTimesAt(received)
	var at [3]int64 // of trackTimeFields; 0 when absent or refused
	ok := true
	for i, k := range trackTimeFields {
		v, present := doc.get(k)
		s, isStr := jsonString(v)
		if !present || !isStr {
			continue
		}
		ts, err := parseTimestamp(s)
		switch {
		case err != nil:
		case !times.contain(ts.UnixMilli()):
			errs.Add(k, eventTimeRange)
			ok = false
		default:
			at[i] = ts.UnixMilli()
		}
	}
	rcv := received.UnixMilli()
	if !ok || at[0] == 0 {
		return rcv
	}
	for i, k := range trackTimeFields[1:] {
		if own := at[i+1]; own != 0 {
			t := rcv - (at[0] - own)
			if !times.contain(t) {
				errs.Add(k, fmt.Sprintf("puts the event's time, receivedAt − (sentAt − %s), at %s: it %s",
					k, time.UnixMilli(t).UTC().Format(time.RFC3339), eventTimeRange))
				return rcv
			}
			return t
		}
	}
	return rcv
}

// buildTrackEvent makes the canonical event of a valid hit, at the time
// it was received (trackTime gives the event's own).
func buildTrackEvent(p *project.Project, r *Request, doc *object, data []byte) *event.Event {
	str := func(o *object, k string) string {
		v, _ := o.get(k)
		s, _ := jsonString(v)
		return s
	}
	sub := func(o *object, k string) *object {
		v, ok := o.get(k)
		sub := &object{}
		if ok && len(v) > 0 && v[0] == '{' {
			parseCompactObject(v, sub)
		}
		return sub
	}
	hit, _ := uuid.Parse(str(doc, "hitId"))
	received := r.ReceivedAt.UnixMilli()
	ev := &event.Event{
		Channel:    event.ChannelHTTP,
		Service:    DialectTrack,
		ProjectID:  p.ID,
		TD:         transport(r),
		Data:       data,
		Time:       received,
		Dialect:    DialectTrack,
		ReceivedAt: received,
		DedupKey:   "track:" + hit.String(),
	}
	evt := sub(doc, "event")
	name := str(evt, "name")
	ev.Name = name
	if name == TransactionEvent {
		ev.Key = TrackTransactionKey
	} else {
		ev.Key = trackCustomPrefix + KeySegment(name)
	}
	user := sub(evt, "user")
	addIdentity(ev, "user_id", str(user, "userId"))
	addIdentity(ev, "anonymous_id", str(user, "anonymousId"))
	addIdentity(ev, "email_hash", str(user, "emailHash"))
	addIdentity(ev, "ga_client_id", str(sub(sub(doc, "integrations"), "Google Analytics"), "clientId"))
	return ev
}

func addIdentity(ev *event.Event, typ, v string) {
	if v != "" {
		ev.Identities = append(ev.Identities, event.Identity{Type: typ, Value: v})
	}
}

// transport is the td of a request.
func transport(r *Request) event.TD {
	return event.TD{
		IP:   r.ClientIP,
		UA:   r.HTTP.Header.Get("User-Agent"),
		Ref:  r.HTTP.Header.Get("Referer"),
		Host: r.HTTP.Host,
	}
}

// KeySegment turns a free-form event name into one key segment: lower
// case, letters and digits kept (any script), every other run of
// characters becomes one '_'. "Viewed Product" → "viewed_product". An
// empty result is "unnamed".
func KeySegment(name string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(name) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
			under = false
			continue
		}
		if !under && b.Len() > 0 {
			b.WriteByte('_')
			under = true
		}
	}
	s := strings.TrimSuffix(b.String(), "_")
	if s == "" {
		return "unnamed"
	}
	if len(s) > 128 {
		s = s[:128]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// DecodeBatch reads {"batch":[hit, …]}. Every hit is validated on its own:
// invalid hits do not stop valid ones.
func (t *Track) DecodeBatch(p *project.Project, r *Request) ([]Item, error) {
	body, err := compactJSON(r.Body)
	if err != nil {
		return nil, FieldError(http.StatusBadRequest, "body", err.Error())
	}
	if len(body) == 0 || body[0] != '{' {
		return nil, FieldError(http.StatusBadRequest, "batch", "must be an array of hits")
	}
	var env object
	parseCompactObject(body, &env)
	raw, ok := env.get("batch")
	switch {
	case !ok || string(raw) == "null":
		return nil, FieldError(http.StatusBadRequest, "batch", "is required: a non-empty array of hits")
	case raw[0] != '[':
		return nil, FieldError(http.StatusBadRequest, "batch", "must be an array of hits")
	}
	hits := splitArray(raw)
	if len(hits) == 0 {
		return nil, FieldError(http.StatusBadRequest, "batch", "is required: a non-empty array of hits")
	}
	items := make([]Item, len(hits))
	limit := t.hitLimit()
	for i, hit := range hits {
		items[i].Raw = hit
		switch {
		case len(hit) > limit:
			items[i].Status = http.StatusRequestEntityTooLarge
			items[i].Errors = event.FieldErrors{{Message: fmt.Sprintf("a hit is larger than the limit of %d bytes", limit)}}
			continue
		case hit[0] != '{':
			items[i].Status = http.StatusBadRequest
			items[i].Errors = event.FieldErrors{{Message: "must be a JSON object (one hit)"}}
			continue
		}
		e, errs, _ := t.decodeCompactHit(p, r, hit)
		if len(errs) > 0 {
			items[i].Status, items[i].Errors = http.StatusBadRequest, errs
			continue
		}
		items[i].Event = e
	}
	return items, nil
}
