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
	projects := fixtureProjects(f)
	tr := &Track{Projects: projects, HitLimit: 32 << 10}
	p, _ := projects.Get(7)
	f.Fuzz(func(t *testing.T, body []byte) {
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
			var de *Error
			if !errors.As(err, &de) || de.Status < 400 || de.Status > 499 || de.Message == "" {
				t.Fatalf("error %#v", err)
			}
			if de.Status == 400 && len(de.Errors) == 0 {
				t.Fatalf("400 without field errors: %+v", de)
			}
			for _, fe := range de.Errors {
				if fe.Path == "" || fe.Message == "" {
					t.Fatalf("field error without path or message: %+v", de.Errors)
				}
			}
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
	})
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
