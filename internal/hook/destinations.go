package hook

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/project"
	"github.com/sluicehq/sluice/internal/sink"
)

// DefaultType is the type of a hook that names none.
const DefaultType = "http"

// Destinations are the delivery types hooks may have, as app registers
// them (app.Destinations): the host knows none of them by itself.
type Destinations struct {
	list   []sink.Destination
	byType map[string]*sink.Destination
}

// NewDestinations checks ds (a type, a section and settings each; no type
// twice) and returns them as a registry.
func NewDestinations(ds []sink.Destination) (*Destinations, error) {
	d := &Destinations{list: ds, byType: map[string]*sink.Destination{}}
	for i := range d.list {
		x := &d.list[i]
		switch {
		case x.Type == "" || x.Section == "" || x.New == nil:
			return nil, fmt.Errorf("destination %d (%q): a type, a section and New are required", i, x.Type)
		case d.byType[x.Type] != nil:
			return nil, fmt.Errorf("destination type %s registered twice", x.Type)
		}
		if s := x.New(); reflect.TypeOf(s).Kind() != reflect.Pointer {
			return nil, fmt.Errorf("destination %s: New returns %T, not a pointer", x.Type, s)
		}
		d.byType[x.Type] = x
	}
	return d, nil
}

// Types are the registered type names, in registration order.
func (d *Destinations) Types() []string {
	out := make([]string, len(d.list))
	for i, x := range d.list {
		out[i] = x.Type
	}
	return out
}

// Resolve gives h the settings of its type: the section read from JSON or
// YAML decoded into the destination's settings (every unknown key, other
// type's section and badly typed value named), or settings set in Go
// copied into fresh ones. The error is an *Error naming the fields.
func (d *Destinations) Resolve(h *Hook) error {
	p := newProblems()
	d.resolve(h, p)
	return p.err()
}

// Check validates h as Create would, without a store: its type and
// settings, then every field (the project is not checked).
func (d *Destinations) Check(h Hook) error {
	p := newProblems()
	d.resolve(&h, p)
	h.Defaults()
	_, err := h.compile(p)
	return err
}

func (d *Destinations) resolve(h *Hook, p *problems) bool {
	if h.Type == "" {
		h.Type = DefaultType
	}
	dest := d.byType[h.Type]
	if dest == nil {
		p.add("type", "%s", d.typeList())
		for _, s := range h.sections {
			if !d.isSection(s.key) {
				p.add(s.key, "unknown field: no delivery type has settings %q", s.key)
			}
		}
		return false
	}
	var own *section
	for i := range h.sections {
		s := &h.sections[i]
		switch {
		case s.key == dest.Section:
			own = s
		case d.isSection(s.key):
			p.add(s.key, "only for %s: type %s sets %s", d.typesOf(s.key), h.Type, dest.Section)
		default:
			p.add(s.key, "unknown field: no delivery type has settings %q", s.key)
		}
	}
	settings := dest.New()
	switch {
	case own != nil:
		if !own.decode(settings, p.In(dest.Section)) {
			return false
		}
	case h.Settings != nil:
		if reflect.TypeOf(h.Settings) != reflect.TypeOf(settings) {
			p.add(dest.Section, "settings of another delivery type (%T) for type %s", h.Settings, h.Type)
			return false
		}
		if err := copySettings(settings, h.Settings); err != nil {
			p.add(dest.Section, "%v", err)
			return false
		}
	default:
		p.add(dest.Section, "required for type %s (%s)", h.Type, strings.Join(fieldNames(settings), ", "))
		return false
	}
	h.Settings, h.dest, h.sections = settings, dest, nil
	return true
}

func (d *Destinations) isSection(key string) bool {
	for _, x := range d.list {
		if x.Section == key {
			return true
		}
	}
	return false
}

