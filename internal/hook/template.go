package hook

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/event"
)

// A custom_data value is a fixed string or a template: text with
// {{parameter}}s. The parameters are the seed's and ours:
//
//	{{uuid}}                 a new UUIDv4 per message
//	{{event_date}}           2006-01-02T15:04:05.999999Z (UTC)
//	{{event_date_ymd}}       2006-01-02
//	{{event_date_rfc3339}}   RFC 3339, UTC
//	{{event_date_unix}}      Unix seconds, as a string
//	{{event_date_unixnano}}  Unix nanoseconds, as a string
//	{{project_id}} {{project_name}}
//	{{event.id}} {{event.key}} {{event.service}} {{event.name}} {{event.channel}} {{event.uid}}
//	{{event.data.<path>}}    a field of the payload, dots between names
//	{{profile.<field>}}      an attribute of the user's profile ({{profile.id}}: its id)
//	{{database_name}}        the seed's database is our project: its name
//	{{campaign_name}} {{campaign_subid}} {{segment_name}} {{message_name}}
//	{{message_subject}} {{resource_name}}
//	                         the seed's, from the first of their payload
//	                         fields (seedFields) that the event carries
//
// A missing value renders empty. An unknown parameter is refused when the
// hook is saved.

type customField struct {
	key     string
	jsonKey []byte // key as a JSON string
	parts   []part
}

type part struct {
	text  string // literal text, when param is ""
	param string
	path  []string // event.data.<path> or profile.<field>
	// get is the gjson path of an event parameter in the stored event
	// (its names escaped), e.g. "data.order\\.id".
	get string
	// first are the gjson paths of a seed parameter's fields (seedFields).
	first []string
}

// eventFields maps the event parameters to the canonical event's members.
var eventFields = map[string]string{
	"project_id": "projectId", "event.id": "id", "event.key": "key", "event.service": "service",
	"event.name": "name", "event.channel": "channel", "event.uid": "uid",
}

// seedFields are where the seed's e-mail platform parameters come from: a
// sender's payload fields of that meaning, tried in order; the first that
// is a non-empty string or a number is the value. A campaign is also an
// object with a name, or a bare string.
var seedFields = map[string][]string{
	"campaign_name":   {"campaign_name", "utm_campaign", "campaign.name", "campaign"},
	"campaign_subid":  {"campaign_subid", "subid", "sub_id", "campaign.subid"},
	"segment_name":    {"segment_name", "segment.name", "segment"},
	"message_name":    {"message_name", "template_name", "message.name"},
	"message_subject": {"message_subject", "subject", "message.subject"},
	"resource_name":   {"resource_name", "resource.name", "resource"},
}

var simpleParams = map[string]bool{
	"uuid": true, "event_date": true, "event_date_ymd": true, "event_date_rfc3339": true,
	"event_date_unix": true, "event_date_unixnano": true, "project_id": true, "project_name": true, "database_name": true,
	"event.id": true, "event.key": true, "event.service": true, "event.name": true, "event.channel": true, "event.uid": true,
	"campaign_name": true, "campaign_subid": true, "segment_name": true, "message_name": true, "message_subject": true, "resource_name": true,
}

// Parameters lists the parameters a template may use, for errors and docs.
const Parameters = "uuid, event_date, event_date_ymd, event_date_rfc3339, event_date_unix, event_date_unixnano, project_id, project_name, " +
	"database_name, campaign_name, campaign_subid, segment_name, message_name, message_subject, resource_name, " +
	"event.id, event.key, event.service, event.name, event.channel, event.uid, event.data.<path>, profile.<field>"

