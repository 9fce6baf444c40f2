package hook

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
)

// A synthetic event stands in for a stored one in the pre-test of a hook
// that has matched nothing yet. It looks like an event its globs take: a
// key of one of the dialects' families (docs/events.md, "Keys") with that
// dialect, service, name and payload shape.

// syntheticKeys are tried, in order, for a glob whose own key (wildcards
// filled in) is of no family: one real key of each family.
var syntheticKeys = []string{
	"in.gen.test.event", "in.s2s.user", "in.s2s.action.test", "in.s2s.revenue.test",
	"in.track.transaction.completed", "in.track.custom.test", "in.commerce.purchase-v1", "in.commerce.custom.test",
}

var commerceType = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*-v[1-9][0-9]*$`)

// syntheticFor makes the synthetic event of a hook, at now.
func syntheticFor(h Hook, now time.Time) *event.Event {
	for _, g := range h.Events {
		if e := classify(fillGlob(g), now); e != nil {
			return e
		}
		for _, k := range syntheticKeys {
			if event.MatchGlob(g, k) {
				return classify(k, now)
			}
		}
	}
	// The hook's globs take no key of any family (no stored event can
	// match): a webhook event of its own.
	return classify("in.gen.test.event", now)
}

// fillGlob turns a glob into a key it matches: each run of '*' becomes
// "test", each '?' an "x".
func fillGlob(g string) string {
	var b strings.Builder
	for i := 0; i < len(g); i++ {
		switch g[i] {
		case '*':
			for i+1 < len(g) && g[i+1] == '*' {
				i++
			}
			b.WriteString("test")
		case '?':
			b.WriteByte('x')
		default:
			b.WriteByte(g[i])
		}
	}
	return b.String()
}

// classify builds the event of key as its dialect would, or nil when key
// is of no family.
func classify(key string, now time.Time) *event.Event {
	ms := now.UnixMilli()
	e := &event.Event{Key: key, Channel: event.ChannelHTTP, Time: ms, ReceivedAt: ms, ID: event.FirstIDAt(now), TD: event.TD{UA: "sluice-pretest"}}
	seg := strings.Split(key, ".")
	ok := func(s string) bool { return s != "" }
	msg := func(typ, name string, extra string) json.RawMessage {
		b := []byte(`{"type":"` + typ + `","id":"test-` + strconv.FormatInt(ms, 10) + `","time":` + strconv.FormatInt(ms, 10))
		if name != "" {
			b = append(append(b, `,"name":`...), event.AppendString(nil, name)...)
		}
		return append(append(b, extra...), '}')
	}
	hit := func(name string) json.RawMessage {
		b := []byte(`{"hitId":"` + uuid.NewString() + `","sentAt":"` + now.UTC().Format(time.RFC3339Nano) + `","event":{"name":`)
		return append(append(event.AppendString(b, name), `,"category":"test"}`...), '}')
	}
	switch {
	case len(seg) == 4 && seg[0] == "in" && seg[1] == "gen" && ok(seg[2]) && ok(seg[3]):
		e.Dialect, e.Service, e.Name, e.Data = "webhook", seg[2], seg[3], json.RawMessage(`{"test":true}`)
		if seg[2] == "redir" {
			e.Channel = event.ChannelRedir
		}
	case len(seg) >= 3 && seg[0] == "in" && seg[1] == "s2s":
		e.Dialect, e.Service = "s2s", "s2s"
		switch {
		case len(seg) == 3 && seg[2] == "user":
			e.Name, e.Data = "user", msg("user", "", "")
		case len(seg) == 4 && seg[2] == "action" && ok(seg[3]):
			e.Name, e.Data = seg[3], msg("action", seg[3], "")
		case len(seg) == 4 && seg[2] == "revenue" && ok(seg[3]):
			e.Name, e.Data = seg[3], msg("revenue", seg[3], `,"revenue":1,"currency":"USD"`)
		default:
			return nil
		}
	case len(seg) == 4 && seg[0] == "in" && seg[1] == "track":
		e.Dialect, e.Service = "track", "track"
		switch {
		case seg[2] == "transaction" && seg[3] == "completed":
			e.Name = "Completed Transaction"
		case seg[2] == "custom" && ok(seg[3]):
			e.Name = seg[3]
		default:
			return nil
		}
		e.Data = hit(e.Name)
	case len(seg) >= 3 && seg[0] == "in" && seg[1] == "commerce":
		e.Dialect, e.Service = "commerce", "commerce"
		switch {
		case len(seg) == 4 && seg[2] == "custom" && ok(seg[3]):
			e.Name = seg[3]
			e.Data = append(append(append([]byte(`{"name":`), event.AppendString(nil, seg[3])...), `,"properties":{}`...), '}')
		case len(seg) == 3 && commerceType.MatchString(seg[2]):
			e.Name = "Test"
			e.Data = json.RawMessage(`{"name":"Test","properties":{"eventType":"` + seg[2] + `"}}`)
		default:
			return nil
		}
	default:
		return nil
	}
	return e
}

// synthetic is the pre-test's stand-in event for h, as a record.
func (m *Manager) synthetic(h Hook) eventlog.Record {
	e := syntheticFor(h, m.cfg.Now())
	if h.ProjectID != nil {
		e.ProjectID = *h.ProjectID
	}
	return eventlog.Record{ID: e.ID, ProjectID: e.ProjectID, Key: e.Key, Time: e.Time, Body: e.AppendJSON(nil)}
}
