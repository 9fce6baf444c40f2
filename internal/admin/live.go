package admin

import (
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/live"
)

// Bounds of GET /api/v1/live.
const (
	maxBacklog = 1000
	// liveHeartbeat is how often an idle stream says it is alive (a
	// comment line), so proxies and browsers keep it open.
	liveHeartbeat = 15 * time.Second
)

// liveStream is GET /api/v1/live: Server-Sent Events of the events
// committed and the requests refused from now on (and, with backlog=, the
// newest kept ones first), filtered by project, key, identity and text.
// limit= ends the stream after that many items.
func (s *Server) liveStream(r *http.Request) (any, error) {
	if s.cfg.Live == nil {
		return nil, errorf(http.StatusNotFound, "the live stream is not served")
	}
	v := r.URL.Query()
	var errs event.FieldErrors
	var f live.Filter
	for _, p := range v["project"] {
		for _, ps := range strings.Split(p, ",") {
			if ps = strings.TrimSpace(ps); ps == "" {
				continue
			}
			n, err := strconv.ParseUint(ps, 10, 32)
			if err != nil {
				errs.Add("project", strconv.Quote(ps)+" is not a project id")
				continue
			}
			f.Projects = append(f.Projects, uint32(n))
		}
	}
	f.KeyGlob, f.Identity, f.IdentityType, f.Text = v.Get("key"), v.Get("identity"), v.Get("identity_type"), v.Get("text")
	if k := v.Get("kinds"); k != "" {
		f.NoEvents, f.NoRefusals = true, true
		for _, kind := range strings.Split(k, ",") {
			switch strings.TrimSpace(kind) {
			case "events":
				f.NoEvents = false
			case "refusals":
				f.NoRefusals = false
			default:
				errs.Add("kinds", strconv.Quote(kind)+" is neither events nor refusals")
			}
		}
	}
	backlog, limit := 0, 0
	for _, p := range []struct {
		name string
		dst  *int
		max  int
	}{{"backlog", &backlog, maxBacklog}, {"limit", &limit, 1 << 30}} {
		if s := v.Get(p.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 || n > p.max {
				errs.Add(p.name, "must be an integer from 0 to "+strconv.Itoa(p.max))
			}
			*p.dst = n
		}
	}
	errs = append(errs, f.Validate()...)
	if len(errs) > 0 {
		return nil, &apiError{Status: http.StatusBadRequest, Message: "invalid query", Errors: errs}
	}
	sub, err := s.cfg.Live.Subscribe(f, backlog)
	if err != nil {
		return nil, err
	}
	return streamer(func(w http.ResponseWriter) {
		defer sub.Close()
		s.stream(w, r, sub, limit)
	}), nil
}

// stream writes sub to w as Server-Sent Events until the client leaves,
// the server stops or limit items (0: no limit) went out.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, sub *live.Subscription, limit int) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// A browser's EventSource reconnects after retry ms when the stream
	// drops.
	if _, err := w.Write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	_ = rc.Flush()
	tick := time.NewTicker(liveHeartbeat)
	defer tick.Stop()
	sent := 0
	var buf []byte
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
				return
			}
			_ = rc.Flush()
			continue
		case <-sub.Ready():
		}
		items, missed := sub.Take()
		buf = buf[:0]
		if missed > 0 {
			buf = append(buf, "event: missed\ndata: {\"missed\":"...)
			buf = strconv.AppendInt(buf, int64(missed), 10)
			buf = append(buf, "}\n\n"...)
		}
		for _, it := range items {
			if limit > 0 && sent == limit {
				break
			}
			sent++
			buf = appendItem(buf, it)
		}
		if _, err := w.Write(buf); err != nil {
			return
		}
		_ = rc.Flush()
		if limit > 0 && sent >= limit {
			return
		}
	}
}

// appendItem writes one SSE message: event "event" with
// {"event":<canonical JSON>,"content":<kept raw request?>}, or event
// "refusal" with the refusal.
func appendItem(b []byte, it live.Item) []byte {
	if e := it.Event; e != nil {
		b = append(b, "event: event\nid: "...)
		b = strconv.AppendUint(b, uint64(e.ID), 10)
		b = append(b, "\ndata: {\"event\":"...)
		b = append(b, e.Body...)
		b = append(b, ",\"content\":"...)
		b = strconv.AppendBool(b, e.ContentID != 0)
		return append(b, "}\n\n"...)
	}
	j, err := json.Marshal(it.Refusal)
	if err != nil {
		return b
	}
	b = append(b, "event: refusal\ndata: "...)
	b = append(b, j...)
	return append(b, "\n\n"...)
}

