package admin

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

// listEvents is GET /api/v1/events?project=&key=&since=&until=&after=&limit=&wait=.
// It answers {"events":[…],"next":"<id>","head":"<id>"}: next is the cursor
// to pass as after= to continue. With wait=, an empty answer waits up to
// that long for a matching event (long poll).
func (s *Server) listEvents(r *http.Request) (any, error) {
	q, wait, err := parseEventQuery(r.URL.Query(), s.cfg.MaxWait)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	var deadline <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		deadline = t.C
	}
	for {
		changed := s.events.Changed()
		recs, err := s.events.Read(ctx, q)
		if err != nil {
			return nil, err
		}
		if len(recs) > 0 || wait == 0 {
			return renderEvents(recs, q.After, s.events.Head()), nil
		}
		select {
		case <-changed:
		case <-deadline:
			return renderEvents(nil, q.After, s.events.Head()), nil
		case <-ctx.Done():
			// The client left, or the server is stopping: answer what
			// there is, which is nothing yet.
			return renderEvents(nil, q.After, s.events.Head()), nil
		}
	}
}

// renderEvents writes the stored JSON of each event as is.
func renderEvents(recs []eventlog.Record, after, head event.ID) rawJSON {
	size := 64
	for _, r := range recs {
		size += len(r.Body) + 1
	}
	b := make([]byte, 0, size)
	b = append(b, `{"events":[`...)
	next := after
	for i, r := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r.Body...)
		next = r.ID
	}
	b = append(b, `],"next":`...)
	b = next.AppendJSON(b)
	b = append(b, `,"head":`...)
	b = head.AppendJSON(b)
	b = append(b, "}\n"...)
	return b
}

func parseEventQuery(v url.Values, maxWait time.Duration) (eventlog.Query, time.Duration, error) {
	var q eventlog.Query
	var errs event.FieldErrors
	for _, p := range v["project"] {
		for _, s := range strings.Split(p, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
			if err != nil {
				errs.Add("project", strconv.Quote(s)+" is not a project id")
				continue
			}
			q.Projects = append(q.Projects, uint32(n))
		}
	}
	q.KeyGlob = v.Get("key")
	if q.KeyGlob != "" {
		if err := event.ValidateGlob(q.KeyGlob); err != nil {
			errs.Add("key", err.Error())
		}
	}
	var err error
	if q.Since, err = parseTime(v.Get("since")); err != nil {
		errs.Add("since", err.Error())
	}
	if q.Until, err = parseTime(v.Get("until")); err != nil {
		errs.Add("until", err.Error())
	}
	if s := v.Get("after"); s != "" {
		if q.After, err = event.ParseID(s); err != nil {
			errs.Add("after", err.Error())
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > eventlog.MaxLimit {
			errs.Add("limit", "must be an integer from 1 to "+strconv.Itoa(eventlog.MaxLimit))
		}
		q.Limit = n
	}
	if s := v.Get("newest"); s != "" {
		if q.Newest, err = strconv.ParseBool(s); err != nil {
			errs.Add("newest", "must be true or false")
		}
	}
	var wait time.Duration
	if s := v.Get("wait"); s != "" {
		wait, err = time.ParseDuration(s)
		if err != nil || wait < 0 {
			errs.Add("wait", "must be a duration such as 30s")
		}
		wait = min(wait, maxWait)
	}
	if len(errs) == 0 {
		if err := q.Normalize(); err != nil {
			errs.Add("query", err.Error())
		}
	}
	if len(errs) > 0 {
		return q, 0, &apiError{Status: http.StatusBadRequest, Message: "invalid query", Errors: errs}
	}
	return q, wait, nil
}

// parseTime reads Unix milliseconds or an RFC 3339 time ("" is zero).
func parseTime(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, errorf(http.StatusBadRequest, "must be Unix milliseconds or an RFC 3339 time")
	}
	return t.UnixMilli(), nil
}
