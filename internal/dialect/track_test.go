package dialect

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/project"
)

func trackRequest(t testing.TB, body []byte, auth string) *Request {
	hr := httptest.NewRequest(http.MethodPost, "/track", strings.NewReader(string(body)))
	hr.Header.Set("Content-Type", "application/json")
	if auth != "" {
		hr.Header.Set("Authorization", auth)
	}
	return &Request{HTTP: hr, Body: body, ClientIP: "127.0.0.1", ReceivedAt: time.Now()}
}

func TestTrackSeedExampleAccepted(t *testing.T) {
	projects := fixtureProjects(t)
	body, err := os.ReadFile("testdata/track_seed_example.json")
	if err != nil {
		t.Fatal(err)
	}
	tr := &Track{Projects: projects, HitLimit: 32 << 10}
	r := trackRequest(t, body, "Basic YWJjMTIzOg==")
	p, err := tr.Authenticate(r)
	if err != nil || p.ID != 7 {
		t.Fatalf("authenticate: %v %v", p, err)
	}
	e, err := tr.DecodeHit(p, r)
	if err != nil {
		t.Fatal(err)
	}
	if e.Key != TrackTransactionKey || e.Name != TransactionEvent || e.DedupKey != "track:4c59d330-35c7-11e9-8f27-8d1d7d4690e7" {
		t.Fatalf("event %+v", e)
	}
	var back, orig map[string]any
	json.Unmarshal(e.Data, &back)
	json.Unmarshal(body, &orig)
	if !jsonEqual(back, orig) {
		t.Fatal("data is not the hit as sent")
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestKeySegment(t *testing.T) {
	cases := map[string]string{
		"Viewed Product":        "viewed_product",
		"  Added -- to  Cart! ": "added_to_cart",
		"Покупка Товара":        "покупка_товара",
		"":                      "unnamed",
		"!!!":                   "unnamed",
		"a.b":                   "a_b",
		"Order#42":              "order_42",
	}
	for in, want := range cases {
		if got := KeySegment(in); got != want {
			t.Errorf("KeySegment(%q) = %q, want %q", in, got, want)
		}
	}
	long := strings.Repeat("я", 100)
	if got := KeySegment(long); len(got) > 128 || !strings.HasPrefix(long, got) {
		t.Errorf("long name cut badly: %q", got)
	}
}

func TestIsInteger(t *testing.T) {
	for s, want := range map[string]bool{"1": true, "-3": true, "1.0": true, "1e2": true, "1.5": false, "1e-1": false, "1e400": false, "9223372036854775808": false, "0.0000": true} {
		if got := isInteger(json.Number(s)); got != want {
			t.Errorf("isInteger(%s) = %v, want %v", s, got, want)
		}
	}
}

// FuzzTrackDecode: any body gives one valid event or a precise error, and
// never a panic.
func FuzzTrackDecode(f *testing.F) {
	seed, _ := os.ReadFile("testdata/track_seed_example.json")
	f.Add(seed)
	f.Add([]byte(`{"hitId":"4c59d330-35c7-11e9-8f27-8d1d7d4690e7","sentAt":"2019-02-21T10:56:10Z","event":{"value":-1,"transaction":{"lineItems":[{"quantity":1.5},2]}}}`))
	f.Add([]byte(`{"hitId":"4c59d330-35c7-11e9-8f27-8d1d7d4690e7","sentAt":"2019-02-21T10:56:10Z","originalTimestamp":"2019-02-21T10:56:00+03:00","integrations":{"Google Analytics":{"clientId":"x"}}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"batch":[]}`))
	f.Add([]byte(`{"batch":[{"hitId":5,"sentAt":5,"event":{"name":5,"value":"5","source":5,"margin":"x"}},{"hitId":"4c59d330-35c7-11e9-8f27-8d1d7d4690e7","sentAt":"2019-02-21T10:56:10Z","event":"x"}]}`))
	f.Add([]byte(`{"hitId":5,"sentAt":5,"event":{"name":5,"value":{"x":"5"}}}`))
	f.Add([]byte(`{"hitId":"4c59d330-35c7-11e9-8f27-8d1d7d4690e7","sentAt":"9999-02-21T10:56:10Z","originalTimestamp":"0000-02-21T10:56:10Z"}`))
	f.Add([]byte(`{"hitId":"4c59d330-35c7-11e9-8f27-8d1d7d4690e7","sentAt":"2000-01-01T00:00:00Z","timestamp":"2019-02-21T10:56:10Z"}`))
	projects := fixtureProjects(f)
	tr := &Track{Projects: projects, HitLimit: 32 << 10}
	p7, _ := projects.Get(7)
	// Every body is decoded for project 7 and for project 7 with custom
	// fields on the table's own (settings that used to panic the decoder).
	stale := staleProject(f, projects)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, p := range []*project.Project{p7, stale} {
			fuzzTrackBody(t, tr, p, body)
		}
	})
}