func parseTemplate(key, s string) (customField, error) {
	f := customField{key: key, jsonKey: event.AppendString(nil, key)}
	if key == "" {
		return f, fmt.Errorf("a key is required")
	}
	for s != "" {
		i := strings.Index(s, "{{")
		if i < 0 {
			f.parts = append(f.parts, part{text: s})
			break
		}
		if i > 0 {
			f.parts = append(f.parts, part{text: s[:i]})
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return f, fmt.Errorf("%q: {{ without }}", s)
		}
		name := strings.TrimSpace(s[i+2 : i+j])
		p := part{param: name}
		switch {
		case simpleParams[name]:
		case strings.HasPrefix(name, "event.data.") && len(name) > len("event.data."):
			p.param, p.path = "event.data", strings.Split(strings.TrimPrefix(name, "event.data."), ".")
		case strings.HasPrefix(name, "profile.") && len(name) > len("profile."):
			p.param, p.path = "profile", []string{strings.TrimPrefix(name, "profile.")}
		default:
			return f, fmt.Errorf("unknown parameter {{%s}}; the parameters are %s", name, Parameters)
		}
		for _, seg := range p.path {
			if seg == "" {
				return f, fmt.Errorf("{{%s}}: an empty name in the path", name)
			}
		}
		if m, ok := eventFields[name]; ok {
			p.get = m
		}
		for _, f := range seedFields[name] {
			p.first = append(p.first, "data."+f)
		}
		if p.param == "event.data" {
			segs := []string{"data"}
			for _, seg := range p.path {
				segs = append(segs, gjson.Escape(seg))
			}
			p.get = strings.Join(segs, ".")
		}
		f.parts = append(f.parts, p)
		s = s[i+j+2:]
	}
	return f, nil
}

func sortFields(fs []customField) {
	sort.Slice(fs, func(i, j int) bool { return fs[i].key < fs[j].key })
}

// usesProfile reports whether any field needs the profile.
func usesProfile(fs []customField) bool {
	for _, f := range fs {
		for _, p := range f.parts {
			if p.param == "profile" {
				return true
			}
		}
	}
	return false
}

// renderContext is what one message's templates read.
type renderContext struct {
	body        []byte // the canonical event as stored
	time        time.Time
	projectName string
	profile     *userProfile // nil: none
}

// EventDateLayout is {{event_date}}'s format (the seed writes it with a
// sample date, 2006-01-25T15:04:05.999999Z).
const EventDateLayout = "2006-01-02T15:04:05.999999Z"

// appendParam appends the value of p.
func (c *renderContext) appendParam(dst []byte, p part) []byte {
	if p.get != "" {
		return appendResult(dst, gjson.GetBytes(c.body, p.get))
	}
	for _, path := range p.first {
		if r := gjson.GetBytes(c.body, path); r.Type == gjson.Number || r.Type == gjson.String && r.Str != "" {
			return appendResult(dst, r)
		}
	}
	switch p.param {
	case "uuid":
		return append(dst, uuid.NewString()...)
	case "event_date":
		return c.time.UTC().AppendFormat(dst, EventDateLayout)
	case "event_date_ymd":
		return c.time.UTC().AppendFormat(dst, "2006-01-02")
	case "event_date_rfc3339":
		return c.time.UTC().AppendFormat(dst, time.RFC3339)
	case "event_date_unix":
		return strconv.AppendInt(dst, c.time.Unix(), 10)
	case "event_date_unixnano":
		return strconv.AppendInt(dst, c.time.UnixNano(), 10)
	case "project_name", "database_name":
		return append(dst, c.projectName...)
	case "profile":
		return c.profile.appendAttr(dst, p.path[0])
	}
	return dst
}

// appendResult renders a stored value as text: strings as they are,
// numbers and booleans as written, objects and arrays as their JSON,
// null and missing values as nothing.
func appendResult(dst []byte, r gjson.Result) []byte {
	switch r.Type {
	case gjson.Null:
		return dst
	case gjson.String:
		return append(dst, r.Str...)
	}
	return append(dst, r.Raw...)
}

// appendField appends the text of one template.
func appendField(dst []byte, f customField, c *renderContext) []byte {
	for _, p := range f.parts {
		if p.param == "" {
			dst = append(dst, p.text...)
		} else {
			dst = c.appendParam(dst, p)
		}
	}
	return dst
}

// render appends the custom_data object; scratch is reused between calls.
func render(dst []byte, fs []customField, c *renderContext, scratch *[]byte) []byte {
	dst = append(dst, '{')
	for i, f := range fs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, f.jsonKey...)
		dst = append(dst, ':')
		v := appendField((*scratch)[:0], f, c)
		*scratch = v
		dst = event.AppendString(dst, string(v))
	}
	return append(dst, '}')
}