// typesOf names the types whose settings are under key.
func (d *Destinations) typesOf(key string) string {
	var ts []string
	for _, x := range d.list {
		if x.Section == key {
			ts = append(ts, x.Type)
		}
	}
	if len(ts) == 1 {
		return "type " + ts[0]
	}
	return "types " + orList(ts, "and")
}

func (d *Destinations) typeList() string {
	if len(d.list) == 0 {
		return "no delivery type is registered"
	}
	return orList(d.Types(), "or")
}

// orList writes a, b, c or d.
func orList(ss []string, word string) string {
	if len(ss) < 2 {
		return strings.Join(ss, "")
	}
	return strings.Join(ss[:len(ss)-1], ", ") + " " + word + " " + ss[len(ss)-1]
}

// copySettings makes dst a deep copy of src (settings of one type).
func copySettings(dst, src sink.Settings) error {
	b, err := json.Marshal(src)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, dst)
}

// cloneSettings is a deep copy of h's settings (resolved).
func (h *Hook) cloneSettings() sink.Settings {
	c := h.dest.New()
	if err := copySettings(c, h.Settings); err != nil {
		panic(fmt.Sprintf("hook %s: settings of type %s do not survive JSON: %v", h.ID, h.Type, err))
	}
	return c
}

// withoutSecrets is h with its write-only settings emptied (a copy, never
// the shared settings).
func (h Hook) withoutSecrets() Hook {
	if h.Settings == nil || h.dest == nil {
		return h
	}
	h.Settings = h.cloneSettings()
	for _, s := range h.Settings.Secrets() {
		*s.Value = ""
	}
	return h
}

// withSecrets is h with the stored secrets put back (a copy).
func (h Hook) withSecrets(s secrets) Hook {
	h = h.withoutSecrets()
	if h.Settings != nil {
		for _, sec := range h.Settings.Secrets() {
			*sec.Value = s.Values[sec.Name]
		}
	}
	return h
}

// givenSecrets are the write-only values sent with h (those not empty).
func (h Hook) givenSecrets() map[string]string {
	out := map[string]string{}
	if h.Settings == nil {
		return out
	}
	for _, s := range h.Settings.Secrets() {
		if *s.Value != "" {
			out[s.Name] = *s.Value
		}
	}
	return out
}

// newSink builds the sink of r, whose hook with its secrets is h.
func (m *Manager) newSink(r *row, h Hook) (sink.Sink, error) {
	if h.Settings == nil {
		return nil, fmt.Errorf("hook %s: type %s is not resolved", h.ID, h.Type)
	}
	sec := r.secrets.Signing
	if len(sec) > 1 && r.secrets.PreviousUntil > 0 && m.cfg.Now().UnixMilli() > r.secrets.PreviousUntil {
		sec = sec[:1]
	}
	return h.Settings.NewSink(sink.Env{HookID: h.ID, Guard: m.guard, Signing: sec, InFlight: h.MaxInFlight, Now: m.cfg.Now, Logger: m.logger.With("hook", h.ID)})
}

// compileRow resolves (when it is not yet) and compiles the hook of r
// with its secrets, and returns that hook too (the definition in r.hook
// has its write-only fields emptied once stored).
func (m *Manager) compileRow(r *row) (*compiled, Hook, error) {
	h := r.hook
	if h.dest == nil {
		if err := m.dests.Resolve(&h); err != nil {
			return nil, Hook{}, err
		}
		h.Defaults()
	}
	h = h.withSecrets(r.secrets)
	c, err := h.compile(newProblems())
	return c, h, err
}