// checkRefusal asserts what every decoder's refusal is: a dialect Error
// with a 4xx status and a message, a 400 naming the fields at fault, each
// with a message (and a path, when withPath).
func checkRefusal(t *testing.T, err error, withPath bool) {
	t.Helper()
	var de *Error
	if !errors.As(err, &de) || de.Status < 400 || de.Status > 499 || de.Message == "" {
		t.Fatalf("error %#v", err)
	}
	if de.Status == 400 && len(de.Errors) == 0 {
		t.Fatalf("400 without field errors: %+v", de)
	}
	for _, fe := range de.Errors {
		if fe.Message == "" || (withPath && fe.Path == "") {
			t.Fatalf("field error without path or message: %+v", de.Errors)
		}
	}
}

// fuzzTrackBody is one input of FuzzTrackDecode, for project p.
func fuzzTrackBody(t *testing.T, tr *Track, p *project.Project, body []byte) {
	if items, err := tr.DecodeBatch(p, trackRequest(t, body, "")); err == nil {
		for _, it := range items {
			if (it.Event == nil) == (len(it.Errors) == 0) {
				t.Fatalf("batch item %+v", it)
			}
			if it.Event != nil && it.Event.Validate() != nil {
				t.Fatalf("batch event %+v", it.Event)
			}
		}
	} else if de := (*Error)(nil); !errors.As(err, &de) || de.Status != 400 {
		t.Fatalf("batch error %#v", err)
	}
	r := trackRequest(t, body, "")
	e, err := tr.DecodeHit(p, r)
	if err != nil {
		checkRefusal(t, err, true)
		return
	}
	if err := e.Validate(); err != nil {
		t.Fatalf("invalid event: %v", err)
	}
	if !strings.HasPrefix(e.Key, "in.track.") || !strings.HasPrefix(e.DedupKey, "track:") {
		t.Fatalf("event %+v", e)
	}
	if !json.Valid(e.AppendJSON(nil)) {
		t.Fatal("event encodes to invalid JSON")
	}
}

