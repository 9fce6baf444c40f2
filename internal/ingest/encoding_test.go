package ingest

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/eventlog"
)

func gz(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func zl(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	w := zlib.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func rawDeflate(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	w, _ := flate.NewWriter(&out, flate.BestSpeed)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

// Every dialect takes gzip and deflate bodies (what server-side senders
// send) and stores exactly what the uncompressed body would have given;
// other codings are a 415 with a JSON error; a bomb stops at the body
// limit with 413; a corrupt stream is a 400; nothing is stored on refusal.
func TestContentEncoding(t *testing.T) {
	hit := []byte(trackHit("58d1a6f0-35c7-11e9-8f27-8d1d7d4690e7", "Order"))
	s2sBody := []byte(`{"customUserId":"u","messages":[{"type":"action","id":"m-1","time":1680000000000,"name":"slug1"}]}`)
	dialects := []struct {
		name, path string
		header     map[string]string
		body       []byte
		code       string // s2s error code for refusals
	}{
		{"webhook", "/crm/lead/7", map[string]string{"Content-Type": "application/json"}, []byte(`{"phone":"12","note":"كل"}`), ""},
		{"track", "/track", map[string]string{"Authorization": "Basic YWJjMTIzOg==", "Content-Type": "application/json"}, hit, ""},
		{"track batch", "/track/batch", map[string]string{"Authorization": "Basic YWJjMTIzOg==", "Content-Type": "application/json"}, []byte(`{"batch":[` + string(hit) + `]}`), ""},
		{"s2s", "/", map[string]string{"X-Application-Id": "app-golden", "X-API-Key": "s2s-key", "Content-Type": "application/json"}, s2sBody, "x"},
		{"commerce", "/v1/events", map[string]string{"Authorization": "Bearer shop-token", "Content-Type": "application/json"}, []byte(`{"name":"Sign up","anonymousId":"a"}`), ""},
	}
	bomb := gz(t, append([]byte(`{"a":"`), bytes.Repeat([]byte("0"), 20<<20)...))
	for _, d := range dialects {
		send := func(t *testing.T, enc string, body []byte) (int, []byte, map[string]string, int) {
			srv, l := goldenServer(t, s2sClock)
			if strings.HasPrefix(d.path, "/track") {
				srv, l = goldenServer(t, trackClock)
			}
			req := httptest.NewRequest("POST", d.path, bytes.NewReader(body))
			for k, v := range d.header {
				req.Header.Set(k, v)
			}
			if enc != "" {
				req.Header.Set("Content-Encoding", enc)
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			recs, err := l.Read(context.Background(), eventlog.Query{})
			if err != nil {
				t.Fatal(err)
			}
			var data []byte
			if len(recs) == 1 {
				var e struct{ Data json.RawMessage }
				json.Unmarshal(recs[0].Body, &e)
				data = e.Data
			}
			h := map[string]string{"Accept-Encoding": rec.Header().Get("Accept-Encoding"), "Content-Type": rec.Header().Get("Content-Type")}
			return rec.Code, data, h, len(recs)
		}
		t.Run(d.name, func(t *testing.T) {
			status, plain, _, n := send(t, "", d.body)
			if status != 200 || n != 1 {
				t.Fatalf("plain: status %d, %d stored", status, n)
			}
			for _, c := range []struct {
				enc  string
				body []byte
			}{
				{"gzip", gz(t, d.body)}, {"x-gzip", gz(t, d.body)}, {"GZIP", gz(t, d.body)},
				{"deflate", zl(t, d.body)}, {"deflate", rawDeflate(t, d.body)},
				{"identity", d.body}, {"gzip, gzip", gz(t, gz(t, d.body))}, {"deflate, gzip", gz(t, zl(t, d.body))},
			} {
				status, data, _, n := send(t, c.enc, c.body)
				if status != 200 || n != 1 || !bytes.Equal(data, plain) {
					t.Fatalf("%s: status %d, %d stored, data %s, want %s", c.enc, status, n, data, plain)
				}
			}
			for _, c := range []struct {
				enc    string
				body   []byte
				status int
			}{
				{"br", d.body, 415}, {"compress", d.body, 415}, {"zstd", d.body, 415}, {"gzip, br", d.body, 415},
				{"gzip", d.body, 400},                        // not gzip at all
				{"gzip", gz(t, d.body)[:20], 400},            // truncated
				{"deflate", []byte("\x78\x9c\xff\xff"), 400}, // corrupt zlib
				{"gzip", bomb, 413},
			} {
				status, _, h, n := send(t, c.enc, c.body)
				if status != c.status || n != 0 || h["Content-Type"] != "application/json" {
					t.Fatalf("%s: status %d (want %d), %d stored, content type %q", c.enc, status, c.status, n, h["Content-Type"])
				}
				if c.status == 415 && h["Accept-Encoding"] != "gzip, deflate" {
					t.Fatalf("%s: Accept-Encoding %q", c.enc, h["Accept-Encoding"])
				}
			}
		})
	}
}