// metaFor describes each message as the hook's settings need (nil when
// they need none): its event id, key and project, its route (routing key
// or record key), the user's profile, the project's custom fields.
func (m *Manager) metaFor(ctx context.Context, comp *compiled, msgs [][]byte) []sink.Meta {
	n := comp.needs
	if !n.Meta {
		return nil
	}
	out := make([]sink.Meta, len(msgs))
	var scratch []byte
	for i, msg := range msgs {
		f := gjson.GetManyBytes(msg, "id", "key", "projectId", "time")
		md := sink.Meta{EventID: f[0].String(), Key: f[1].String(), ProjectID: uint32(f[2].Uint())}
		var prof *userProfile
		looked := false
		profileOf := func() *userProfile {
			if !looked {
				prof, looked = m.profileOf(ctx, md.ProjectID, msg), true
			}
			return prof
		}
		switch {
		case comp.route != nil:
			rc := renderContext{body: msg, time: time.UnixMilli(f[3].Int())}
			if p, ok := m.projects.Get(md.ProjectID); ok {
				rc.projectName = p.Name
			}
			if usesProfile([]customField{*comp.route}) {
				rc.profile = profileOf()
			}
			scratch = appendField(scratch[:0], *comp.route, &rc)
			md.Route = string(scratch)
		case n.RouteByProfile: // the user's resolved id, else the event id
			md.Route = md.EventID
			if p := profileOf(); p != nil {
				md.Route = p.id
			}
		}
		if n.Profile {
			md.Profile = profileOf().sinkProfile()
		}
		if n.Custom {
			md.Custom = m.customOf(md.ProjectID, msg)
		}
		out[i] = md
	}
	return out
}

// sinkProfile is p as sinks see it (nil for nil).
func (p *userProfile) sinkProfile() *sink.Profile {
	if p == nil {
		return nil
	}
	return &sink.Profile{ID: p.id, Identities: p.identities, Attributes: p.attrs}
}

// customOf finds the project's custom dimensions and metrics in the
// message's data, at their declared paths (the notation of the track
// settings, through the arrays on the way): those the event carries.
func (m *Manager) customOf(projectID uint32, msg []byte) []sink.Custom {
	p, ok := m.projects.Get(projectID)
	if !ok {
		return nil
	}
	st := p.Settings.Track
	if len(st.CustomDimensions) == 0 && len(st.CustomMetrics) == 0 {
		return nil
	}
	data := gjson.GetBytes(msg, "data")
	var out []sink.Custom
	for _, kind := range []struct {
		fields []project.CustomField
		metric bool
	}{{st.CustomDimensions, false}, {st.CustomMetrics, true}} {
		for _, c := range kind.fields {
			segs, err := project.ParseFieldPath(c.Where())
			if err != nil {
				continue
			}
			if v, ok := valueAt(data, segs); ok {
				out = append(out, sink.Custom{Name: c.Name, Metric: kind.metric, Value: v})
			}
		}
	}
	return out
}

// valueAt is the JSON value at segs under r: one value, or an array of the
// values found when the path goes through an array.
func valueAt(r gjson.Result, segs []string) (json.RawMessage, bool) {
	vals, many := collect(r, segs)
	switch {
	case len(vals) == 0:
		return nil, false
	case !many:
		return json.RawMessage(vals[0].Raw), true
	}
	b := []byte{'['}
	for i, v := range vals {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, v.Raw...)
	}
	return append(b, ']'), true
}

func collect(r gjson.Result, segs []string) (vals []gjson.Result, many bool) {
	if len(segs) == 0 {
		if !r.Exists() || r.Type == gjson.Null {
			return nil, false
		}
		return []gjson.Result{r}, false
	}
	if r.IsArray() {
		for _, e := range r.Array() {
			v, _ := collect(e, segs)
			vals = append(vals, v...)
		}
		return vals, true
	}
	if !r.IsObject() {
		return nil, false
	}
	var next gjson.Result
	r.ForEach(func(k, v gjson.Result) bool {
		if k.String() == segs[0] {
			next = v
			return false
		}
		return true
	})
	return collect(next, segs[1:])
}

// timeout is how long one delivery attempt may take, with a margin over
// the target's own timeout.
func (h *Hook) timeout() time.Duration {
	d := DefaultTimeout
	if h.Settings != nil {
		if t := h.Settings.AttemptTimeout(); t > 0 {
			d = t
		}
	}
	return d + 2*time.Second
}
