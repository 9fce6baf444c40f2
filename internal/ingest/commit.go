package ingest

import (
	"bytes"
	"net/url"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/internal/dialect"
	"github.com/sluicehq/sluice/internal/event"
)

// commit appends the events of one decoded request, in one durable
// commit, and returns each item's outcome. An item's Raw, when set, is
// kept as its content (a batch element, not the whole batch, which could
// make every message of a hook batch carry a megabyte); otherwise a
// project that keeps contents keeps the request: its body or, without
// one, its query string without the credential. Headers, where the other
// credentials travel (Authorization, X-API-Key), are never kept.
//
// With an Idempotency-Key, each event without a dedup key of its own is
// deduplicated by its position in the request; an outcome's Conflict says
// the key was first used for a request whose item there differs.
func (s *Server) commit(req *dialect.Request, dec *dialect.Decoded) ([]dialect.Outcome, error) {
	idemKey, err := idempotencyKey(req.HTTP)
	if err != nil {
		return nil, err
	}
	out := make([]dialect.Outcome, len(dec.Items))
	evs, pos := dec.Events()
	if len(evs) == 0 {
		return out, nil
	}
	if s.keepContent(req.Project) {
		at := req.ReceivedAt.UnixMilli()
		var whole *event.Content
		for _, i := range pos {
			it := dec.Items[i]
			if it.Raw != nil {
				it.Event.Content = &event.Content{Body: bytes.Clone(it.Raw), ReceivedAt: at}
				continue
			}
			if whole == nil {
				var raw []byte
				if len(req.Body) > 0 {
					// A copy: the body's buffer goes back to a pool.
					raw = bytes.Clone(req.Body)
				} else {
					raw = []byte(withoutCredentials(req.HTTP.URL.RawQuery))
				}
				whole = &event.Content{Body: raw, ReceivedAt: at}
			}
			it.Event.Content = whole
		}
	}
	var idem []bool // evs[j] is deduplicated by the Idempotency-Key
	if idemKey != "" {
		idem = make([]bool, len(evs))
		for j, ev := range evs {
			if ev.DedupKey != "" {
				continue // its own dedup key (hitId, messageId, …) is stronger
			}
			ev.DedupKey = idempotencyPrefix + idemKey + ":" + strconv.Itoa(pos[j])
			idem[j] = true
		}
	}
	results, err := s.log.Append(req.HTTP.Context(), evs)
	if err != nil {
		return nil, err
	}
	var conflicts []bool
	if idem != nil {
		conflicts = s.idempotencyConflicts(req, evs, results, idem)
	}
	for j, i := range pos {
		out[i] = dialect.Outcome{ID: results[j].ID, Duplicate: results[j].Duplicate, Conflict: conflicts != nil && conflicts[j]}
	}
	return out, nil
}

// withoutCredentials returns a raw query string without its ?token=
// pairs, byte for byte otherwise.
func withoutCredentials(rawQuery string) string {
	if !strings.Contains(rawQuery, "token") && !strings.Contains(rawQuery, "%") {
		return rawQuery
	}
	parts := strings.Split(rawQuery, "&")
	kept := parts[:0]
	for _, part := range parts {
		k, _, _ := strings.Cut(part, "=")
		if key, err := url.QueryUnescape(k); err == nil && key == dialect.TokenParam {
			continue
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, "&")
}
