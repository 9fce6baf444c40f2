package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/dialect"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/eventlog"
	"github.com/sluicehq/sluice/internal/project"
)

// Concurrent requests with the same hitId store exactly one event, and
// every answer names it.
func TestTrackConcurrentDuplicatesStoreOne(t *testing.T) {
	srv, l := goldenServer(t, trackClock)
	hit, err := os.ReadFile("../dialect/testdata/track_seed_example.json")
	if err != nil {
		t.Fatal(err)
	}
	const n = 24
	type answer struct {
		ID        string `json:"id"`
		Duplicate bool   `json:"duplicate"`
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest("POST", "/track", strings.NewReader(string(hit)))
			req.Header.Set("Authorization", "Basic YWJjMTIzOg==")
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != 200 {
				t.Errorf("status %d: %s", rec.Code, rec.Body)
				return
			}
			json.Unmarshal(rec.Body.Bytes(), &answers[i])
		}()
	}
	wg.Wait()
	stored := 0
	for _, a := range answers {
		if a.ID != answers[0].ID || a.ID == "" {
			t.Fatalf("answers name different ids: %+v", answers)
		}
		if !a.Duplicate {
			stored++
		}
	}
	recs, err := l.Read(context.Background(), eventlog.Query{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if stored != 1 || len(recs) != 1 || recs[0].ID.String() != answers[0].ID {
		t.Fatalf("%d answers without duplicate, %d stored", stored, len(recs))
	}
}

// staleTrackSettings serves project id with track settings that
// Settings.Validate refuses now: settings saved before it did.
type staleTrackSettings struct {
	dialect.TrackProjects
	id    uint32
	track project.TrackSettings
}

func (s staleTrackSettings) Get(id uint32) (*project.Project, bool) {
	p, ok := s.TrackProjects.Get(id)
	if !ok || id != s.id {
		return p, ok
	}
	q := *p
	q.Settings.Track = s.track
	return &q, true
}

// A custom dimension or metric cannot be declared where the track table
// already types a field; a project that has one anyway (saved before the
// check) is decoded by the table's rule there, hit by hit: the bad hit is
// refused at its path and the good one stored (it was a 500 that stored
// nothing: a panic in event.value's check).
func TestTrackCustomFieldsOnTableFields(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ps, err := project.Open(filepath.Join(dir, "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	if _, err := ps.Create(ctx, nil, "shop", project.Settings{}); err != nil {
		t.Fatal(err)
	}
	const settings = `{"webhook_auth":"token","track":{"custom_dimensions":[{"name":"v","path":"event.value"}]}}`
	const why = `event.value is a field of the track table (a number): ` +
		`the track dialect reads and types it itself, so custom dimension "v" (a string) cannot be declared there`
	bad, err := project.DecodeSettings([]byte(settings))
	if err == nil || err.Error() != "track.custom_dimensions[0].path: "+why {
		t.Fatalf("decode settings: %v", err)
	}
	_, err = ps.Update(ctx, 1, nil, &bad)
	var inv *project.InvalidError
	if !errors.As(err, &inv) || len(inv.Fields) != 1 || inv.Fields[0].Path != "settings.track.custom_dimensions[0].path" || inv.Fields[0].Message != why {
		t.Fatalf("update: %v", err)
	}

	const hit = `"hitId":"58d1a6f0-35c7-11e9-8f27-8d1d7d4690e7"`
	const sent = `"sentAt":"2019-02-21T10:56:10.723Z"`
	for _, c := range []struct {
		name   string
		track  project.TrackSettings
		bad    string // the first hit
		errors string // its refusal
	}{
		{"dimension at event.value", project.TrackSettings{CustomDimensions: []project.CustomField{{Name: "v", Path: "event.value"}}},
			`{` + hit + `,` + sent + `,"event":{"name":"x","value":"5"}}`, `[{"path":"event.value","message":"must be a number"}]`},
		{"metric at hitId", project.TrackSettings{CustomMetrics: []project.CustomField{{Name: "h", Path: "hitId"}}},
			`{"hitId":5,` + sent + `}`, `[{"path":"hitId","message":"must be a string"}]`},
		{"metric at sentAt", project.TrackSettings{CustomMetrics: []project.CustomField{{Name: "s", Path: "sentAt"}}},
			`{` + hit + `,"sentAt":5}`, `[{"path":"sentAt","message":"must be an ISO 8601 / RFC 3339 timestamp string"}]`},
		{"metric at event.name", project.TrackSettings{CustomMetrics: []project.CustomField{{Name: "n", Path: "event.name"}}},
			`{` + hit + `,` + sent + `,"event":{"name":5}}`, `[{"path":"event.name","message":"must be a string"}]`},
		{"dimension at event", project.TrackSettings{CustomDimensions: []project.CustomField{{Name: "e", Path: "event"}}},
			`{` + hit + `,` + sent + `,"event":"x"}`, `[{"path":"event","message":"must be an object"}]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, l := goldenServer(t, trackClock)
			tr := srv.dialects[0].(*dialect.Track)
			tr.Projects = staleTrackSettings{TrackProjects: tr.Projects, id: 7, track: c.track}
			good := trackHit("4c59d330-35c7-11e9-8f27-8d1d7d4690e7", "ok")
			a := send(t, srv, "POST", "/track/batch", `{"batch":[`+c.bad+`,`+good+`]}`,
				map[string]string{"Authorization": "Basic YWJjMTIzOg==", "Content-Type": "application/json"})
			recs, err := l.Read(context.Background(), eventlog.Query{Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 1 {
				t.Fatalf("status %d %s: %d events stored, want the good hit", a.Status, a.Raw, len(recs))
			}
			want := `{"accepted":1,"duplicates":0,"invalid":1,"results":[{"status":"invalid","errors":` + c.errors + `},` +
				`{"status":"accepted","id":"` + recs[0].ID.String() + `","key":"in.track.custom.ok"}]}` + "\n"
			if a.Status != 200 || a.Raw != want {
				t.Fatalf("status %d %s\nwant 200 %s", a.Status, a.Raw, want)
			}
		})
	}
}

// A hit's times, and the event time corrected from them, are refused
// outside 2000-01-01 … a day from now, as s2s and commerce refuse theirs,
// at the field that gave them; in a batch the hit fails alone (sentAt
// 2019 with originalTimestamp 2030 was stored at 2037, sentAt 9999 with
// originalTimestamp 0000 at about year −7973).
func TestTrackTimesWithinBounds(t *testing.T) {
	const id = `"hitId":"58d1a6f0-35c7-11e9-8f27-8d1d7d4690e7"`
	const outside = "must be between 2000-01-01 and a day from now"
	hdr := map[string]string{"Authorization": "Basic YWJjMTIzOg==", "Content-Type": "application/json"}
	for _, c := range []struct {
		name, times string
		errors      string // "" for stored
		time        int64  // of the stored event, Unix ms
	}{
		{"own time years ahead of sentAt", `"sentAt":"2019-02-21T10:56:10Z","originalTimestamp":"2030-02-21T10:56:10Z"`,
			`[{"path":"originalTimestamp","message":"` + outside + `"}]`, 0},
		{"sentAt 9999, own time 0000", `"sentAt":"9999-02-21T10:56:10Z","originalTimestamp":"0000-02-21T10:56:10Z"`,
			`[{"path":"sentAt","message":"` + outside + `"},{"path":"originalTimestamp","message":"` + outside + `"}]`, 0},
		{"timestamp before 2000", `"sentAt":"2019-02-21T10:56:10Z","timestamp":"1999-12-31T23:59:59Z"`,
			`[{"path":"timestamp","message":"` + outside + `"}]`, 0},
		{"sentAt over a day ahead", `"sentAt":"2019-02-22T10:56:13Z"`,
			`[{"path":"sentAt","message":"` + outside + `"}]`, 0},
		{"each in bounds, corrected out of them", `"sentAt":"2000-01-01T00:00:00Z","originalTimestamp":"2019-02-22T00:00:00Z"`,
			`[{"path":"originalTimestamp","message":"puts the event's time, receivedAt − (sentAt − originalTimestamp), at 2038-04-14T10:56:12Z: it ` + outside + `"}]`, 0},
		{"corrected time of timestamp", `"sentAt":"2019-02-21T10:56:10.723Z","timestamp":"2019-02-21T10:55:10.723Z"`,
			"", trackClock.Add(-time.Minute).UnixMilli()},
		{"a day ahead, corrected to now", `"sentAt":"2019-02-22T10:56:12.723Z","originalTimestamp":"2019-02-22T10:56:12.723Z"`,
			"", trackClock.UnixMilli()},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, l := goldenServer(t, trackClock)
			hit := `{` + id + `,` + c.times + `,"event":{"name":"x"}}`
			a := send(t, srv, "POST", "/track", hit, hdr)
			recs, err := l.Read(context.Background(), eventlog.Query{Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if c.errors == "" {
				if len(recs) != 1 {
					t.Fatalf("status %d %s: %d stored", a.Status, a.Raw, len(recs))
				}
				e, err := event.Decode(recs[0].Body)
				if err != nil {
					t.Fatal(err)
				}
				want := `{"id":"` + recs[0].ID.String() + `","key":"in.track.custom.x"}` + "\n"
				if a.Status != 200 || a.Raw != want || e.Time != c.time {
					t.Fatalf("status %d %s, time %d; want 200 %s, time %d", a.Status, a.Raw, e.Time, want, c.time)
				}
				return
			}
			if want := `{"message":"invalid hit","errors":` + c.errors + "}\n"; a.Status != 400 || a.Raw != want || len(recs) != 0 {
				t.Fatalf("status %d %s(%d stored)\nwant 400 %s", a.Status, a.Raw, len(recs), want)
			}
			// In a batch, the hit fails alone.
			good := trackHit("4c59d330-35c7-11e9-8f27-8d1d7d4690e7", "ok")
			a = send(t, srv, "POST", "/track/batch", `{"batch":[`+hit+`,`+good+`]}`, hdr)
			recs, err = l.Read(context.Background(), eventlog.Query{Limit: 10})
			if err != nil || len(recs) != 1 {
				t.Fatalf("%d stored, %v", len(recs), err)
			}
			want := `{"accepted":1,"duplicates":0,"invalid":1,"results":[{"status":"invalid","errors":` + c.errors + `},` +
				`{"status":"accepted","id":"` + recs[0].ID.String() + `","key":"in.track.custom.ok"}]}` + "\n"
			if a.Status != 200 || a.Raw != want {
				t.Fatalf("status %d %s\nwant 200 %s", a.Status, a.Raw, want)
			}
		})
	}
}

// A number of the table that does not fit what reads it is refused at its
// path, with the words commerce uses: an INTEGER beyond 64 bits, any
// number beyond a 64-bit float (event.value 1e400 was stored).
func TestTrackNumbersWithinRange(t *testing.T) {
	const integer = "must be an integer within 64 bits, from -9223372036854775808 to 9223372036854775807"
	const float = "must be a number within the range of a 64-bit float (at most about 1.8e308 either way)"
	srv, l := goldenServer(t, trackClock)
	hit := `{"hitId":"58d1a6f0-35c7-11e9-8f27-8d1d7d4690e7","sentAt":"2019-02-21T10:56:10.723Z","event":{"name":"x","value":1e400,` +
		`"transaction":{"voucherDiscount":-1e309,"lineItems":[{"quantity":99999999999999999999999,"subtotal":1e30},{"quantity":1e2,"product":{"stock":1e19}}]}}}`
	a := send(t, srv, "POST", "/track", hit, map[string]string{"Authorization": "Basic YWJjMTIzOg==", "Content-Type": "application/json"})
	want := `{"message":"invalid hit","errors":[{"path":"event.value","message":"` + float + `"},` +
		`{"path":"event.transaction.voucherDiscount","message":"` + float + `"},` +
		`{"path":"event.transaction.lineItems[0].quantity","message":"` + integer + `"},` +
		`{"path":"event.transaction.lineItems[1].product.stock","message":"` + integer + `"}]}` + "\n"
	if a.Status != 400 || a.Raw != want || storedCount(t, l) != 0 {
		t.Fatalf("status %d %s\nwant 400 %s", a.Status, a.Raw, want)
	}
}
