package httpsink_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/httpsink"
	"github.com/sluicehq/sluice/internal/sink/sinktest"
)

// The http type passes the conformance suite against a loopback
// receiver that answers 503 while failing.
func TestConformance(t *testing.T) {
	var mu sync.Mutex
	var got []sinktest.Received
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var msgs []map[string]any
		if err := json.Unmarshal(body, &msgs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, m := range msgs {
			cd, _ := m["custom_data"].(map[string]any)
			got = append(got, sinktest.Received{EventID: m["id"].(string), IsTest: m["is_test"] == true, CustomData: cd,
				Raw: received{header: r.Header.Clone(), msg: m}})
		}
		mu.Unlock()
	}))
	defer srv.Close()
	sinktest.Run(t, sinktest.Target{
		Destination: httpsink.Destination(),
		Settings: func() sink.Settings {
			return &httpsink.Settings{URL: srv.URL + "/in", Timeout: sink.Duration(2 * time.Second),
				Headers: map[string]string{"X-Team": "crm"}, Auth: &httpsink.Auth{Type: "bearer", Token: "conformance-token"}}
		},
		Received: func(testing.TB) []sinktest.Received {
			mu.Lock()
			defer mu.Unlock()
			return append([]sinktest.Received(nil), got...)
		},
		Fail: func(_ testing.TB, on bool) { fail.Store(on) },
		Check: func(t testing.TB, r sinktest.Received, sent *event.Event) {
			rc := r.Raw.(received)
			if rc.header.Get("Authorization") != "Bearer conformance-token" || rc.header.Get("X-Team") != "crm" ||
				rc.header.Get("webhook-signature") == "" || rc.msg["key"] != sent.Key {
				t.Fatalf("request %v %v", rc.header, rc.msg)
			}
		},
	})
}

type received struct {
	header http.Header
	msg    map[string]any
}
