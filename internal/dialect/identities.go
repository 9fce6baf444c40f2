package dialect

import (
	"errors"
	"net/http"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/identity"
	"github.com/sluicehq/sluice/internal/project"
)

// Identities runs after every dialect's decoding: the project's
// identity_fields turn fields of an event's data into identities
// (normalised and hashed as the dialects do: a phone or an e-mail address
// becomes its SHA-256; with hash_pii the raw value in data is replaced by
// that hash), and every event's identities are put in their canonical
// order, without repeats. An item whose mapped field cannot be read
// where the raw value must not be kept is refused.
func Identities(p *project.Project, d *Decoded) error {
	fields := p.Settings.IdentityFields
	for i := range d.Items {
		it := &d.Items[i]
		if it.Event == nil {
			continue
		}
		if len(fields) > 0 {
			if errs := mapIdentities(p, it.Event); len(errs) > 0 {
				if !d.Batch {
					return &Error{Status: http.StatusBadRequest, Message: errs.Error(), Errors: errs}
				}
				it.Event, it.Status, it.Errors = nil, http.StatusBadRequest, errs
				continue
			}
		}
		if len(it.Event.Identities) > 1 {
			it.Event.Identities = identity.Canonical(it.Event.Identities)
		}
	}
	return nil
}

// mapIdentities applies the project's identity_fields to one event.
func mapIdentities(p *project.Project, ev *event.Event) event.FieldErrors {
	var errs event.FieldErrors
	for _, f := range p.Settings.IdentityFieldList() {
		segs, err := project.ParseFieldPath(f.Path)
		if err != nil {
			continue // validated when the setting was saved
		}
		raw, ok := lookupCompact(ev.Data, segs)
		if !ok || string(raw) == "null" {
			continue
		}
		var value string
		switch {
		case raw[0] == '"':
			value, _ = jsonString(raw)
		case raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'):
			value = string(raw)
		default:
			errs.Add(f.Path, "is mapped to the identity "+f.Type+" (identity_fields): it must be a string or a number")
			continue
		}
		typ, v, replace, err := identity.FromField(f.Type, value, p.Settings.DefaultRegion)
		switch {
		case errors.Is(err, identity.ErrPhone) || errors.Is(err, identity.ErrEmail):
			if p.Settings.HashPII {
				errs.Add(f.Path, "is mapped to the identity "+f.Type+" but cannot be read as one, so it cannot be hashed (hash_pii is on): "+err.Error())
			}
			continue
		case err != nil:
			errs.Add(f.Path, "is mapped to the identity "+f.Type+": "+err.Error())
			continue
		case v == "":
			continue
		}
		ev.Identities = append(ev.Identities, event.Identity{Type: typ, Value: v})
		if replace && p.Settings.HashPII {
			ev.Data = setCompact(ev.Data, segs, event.AppendString(nil, v))
		}
	}
	return errs
}

// setCompact returns b, a compact JSON object, with the value at segs
// replaced by val (compact JSON).
func setCompact(b []byte, segs []string, val []byte) []byte {
	var o object
	parseCompactObject(b, &o)
	cur, ok := o.get(segs[0])
	if !ok {
		return b
	}
	if len(segs) == 1 {
		o.set(segs[0], val)
	} else {
		if len(cur) == 0 || cur[0] != '{' {
			return b
		}
		o.set(segs[0], setCompact(cur, segs[1:], val))
	}
	return o.json()
}
