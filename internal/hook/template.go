package hook

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
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
//
// A missing value renders empty. An unknown parameter is refused when the
// hook is saved.

type customField struct {
	key   string
	parts []part
}

type part struct {
	text  string // literal text, when param is ""
	param string
	path  []string // event.data.<path> or profile.<field>
}

var simpleParams = map[string]bool{
	"uuid": true, "event_date": true, "event_date_ymd": true, "event_date_rfc3339": true,
	"event_date_unix": true, "event_date_unixnano": true, "project_id": true, "project_name": true,
	"event.id": true, "event.key": true, "event.service": true, "event.name": true, "event.channel": true, "event.uid": true,
}

// Parameters lists the parameters a template may use, for errors and docs.
const Parameters = "uuid, event_date, event_date_ymd, event_date_rfc3339, event_date_unix, event_date_unixnano, project_id, project_name, " +
	"event.id, event.key, event.service, event.name, event.channel, event.uid, event.data.<path>, profile.<field>"

func parseTemplate(key, s string) (customField, error) {
	f := customField{key: key}
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
	event       map[string]any // the canonical event, decoded
	time        time.Time      // the event's time
	projectName string
	profile     map[string]any // attribute → value; "id" → the profile id
}

// EventDateLayout is {{event_date}}'s format (the seed writes it with a
// sample date, 2006-01-25T15:04:05.999999Z).
const EventDateLayout = "2006-01-02T15:04:05.999999Z"

func (c *renderContext) param(p part) string {
	switch p.param {
	case "uuid":
		return uuid.NewString()
	case "event_date":
		return c.time.UTC().Format(EventDateLayout)
	case "event_date_ymd":
		return c.time.UTC().Format("2006-01-02")
	case "event_date_rfc3339":
		return c.time.UTC().Format(time.RFC3339)
	case "event_date_unix":
		return strconv.FormatInt(c.time.Unix(), 10)
	case "event_date_unixnano":
		return strconv.FormatInt(c.time.UnixNano(), 10)
	case "project_id":
		return scalar(c.event["projectId"])
	case "project_name":
		return c.projectName
	case "event.id", "event.key", "event.service", "event.name", "event.channel", "event.uid":
		return scalar(c.event[strings.TrimPrefix(p.param, "event.")])
	case "event.data":
		var v any = c.event["data"]
		for _, seg := range p.path {
			m, ok := v.(map[string]any)
			if !ok {
				return ""
			}
			v = m[seg]
		}
		return scalar(v)
	case "profile":
		return scalar(c.profile[p.path[0]])
	}
	return ""
}

// scalar renders a value as a string: strings as they are, numbers and
// booleans as JSON writes them, objects and arrays as JSON, nil as "".
func scalar(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// render appends the custom_data object.
func render(dst []byte, fs []customField, c *renderContext) []byte {
	dst = append(dst, '{')
	for i, f := range fs {
		if i > 0 {
			dst = append(dst, ',')
		}
		k, _ := json.Marshal(f.key)
		dst = append(dst, k...)
		dst = append(dst, ':')
		var b strings.Builder
		for _, p := range f.parts {
			if p.param == "" {
				b.WriteString(p.text)
			} else {
				b.WriteString(c.param(p))
			}
		}
		v, _ := json.Marshal(b.String())
		dst = append(dst, v...)
	}
	return append(dst, '}')
}
