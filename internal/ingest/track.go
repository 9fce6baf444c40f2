package ingest

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/internal/dialect"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/project"
)

// acceptJSONPost checks what the token-authenticated JSON dialects share:
// one of paths (a trailing slash allowed), POST, the project's token, a
// JSON body. It answers the refusal itself and reports whether to go on.
func (s *Server) acceptJSONPost(w http.ResponseWriter, r *http.Request, auth func(*http.Request) (*project.Project, error), paths ...string) (*project.Project, bool) {
	p := strings.TrimSuffix(r.URL.Path, "/")
	if !slices.Contains(paths, p) {
		s.fail(w, dialect.Errorf(http.StatusNotFound, "no route for %s: POST %s", r.URL.Path, strings.Join(paths, " or POST ")))
		return nil, false
	}
	if r.Method != http.MethodPost {
		s.fail(w, &dialect.Error{Status: http.StatusMethodNotAllowed, Message: "method " + r.Method + " is not allowed; use POST",
			Header: map[string]string{"Allow": "POST, OPTIONS"}})
		return nil, false
	}
	proj, err := auth(r)
	if err != nil {
		s.fail(w, err)
		return nil, false
	}
	if err := dialect.CheckContentType(r); err != nil {
		s.fail(w, err)
		return nil, false
	}
	return proj, true
}

// serveTrack is POST /track (one hit) and POST /track/batch.
func (s *Server) serveTrack(w http.ResponseWriter, r *http.Request, batch bool) {
	proj, ok := s.acceptJSONPost(w, r, s.track.Authenticate, "/track", "/track/batch")
	if !ok {
		return
	}
	limit := s.cfg.TrackHitLimit
	if batch {
		limit = s.cfg.TrackBatchLimit
	}
	buf, err := s.readBody(w, r, limit)
	if err != nil {
		s.fail(w, err)
		return
	}
	defer putBuffer(buf)
	clientIP, secure := s.client(r)
	req := &dialect.Request{HTTP: r, Body: buf.Bytes(), ClientIP: clientIP, Secure: secure, ReceivedAt: s.cfg.Now()}
	if batch {
		s.serveTrackBatch(w, r, proj, req)
		return
	}
	ev, err := s.track.DecodeHit(proj, req)
	if err != nil {
		s.fail(w, err)
		return
	}
	result, err := s.commitOne(req, ev)
	if err != nil {
		s.fail(w, err)
		return
	}
	s.m.events(dialect.DialectTrack, []eventlog.Result{result})
	writeAccepted(w, ev, result)
}

// writeAccepted answers one appended event: {"id":…,"key":…}, or
// {"id":…,"duplicate":true} with the stored event's id.
func writeAccepted(w http.ResponseWriter, ev *event.Event, res eventlog.Result) {
	b := make([]byte, 0, 64+len(ev.Key))
	if res.Duplicate {
		b = append(b, `{"id":`...)
		b = res.ID.AppendJSON(b)
		b = append(b, `,"duplicate":true}`...)
	} else {
		b = append(b, `{"id":`...)
		b = res.ID.AppendJSON(b)
		b = append(b, `,"key":`...)
		b = event.AppendString(b, ev.Key)
		b = append(b, '}')
	}
	writeRaw(w, http.StatusOK, append(b, '\n'))
}

// batchResult is the answer for one item of a batch.
type batchResult struct {
	Status string            `json:"status"` // accepted, duplicate or invalid
	ID     *event.ID         `json:"id,omitempty"`
	Key    string            `json:"key,omitempty"`
	Errors event.FieldErrors `json:"errors,omitempty"`
}

type batchAnswer struct {
	Message    string        `json:"message,omitempty"`
	Accepted   int           `json:"accepted"`
	Duplicates int           `json:"duplicates"`
	Invalid    int           `json:"invalid"`
	Results    []batchResult `json:"results"`
}

func (s *Server) serveTrackBatch(w http.ResponseWriter, r *http.Request, proj *project.Project, req *dialect.Request) {
	items, err := s.track.DecodeBatch(proj, req)
	if err != nil {
		s.fail(w, err)
		return
	}
	s.appendBatch(w, req, dialect.DialectTrack, "hit", items)
}

// firstEvent is the first valid item's event (nil when none).
func firstEvent(items []dialect.BatchItem) *event.Event {
	for _, it := range items {
		if it.Event != nil {
			return it.Event
		}
	}
	return nil
}

// appendBatch appends the valid items of a batch in one commit and
// answers per item, in order: 200 when at least one was accepted or was a
// duplicate, 400 when none was valid.
func (s *Server) appendBatch(w http.ResponseWriter, req *dialect.Request, dialectName, noun string, items []dialect.BatchItem) {
	var evs []*event.Event
	var raws [][]byte
	var pos []int
	var elems [][]byte
	if first := firstEvent(items); first != nil && s.keepContent([]*event.Event{first}) {
		elems = batchElements(req.Body, "batch")
	}
	for i, it := range items {
		if it.Event != nil {
			evs = append(evs, it.Event)
			pos = append(pos, i)
			if len(elems) == len(items) {
				raws = append(raws, elems[i])
			}
		}
	}
	if len(raws) != len(evs) {
		raws = nil
	}
	ans := batchAnswer{Results: make([]batchResult, len(items))}
	conflicted := 0
	if len(evs) > 0 {
		results, conflicts, err := s.commit(req, evs, raws, pos)
		if err != nil {
			s.fail(w, err)
			return
		}
		s.m.events(dialectName, results)
		for j, i := range pos {
			res := results[j]
			id := res.ID
			switch {
			case conflicts != nil && conflicts[j]:
				ans.Results[i] = batchResult{Status: "invalid", Errors: idempotencyConflict(req.HTTP).Errors}
				ans.Invalid++
				conflicted++
			case res.Duplicate:
				ans.Results[i] = batchResult{Status: "duplicate", ID: &id}
				ans.Duplicates++
			default:
				ans.Results[i] = batchResult{Status: "accepted", ID: &id, Key: items[i].Event.Key}
				ans.Accepted++
			}
		}
	}
	for i, it := range items {
		if it.Event == nil {
			ans.Results[i] = batchResult{Status: "invalid", Errors: it.Errors}
			ans.Invalid++
		}
	}
	status := http.StatusOK
	switch {
	case ans.Accepted+ans.Duplicates == 0 && conflicted > 0 && conflicted == len(evs):
		status = http.StatusUnprocessableEntity
		ans.Message = IdempotencyHeader + " was first used for a request with other content: nothing from this request was stored"
	case ans.Accepted+ans.Duplicates == 0:
		status = http.StatusBadRequest
		ans.Message = "no valid " + noun + " in the batch: " + strconv.Itoa(ans.Invalid) + " invalid"
	}
	writeJSON(w, status, ans)
}

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
