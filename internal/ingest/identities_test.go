package ingest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/identity"
)

// A project's identity_fields turn a call tracker's caller phone, a CRM's
// e-mail and id into identities, hashed as the other dialects hash them;
// with hash_pii the raw values never reach disk.
func TestIdentityFields(t *testing.T) {
	dir := t.TempDir()
	srv, l := goldenServerIn(t, s2sClock, dir)
	phone := identity.Hash("79990000000")
	email := identity.Hash("ann@example.com")
	js := map[string]string{"Content-Type": "application/json"}
	for _, c := range []struct {
		target, body string
		status       int
		ids          []event.Identity
		caller       string // the stored data's caller ("" when absent)
	}{
		{"/calltrack/call/13?caller=%2B7%20(999)%20000-00-00&crm_id=17", "", 200,
			[]event.Identity{{Type: "phone_hash", Value: phone}, {Type: "cuid:crm", Value: "17"}}, `"+7 (999) 000-00-00"`},
		{"/crm/lead/13", `{"client":{"email":" Ann@Example.com "},"caller":"8 999 000 00 00"}`, 200,
			[]event.Identity{{Type: "phone_hash", Value: phone}, {Type: "email_hash", Value: email}}, `"8 999 000 00 00"`},
		{"/calltrack/call/13?caller=anonymous", "", 200, nil, `"anonymous"`}, // unreadable: kept as sent, no identity
		{"/calltrack/call/14?caller=%2B79990000000", "", 200, []event.Identity{{Type: "phone_hash", Value: phone}}, `"` + phone + `"`},
		{"/crm/lead/14", `{"client":{"email":"ann@example.com"}}`, 200, []event.Identity{{Type: "email_hash", Value: email}}, ""},
		{"/calltrack/call/14?caller=anonymous", "", 400, nil, ""}, // hash_pii: a value that cannot be hashed is refused
		{"/crm/lead/13", `{"crm_id":{"x":1}}`, 400, nil, ""},
	} {
		h := js
		if c.body == "" {
			h = nil
		}
		a := send(t, srv, map[bool]string{true: "GET", false: "POST"}[c.body == ""], c.target, c.body, h)
		if a.Status != c.status {
			t.Fatalf("%s %s: %d %s", c.target, c.body, a.Status, a.Raw)
		}
		if c.status != 200 {
			if errPath(a) == "" {
				t.Fatalf("%s: no path: %s", c.target, a.Raw)
			}
			continue
		}
		recs, _ := l.Read(context.Background(), eventlog.Query{Newest: true, Limit: 1})
		e, err := event.Decode(recs[0].Body)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(e.Identities, c.ids) {
			t.Fatalf("%s: identities %+v, want %+v", c.target, e.Identities, c.ids)
		}
		var data map[string]any
		if c.caller != "" {
			if got := string(bytesField(e.Data, "caller")); got != c.caller {
				t.Fatalf("%s: caller %s, want %s", c.target, got, c.caller)
			}
		}
		_ = data
	}
	l.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "events.db*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte("+79990000000")) || bytes.Contains(b, []byte("ann@example.com")) {
			t.Fatalf("%s holds a raw phone or e-mail of the hash_pii project", f)
		}
	}
}

// bytesField returns the raw JSON of a top-level member of a compact object.
func bytesField(obj []byte, name string) []byte {
	key := []byte(`"` + name + `":`)
	i := bytes.Index(obj, key)
	if i < 0 {
		return nil
	}
	rest := obj[i+len(key):]
	end := 0
	if rest[0] == '"' {
		end = bytes.IndexByte(rest[1:], '"') + 2
	} else {
		end = bytes.IndexAny(rest, ",}")
	}
	return rest[:end]
}