// BenchmarkTrackDecodeHit validates and converts the seed's example hit
// (~1.9 KB, two line items).
func BenchmarkTrackDecodeHit(b *testing.B) {
	projects := fixtureProjects(b)
	body, _ := os.ReadFile("testdata/track_seed_example.json")
	tr := &Track{Projects: projects, HitLimit: 32 << 10}
	p, _ := projects.Get(7)
	r := trackRequest(b, body, "")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.DecodeHit(p, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBaselineTrackUnmarshal decodes the same hit with encoding/json
// into a map: the same-run yardstick.
func BenchmarkBaselineTrackUnmarshal(b *testing.B) {
	body, _ := os.ReadFile("testdata/track_seed_example.json")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// Seed 000's sentAt is ISO 8601: its basic format is read like RFC 3339.
func TestParseTimestamp(t *testing.T) {
	want := time.Date(2019, 2, 21, 10, 56, 10, 0, time.UTC)
	for _, c := range []struct {
		in  string
		at  time.Time
		bad bool
	}{
		{in: "2019-02-21T10:56:10Z", at: want},
		{in: "2019-02-21T10:56:10.723Z", at: want.Add(723 * time.Millisecond)},
		{in: "2019-02-21T13:56:10+03:00", at: want},
		{in: "20190221T105610Z", at: want},
		{in: "20190221T105610.723Z", at: want.Add(723 * time.Millisecond)},
		{in: "20190221T105610,5Z", at: want.Add(500 * time.Millisecond)},
		{in: "20190221T142610+0330", at: want},
		{in: "20190221T135610+03", at: want},
		{in: "2019-02-21T13:56:10+0300", at: want},
		{in: "2019-02-21T13:56:10.723+03", at: want.Add(723 * time.Millisecond)},
		{in: "20190221T105610", bad: true},     // no zone
		{in: "2019-0221T10:56:10Z", bad: true}, // mixed
		{in: "20190221T10:56:10Z", bad: true},  // mixed
		{in: "20190221T1056Z", bad: true},      // no seconds
		{in: "20191321T105610Z", bad: true},    // month 13
		{in: "2019-02-21 10:56:10Z", bad: true},
		{in: "1550746570", bad: true},
	} {
		got, err := parseTimestamp(c.in)
		switch {
		case c.bad && err == nil:
			t.Errorf("%s: read as %s, want an error", c.in, got)
		case !c.bad && (err != nil || !got.Equal(c.at)):
			t.Errorf("%s: got %s, %v; want %s", c.in, got, err, c.at)
		}
	}
}

// Custom dimensions and metrics stay off the fields the track table reads
// and types: at one whose values are not all of the custom field's type,
// inside one that is not an object, or around some. One whose values all
// are (a dimension at event.source) may name it for destinations.
func TestTrackCustomFieldsOffTheTable(t *testing.T) {
	const reads = ": the track dialect reads and types it itself, so "
	for _, c := range []struct {
		track string
		want  string // the error, "" for none
	}{
		{`{"custom_dimensions":[{"name":"v","path":"event.value"}]}`,
			`track.custom_dimensions[0].path: event.value is a field of the track table (a number)` + reads + `custom dimension "v" (a string) cannot be declared there`},
		{`{"custom_dimensions":[{"name":"value"}]}`,
			`track.custom_dimensions[0].name: event.value (the default path, event.<name>) is a field of the track table (a number)` + reads + `custom dimension "value" (a string) cannot be declared there`},
		{`{"custom_metrics":[{"name":"h","path":"hitId"}]}`,
			`track.custom_metrics[0].path: hitId is a field of the track table (a string)` + reads + `custom metric "h" (a number) cannot be declared there`},
		{`{"custom_metrics":[{"name":"s","path":"sentAt"}]}`,
			`track.custom_metrics[0].path: sentAt is a field of the track table (an ISO 8601 timestamp)` + reads + `custom metric "s" (a number) cannot be declared there`},
		{`{"custom_metrics":[{"name":"n","path":"event.name"}]}`,
			`track.custom_metrics[0].path: event.name is a field of the track table (a string)` + reads + `custom metric "n" (a number) cannot be declared there`},
		{`{"custom_dimensions":[{"name":"d","path":"event.transaction.voucherDiscount"}]}`,
			`track.custom_dimensions[0].path: event.transaction.voucherDiscount is a field of the track table (a string or a number)` + reads + `custom dimension "d" (a string) cannot be declared there`},
		{`{"custom_dimensions":[{"name":"x","path":"event.value.x"}]}`,
			`track.custom_dimensions[0].path: event.value.x is inside event.value, a field of the track table (a number)` + reads + `custom dimension "x" (a string) cannot be declared there`},
		{`{"custom_metrics":[{"name":"c","path":"integrations[\"Google Analytics\"].clientId.n"}]}`,
			`track.custom_metrics[0].path: integrations["Google Analytics"].clientId.n is inside integrations["Google Analytics"].clientId, a field of the track table (a string)` + reads + `custom metric "c" (a number) cannot be declared there`},
		{`{"custom_dimensions":[{"name":"e","path":"event"}]}`,
			`track.custom_dimensions[0].path: event is a field of the track table (an object)` + reads + `custom dimension "e" (a string) cannot be declared there`},
		{`{"custom_metrics":[{"name":"l","path":"event[\"transaction\"].lineItems"}]}`,
			`track.custom_metrics[0].path: event.transaction.lineItems is a field of the track table (an array of objects)` + reads + `custom metric "l" (a number) cannot be declared there`},
		{`{"custom_dimensions":[{"name":"ok","path":"event.user.loyaltyLevel"},{"name":"v","path":"event.value"}],"custom_metrics":[{"name":"q","path":"event.transaction.lineItems.quantity.n"}]}`,
			`track.custom_dimensions[1].path: event.value is a field of the track table (a number)` + reads + `custom dimension "v" (a string) cannot be declared there; ` +
				`track.custom_metrics[0].path: event.transaction.lineItems.quantity.n is inside event.transaction.lineItems.quantity, a field of the track table (an integer)` + reads + `custom metric "q" (a number) cannot be declared there`},
		// Paths of the hit's own, and table fields of the custom field's type.
		{`{"custom_dimensions":[{"name":"loyaltyLevel"},{"name":"seg","path":"integrations[\"My CRM\"].segment"},{"name":"source","path":"event.source"},{"name":"sent","path":"sentAt"}],` +
			`"custom_metrics":[{"name":"margin","path":"event.transaction.lineItems.product.margin"},{"name":"total","path":"event.transaction.total"},{"name":"qty","path":"event.transaction.lineItems.quantity"},{"name":"vx","path":"event.valueX"}]}`, ""},
	} {
		_, err := project.DecodeSettings([]byte(`{"track":` + c.track + `}`))
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.track, got, c.want)
		}
	}
}

// staleProject is project 7 with track settings that Settings.Validate
// refuses now (saved before it did): the decoder keeps the table's rules.
func staleProject(t testing.TB, projects *project.Store) *project.Project {
	p, _ := projects.Get(7)
	q := *p
	q.Settings.Track = project.TrackSettings{
		CustomDimensions: []project.CustomField{{Name: "v", Path: "event.value"}, {Name: "e", Path: "event"}, {Name: "source", Path: "event.source"}},
		CustomMetrics: []project.CustomField{{Name: "h", Path: "hitId"}, {Name: "s", Path: "sentAt"}, {Name: "n", Path: "event.name"},
			{Name: "x", Path: "event.value.x"}, {Name: "m", Path: "event.margin"}},
	}
	return &q
}

// Settings that used to panic the decoder (a check given a value of the
// custom field's kind) or loosen the table: each hit is checked by the
// table's rule, fails alone and at its path.
func TestTrackStaleCustomFieldsKeepTheTable(t *testing.T) {
	projects := fixtureProjects(t)
	tr := &Track{Projects: projects}
	p := staleProject(t, projects)
	const id = `"hitId":"4c59d330-35c7-11e9-8f27-8d1d7d4690e7"`
	const sent = `"sentAt":"2019-02-21T10:56:10Z"`
	for _, c := range []struct{ hit, want string }{
		{`{` + id + `,` + sent + `,"event":{"name":"x","value":"5"}}`, `event.value: must be a number`},
		{`{"hitId":5,` + sent + `}`, `hitId: must be a string`},
		{`{` + id + `,"sentAt":5}`, `sentAt: must be an ISO 8601 / RFC 3339 timestamp string`},
		{`{` + id + `,` + sent + `,"event":{"name":5}}`, `event.name: must be a string`},
		{`{` + id + `,` + sent + `,"event":{"source":5,"margin":"x"}}`, `event.source: must be a string; event.margin: must be a number`},
		{`{` + id + `,` + sent + `,"event":{"name":"x","value":5,"source":"crm","margin":1.5}}`, ``},
	} {
		items, err := tr.DecodeBatch(p, trackRequest(t, []byte(`{"batch":[`+c.hit+`]}`), ""))
		if err != nil || len(items) != 1 {
			t.Fatalf("%s: %v", c.hit, err)
		}
		got := ""
		if items[0].Errors != nil {
			got = items[0].Errors.Error()
		}
		if got != c.want || (got == "") != (items[0].Event != nil) {
			t.Errorf("%s: %q, want %q", c.hit, got, c.want)
		}
	}
}
