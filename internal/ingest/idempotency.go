package ingest

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/dialect"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

// The Idempotency-Key request header (IETF httpapi draft
// "The Idempotency-Key HTTP Header Field"): a sender that retries a
// request after a lost answer sends the same key, and the repeat is
// answered like any duplicate, with the original ids. Every event of the
// request that has no dedup key of its own (a webhook, a commerce event
// without messageId) is deduplicated under "idem:<key>:<position>", so the
// log's unique index, not a cache, keeps the promise, across restarts and
// concurrent repeats alike. A key reused for a request that carries
// something else is a 422, and nothing of that request is stored under it.

const (
	// IdempotencyHeader is the request header.
	IdempotencyHeader = dialect.IdempotencyHeader
	idempotencyPrefix = "idem:"
	// maxIdempotencyKey bounds the key (the draft leaves it to the server).
	maxIdempotencyKey = 255
)

// idempotencyKey returns the request's key ("" when it has none). The
// draft makes it a structured-field string ("…"); a bare token, as most
// senders write it, is taken too.
func idempotencyKey(hr *http.Request) (string, error) {
	vals := hr.Header.Values(IdempotencyHeader)
	if len(vals) == 0 {
		return "", nil
	}
	bad := func(msg string) error {
		return &dialect.Error{Status: http.StatusBadRequest, Message: IdempotencyHeader + ": " + msg,
			Errors: event.FieldErrors{{Path: IdempotencyHeader, Message: msg}}}
	}
	if len(vals) > 1 {
		return "", bad("send one key")
	}
	k := strings.TrimSpace(vals[0])
	if len(k) >= 2 && k[0] == '"' && k[len(k)-1] == '"' {
		k = k[1 : len(k)-1]
		if strings.ContainsAny(k, `"\`) {
			return "", bad(`must be a string of printable ASCII without '"' or '\'`)
		}
	}
	if k == "" || len(k) > maxIdempotencyKey {
		return "", bad("must be 1 to 255 characters")
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return "", bad("must be printable ASCII (a UUID is a good key)")
		}
	}
	return k, nil
}

// idempotencyConflicts compares each event deduplicated by the key with
// the original it repeats: the same key and data, or a conflict.
func (s *Server) idempotencyConflicts(req *dialect.Request, evs []*event.Event, results []eventlog.Result, idem []bool) []bool {
	var conflicts []bool
	for i, res := range results {
		if !idem[i] || !res.Duplicate {
			continue
		}
		if !s.sameAsOriginal(req, evs[i], res.ID) {
			if conflicts == nil {
				conflicts = make([]bool, len(evs))
			}
			conflicts[i] = true
		}
	}
	return conflicts
}

// sameAsOriginal reports whether ev says what the stored event id says:
// the same key and data. When the original cannot be read, the repeat is
// taken as one (it is not stored either way).
func (s *Server) sameAsOriginal(req *dialect.Request, ev *event.Event, id event.ID) bool {
	recs, err := s.log.Read(req.HTTP.Context(), eventlog.Query{Projects: []uint32{ev.ProjectID}, After: id - 1, Limit: 1})
	if err != nil || len(recs) == 0 || recs[0].ID != id {
		return true
	}
	data := gjson.GetBytes(recs[0].Body, "data").Raw
	return recs[0].Key == ev.Key && bytes.Equal([]byte(data), ev.Data)
}
