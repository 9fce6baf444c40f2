package admin

import (
	"errors"
	"net/http/httptest"
	"testing"
)

// /readyz says why the server is not ready, and is 200 again after.
func TestReadyzSaysWhy(t *testing.T) {
	var why error = errors.New("event log: disk full; appends refused since 2026-12-01T10:00:00Z (database or disk is full)")
	srv := New(Config{Ready: func() error { return why }}, nil, nil, nil, nil)
	for _, tc := range []struct {
		why    error
		status int
		body   string
	}{
		{why, 503, `{"reason":"event log: disk full; appends refused since 2026-12-01T10:00:00Z (database or disk is full)","status":"not ready"}` + "\n"},
		{nil, 200, `{"status":"ready"}` + "\n"},
	} {
		why = tc.why
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != tc.status || rec.Body.String() != tc.body || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("ready %v: %d %q %q", tc.why, rec.Code, rec.Body.String(), rec.Header().Get("Content-Type"))
		}
	}
}
