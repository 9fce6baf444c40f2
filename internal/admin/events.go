package admin

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/live"
)

// listEvents is GET /api/v1/events?project=&key=&identity=&since=&until=&after=&limit=&wait=.
// It answers {"events":[…],"next":"<id>","head":"<id>"}: next is the cursor
// to pass as after= to continue. With wait=, an empty answer waits up to
// that long for a matching event (long poll), told of new events by the
// live hub rather than reading the log at every commit.
func (s *Server) listEvents(r *http.Request) (any, error) {
	q, err := parseEventQuery(r.URL.Query(), s.cfg.MaxWait)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	var sub *live.Subscription
	if q.wait > 0 && s.cfg.Live != nil {
		// Subscribe before reading: what the read does not see, the
		// subscription does.
		sub, err = s.cfg.Live.Subscribe(q.liveFilter(), 0)
		if err != nil {
			return nil, err
		}
		defer sub.Close()
	}
	recs, next, err := s.readEvents(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(recs) > 0 || sub == nil {
		return renderEvents(recs, next, s.events.Head()), nil
	}
	t := time.NewTimer(q.wait)
	defer t.Stop()
	for {
		select {
		case <-sub.Ready():
		case <-t.C:
			return renderEvents(nil, next, s.events.Head()), nil
		case <-ctx.Done():
			// The client left, or the server is stopping: answer what
			// there is, which is nothing yet.
			return renderEvents(nil, next, s.events.Head()), nil
		}
		items, missed := sub.Take()
		if missed > 0 {
			// The queue overflowed: the log has what the hub could not
			// hand over.
			if recs, next, err = s.readEvents(ctx, q); err != nil {
				return nil, err
			}
		} else {
			recs = q.fromLive(items)
		}
		if len(recs) > 0 {
			return renderEvents(recs, recs[len(recs)-1].ID, s.events.Head()), nil
		}
	}
}

// eventQuery is a query of the events endpoints.
type eventQuery struct {
	eventlog.Query
	// identity (and identityType) select events that carry it; the log
	// is read in pages and at most maxScan records are looked at.
	identity, identityType string
	wait                   time.Duration
}

// maxScan bounds the records one request looks at for an identity.
const maxScan = 50000

// readEvents answers q and the cursor after the answer: the last event
// given, or, when an identity search ran out of records to look at, the
// last one looked at (after=next goes on from there).
func (s *Server) readEvents(ctx context.Context, q eventQuery) ([]eventlog.Record, event.ID, error) {
	if q.identity == "" {
		recs, err := s.events.Read(ctx, q.Query)
		if err != nil {
			return nil, 0, err
		}
		next := q.After
		if len(recs) > 0 {
			next = recs[len(recs)-1].ID
		}
		return recs, next, nil
	}
	f := q.liveFilter()
	match := func(r eventlog.Record) bool {
		e := live.Event{Record: r}
		for _, id := range gjson.GetBytes(r.Body, "identities").Array() {
			e.Identities = append(e.Identities, event.Identity{Type: id.Get("type").String(), Value: id.Get("value").String()})
		}
		return f.MatchEvent(&e)
	}
	if q.Newest {
		// The newest matches among the newest MaxLimit records that meet
		// the other conditions.
		pq := q.Query
		pq.Limit = eventlog.MaxLimit
		recs, err := s.events.Read(ctx, pq)
		if err != nil {
			return nil, 0, err
		}
		var out []eventlog.Record
		for i := len(recs) - 1; i >= 0 && len(out) < q.Limit; i-- {
			if match(recs[i]) {
				out = append(out, recs[i])
			}
		}
		slices.Reverse(out)
		next := q.After
		if len(out) > 0 {
			next = out[len(out)-1].ID
		}
		return out, next, nil
	}
	pq := q.Query
	pq.Limit = 1000
	next := q.After
	var out []eventlog.Record
	for scanned := 0; scanned < maxScan; {
		recs, err := s.events.Read(ctx, pq)
		if err != nil {
			return nil, 0, err
		}
		for _, r := range recs {
			scanned++
			next = r.ID
			if match(r) {
				out = append(out, r)
				if len(out) == q.Limit {
					return out, next, nil
				}
			}
		}
		if len(recs) < pq.Limit {
			break
		}
		pq.After = next
	}
	return out, next, nil
}

// liveFilter is the part of q the hub filters on.
func (q *eventQuery) liveFilter() live.Filter {
	return live.Filter{Projects: q.Projects, KeyGlob: q.KeyGlob, Identity: q.identity, IdentityType: q.identityType, NoRefusals: true}
}

// fromLive keeps the events the hub handed over that q selects (the hub
// knows nothing of times and cursors), up to its limit.
func (q *eventQuery) fromLive(items []live.Item) []eventlog.Record {
	var out []eventlog.Record
	for _, it := range items {
		e := it.Event
		if e == nil || e.ID <= q.After || (q.Since != 0 && e.Time < q.Since) || (q.Until != 0 && e.Time >= q.Until) {
			continue
		}
		out = append(out, e.Record)
	}
	if len(out) > q.Limit {
		if q.Newest {
			out = out[len(out)-q.Limit:]
		} else {
			out = out[:q.Limit]
		}
	}
	return out
}

// renderEvents writes the stored JSON of each event as is.
func renderEvents(recs []eventlog.Record, next, head event.ID) rawJSON {
	size := 64
	for _, r := range recs {
		size += len(r.Body) + 1
	}
	b := make([]byte, 0, size)
	b = append(b, `{"events":[`...)
	for i, r := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r.Body...)
	}
	b = append(b, `],"next":`...)
	b = next.AppendJSON(b)
	b = append(b, `,"head":`...)
	b = head.AppendJSON(b)
	b = append(b, "}\n"...)
	return b
}

func parseEventQuery(v url.Values, maxWait time.Duration) (eventQuery, error) {
	var q eventQuery
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
	if s := v.Get("wait"); s != "" {
		q.wait, err = time.ParseDuration(s)
		if err != nil || q.wait < 0 {
			errs.Add("wait", "must be a duration such as 30s")
		}
		q.wait = min(q.wait, maxWait)
	}
	q.identity, q.identityType = v.Get("identity"), v.Get("identity_type")
	if len(q.identity) > live.MaxTextFilter {
		errs.Add("identity", "longer than "+strconv.Itoa(live.MaxTextFilter)+" bytes")
	}
	if q.identityType != "" && q.identity == "" {
		errs.Add("identity_type", "needs identity (the value) too")
	}
	if len(errs) == 0 {
		if err := q.Normalize(); err != nil {
			errs.Add("query", err.Error())
		}
	}
	if len(errs) > 0 {
		return q, &apiError{Status: http.StatusBadRequest, Message: "invalid query", Errors: errs}
	}
	return q, nil
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