// EventContent is the raw request kept with an event.
type EventContent struct {
	// Body is the request body (or, for a request without one, its
	// query string): text as is, else base64 (Encoding says which).
	Body       string `json:"body"`
	Encoding   string `json:"encoding"` // text or base64
	ReceivedAt int64  `json:"receivedAt"`
}

// getEvent is GET /api/v1/events/{eventID}: one stored event, and the raw
// request it came in when that is kept (for hooks with include_content).
func (s *Server) getEvent(r *http.Request) (any, error) {
	id, err := event.ParseID(r.PathValue("eventID"))
	if err != nil || id == 0 {
		return nil, &apiError{Status: http.StatusBadRequest, Message: "not an event id",
			Errors: event.FieldErrors{{Path: "eventID", Message: "not an event id"}}}
	}
	recs, err := s.events.Read(r.Context(), eventlog.Query{After: id - 1, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 || recs[0].ID != id {
		return nil, errorf(http.StatusNotFound, "event %s is not stored (never was, was erased, or retention deleted it)", id)
	}
	rec := recs[0]
	b := append([]byte(`{"event":`), rec.Body...)
	if rec.ContentID != 0 {
		cs, err := s.events.Contents(r.Context(), []int64{rec.ContentID})
		if err != nil {
			return nil, err
		}
		if c, ok := cs[rec.ContentID]; ok {
			ec := EventContent{Body: string(c.Body), Encoding: "text", ReceivedAt: c.ReceivedAt}
			if !utf8.Valid(c.Body) {
				ec.Body, ec.Encoding = base64.StdEncoding.EncodeToString(c.Body), "base64"
			}
			j, err := json.Marshal(ec)
			if err != nil {
				return nil, err
			}
			b = append(append(b, `,"content":`...), j...)
		}
	}
	return rawJSON(append(b, "}\n"...)), nil
}

// Bounds of GET /api/v1/events/export.
const (
	defaultExport = 10000
	maxExport     = 100000
	maxExportScan = 4 * maxScan
)

// exportEvents is GET /api/v1/events/export: the events the same query as
// GET /api/v1/events selects, oldest first, as JSON Lines (one canonical
// event per line), up to limit (default 10000, at most 100000).
func (s *Server) exportEvents(r *http.Request) (any, error) {
	v := r.URL.Query()
	limit := defaultExport
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxExport {
			return nil, &apiError{Status: http.StatusBadRequest, Message: "invalid query",
				Errors: event.FieldErrors{{Path: "limit", Message: "must be an integer from 1 to " + strconv.Itoa(maxExport)}}}
		}
		limit = n
		v = maps.Clone(v)
		v.Del("limit")
	}
	if v.Get("wait") != "" || v.Get("newest") != "" {
		return nil, &apiError{Status: http.StatusBadRequest, Message: "invalid query",
			Errors: event.FieldErrors{{Path: "query", Message: "an export takes neither wait nor newest"}}}
	}
	q, err := parseEventQuery(v, 0)
	if err != nil {
		return nil, err
	}
	q.Limit = min(limit, eventlog.MaxLimit)
	// The first page is read before the answer starts, so that a failure
	// is an error status rather than a cut stream.
	recs, next, err := s.readEvents(r.Context(), q)
	if err != nil {
		return nil, err
	}
	return streamer(func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Content-Disposition", `attachment; filename="sluice-events.jsonl"`)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		sent := 0
		var buf []byte
		for round := 1; ; round++ {
			buf = buf[:0]
			for _, rec := range recs {
				buf = append(append(buf, rec.Body...), '\n')
			}
			if _, err := w.Write(buf); err != nil {
				return
			}
			sent += len(recs)
			// An identity search looks at most maxExportScan records.
			if sent >= limit || next == q.After || (q.identity != "" && round*maxScan >= maxExportScan) {
				return
			}
			q.After, q.Limit = next, min(limit-sent, eventlog.MaxLimit)
			if recs, next, err = s.readEvents(r.Context(), q); err != nil {
				s.logger.Error("export events", "err", err)
				return
			}
			if len(recs) == 0 && next == q.After {
				return
			}
		}
	}), nil
}
