package clickhousesink_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/clickhousenode"
	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/hook"
	"github.com/sluicehq/sluice/internal/sink"
	"github.com/sluicehq/sluice/internal/sink/clickhousesink"
	"github.com/sluicehq/sluice/internal/sink/sinktest"
)

var loopback = &sink.Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}

func server(t *testing.T) *clickhousenode.Node {
	t.Helper()
	return clickhousenode.Start(t)
}

func settings(url, table string) *clickhousesink.Settings {
	return &clickhousesink.Settings{URL: url, Table: table, Username: clickhousenode.User, Password: clickhousenode.Password, Timeout: sink.Duration(3 * time.Second)}
}

// rows reads a table as JSON objects.
func rows(t testing.TB, n *clickhousenode.Node, q string) []map[string]any {
	t.Helper()
	out, err := n.Query(q + " FORMAT JSONEachRow")
	if err != nil {
		t.Fatal(err)
	}
	var rs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		rs = append(rs, r)
	}
	return rs
}

// proxy forwards loopback connections to addr until it is switched off:
// then it refuses them (and cuts the open ones), as a server that went
// away.
type proxy struct {
	ln    net.Listener
	to    string
	off   atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t *testing.T, to string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, to: to}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.off.Load() {
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) set(off bool) {
	p.off.Store(off)
	if off {
		p.cut()
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// The clickhouse type passes the conformance suite on a real server
// (reached through a proxy that goes away while the target fails).
func TestConformance(t *testing.T) {
	n := server(t)
	p := newProxy(t, strings.TrimPrefix(n.URL(), "http://"))
	sinktest.Run(t, sinktest.Target{
		Destination: clickhousesink.Destination(),
		Settings:    func() sink.Settings { return settings(p.url(), "conformance") },
		Received: func(t testing.TB) []sinktest.Received {
			if out, _ := n.Query("EXISTS TABLE default.conformance"); strings.TrimSpace(out) != "1" {
				return nil
			}
			var out []sinktest.Received
			for _, r := range rows(t, n, "SELECT * FROM default.conformance ORDER BY id") {
				var cd map[string]any
				json.Unmarshal([]byte(r["custom_data"].(string)), &cd)
				out = append(out, sinktest.Received{EventID: fmt.Sprint(r["id"]), IsTest: r["is_test"] == float64(1), CustomData: cd, Raw: r})
			}
			return out
		},
		Fail: func(_ testing.TB, on bool) { p.set(on) },
		Check: func(t testing.TB, got sinktest.Received, sent *event.Event) {
			r := got.Raw.(map[string]any)
			want := map[string]any{"project_id": float64(sent.ProjectID), "key": sent.Key, "channel": "http", "service": "calltrack", "name": "call",
				"dialect": "webhook", "time": time.UnixMilli(sent.Time).UTC().Format(time.DateTime), "time_ms": fmt.Sprint(sent.Time),
				"received_at": fmt.Sprint(sent.ReceivedAt), "data": string(sent.Data), "uid": ""}
			for k, v := range want {
				if r[k] != v {
					t.Fatalf("column %s = %#v, want %#v (row %v)", k, r[k], v, r)
				}
			}
			if !strings.HasPrefix(r["batch_id"].(string), "msg_") || r["identities"] != `[{"type":"user_id","value":"`+sent.Identities[0].Value+`"}]` {
				t.Fatalf("row %v", r)
			}
		},
	})
}

// An s2s revenue reaches ClickHouse as a row, through a hook; the table
// is created as documented.
func TestS2SRevenueArrivesAsARow(t *testing.T) {
	n := server(t)
	h := sinktest.NewHost(t, clickhousesink.Destination(), nil)
	pid := uint32(sinktest.ProjectID)
	if _, err := h.M.Create(context.Background(), hook.Hook{Name: "ch", Active: true, ProjectID: &pid, Events: []string{"in.s2s.revenue.*"},
		Type: clickhousesink.Type, Settings: settings(n.URL(), "revenue"), CustomData: map[string]string{"source": "s2s"}}, hook.Start{}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	evs := h.Append(t, &event.Event{Key: "in.s2s.revenue.buy", Channel: event.ChannelHTTP, Service: "s2s", Name: "buy", ProjectID: pid,
		Data: json.RawMessage(`{"type":"revenue","id":"b2c1d1f0-0000-4000-8000-000000000002","time":1680000000000,"name":"buy","revenue":53.7,"currency":"IRR"}`),
		Time: 1680000000000, Dialect: "s2s", ReceivedAt: now, DedupKey: "s2s:b2c1",
		Identities: []event.Identity{{Type: "custom_user_id", Value: "r.akbari"}}})
	var rs []map[string]any
	sinktest.WaitFor(t, "the row", func() bool {
		if out, _ := n.Query("EXISTS TABLE default.revenue"); strings.TrimSpace(out) != "1" {
			return false
		}
		rs = rows(t, n, "SELECT *, visitParamExtractFloat(data, 'revenue') AS revenue, visitParamExtractString(data, 'currency') AS currency FROM default.revenue")
		return len(rs) == 1
	})
	r := rs[0]
	if r["id"] != evs[0].ID.String() || r["key"] != "in.s2s.revenue.buy" || r["time"] != "2023-03-28 10:40:00" || r["time_ms"] != "1680000000000" ||
		r["revenue"] != 53.7 || r["currency"] != "IRR" || r["custom_data"] != `{"source":"s2s"}` || r["is_test"] != float64(0) ||
		r["identities"] != `[{"type":"custom_user_id","value":"r.akbari"}]` {
		t.Fatalf("row %v", r)
	}
	create, err := n.Query("SHOW CREATE TABLE default.revenue")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ENGINE = ReplacingMergeTree", "PARTITION BY toYYYYMM(time)", "ORDER BY (project_id, key, time, id, is_test)", "time DateTime(\\'UTC\\')", "data String"} {
		if !strings.Contains(create, want) {
			t.Fatalf("%s: no %q", create, want)
		}
	}
}

func batch(id string, n int) *sink.Batch {
	b := &sink.Batch{ID: id, Attempt: 1}
	for i := range n {
		b.Messages = append(b.Messages, []byte(fmt.Sprintf(`{"key":"in.gen.crm.lead","channel":"http","service":"crm","name":"lead","projectId":7,"td":{},"data":{"n":%d,"text":"quote \" and \\ and ж"},"id":"%d","time":1700000000000,"dialect":"webhook","receivedAt":1700000000001,"custom_data":{},"is_test":false}`, i, 7000000000000000000+i)))
	}
	return b
}

// A batch inserted twice (a retry after a lost answer) collapses to one
// row per event in the table's ReplacingMergeTree: FINAL sees it at once,
// a merge makes it so. (ClickHouse 18.16 has no insert deduplication
// token; from 22.2 on the batch id is sent as one.)
func TestABatchInsertedTwiceIsOneRowPerEvent(t *testing.T) {
	n := server(t)
	s, err := clickhousesink.New(clickhousesink.Config{URL: n.URL(), Table: "dedup", Username: clickhousenode.User, Password: clickhousenode.Password, CreateTable: true, Guard: loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := batch("msg_twice", 3)
	for range 2 {
		if rep, err := s.Deliver(context.Background(), b); err != nil || rep.Response != "3 rows inserted into `default`.`dedup`" {
			t.Fatalf("%+v %v", rep, err)
		}
	}
	if got := rows(t, n, "SELECT count() AS n FROM default.dedup FINAL"); got[0]["n"] != "3" {
		t.Fatalf("FINAL: %v", got)
	}
	// A pre-test of the same event is a row of its own: it never
	// replaces the event's.
	test := batch("msg_test", 1)
	test.Test = true
	test.Messages[0] = []byte(strings.Replace(string(test.Messages[0]), `"is_test":false`, `"is_test":true`, 1))
	if _, err := s.Deliver(context.Background(), test); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Query("OPTIMIZE TABLE default.dedup FINAL"); err != nil {
		t.Fatal(err)
	}
	rs := rows(t, n, "SELECT id, data, is_test FROM default.dedup ORDER BY id, is_test")
	if len(rs) != 4 || rs[0]["id"] != "7000000000000000000" || rs[0]["is_test"] != float64(0) || rs[1]["is_test"] != float64(1) ||
		rs[3]["data"] != `{"n":2,"text":"quote \" and \\ and ж"}` {
		t.Fatalf("after a merge: %v", rs)
	}
	version, _ := n.Query("SELECT version()")
	t.Logf("ClickHouse %s: insert_deduplication_token %v", strings.TrimSpace(version), clickhousesink.TakesDedupToken(strings.TrimSpace(version)))
}

// A table that goes away is created again; a wrong password is a status
// error with the server's words; a missing table without create_table is
// named.
func TestTableGoneCredentialsAndNoCreate(t *testing.T) {
	n := server(t)
	ctx := context.Background()
	s, _ := clickhousesink.New(clickhousesink.Config{URL: n.URL(), Table: "gone", Username: clickhousenode.User, Password: clickhousenode.Password, CreateTable: true, Guard: loopback})
	defer s.Close()
	if _, err := s.Deliver(ctx, batch("b1", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Query("DROP TABLE default.gone"); err != nil {
		t.Fatal(err)
	}
	_, err := s.Deliver(ctx, batch("b2", 1))
	var se *sink.Error
	if !errors.As(err, &se) || se.Class != sink.ClassStatus || !strings.Contains(err.Error(), "Code: 60") {
		t.Fatalf("insert into a dropped table: %v", err)
	}
	if _, err := s.Deliver(ctx, batch("b2", 1)); err != nil {
		t.Fatalf("after the table was created again: %v", err)
	}

	bad, _ := clickhousesink.New(clickhousesink.Config{URL: n.URL(), Table: "gone", Username: clickhousenode.User, Password: "wrong", CreateTable: true, Guard: loopback})
	defer bad.Close()
	rep, err := bad.Deliver(ctx, batch("b3", 1))
	if !errors.As(err, &se) || se.Class != sink.ClassStatus || rep.Status == 200 || !strings.Contains(rep.Response, "Code: 193") || strings.Contains(rep.Request.URL, "wrong") {
		t.Fatalf("wrong password: %+v %v", rep, err)
	}

	none, _ := clickhousesink.New(clickhousesink.Config{URL: n.URL(), Table: "never", Username: clickhousenode.User, Password: clickhousenode.Password, Guard: loopback})
	defer none.Close()
	if _, err := none.Deliver(ctx, batch("b4", 1)); err == nil || !strings.Contains(err.Error(), "Table default.never doesn't exist") {
		t.Fatalf("create_table false: %v", err)
	}
}

func TestTakesDedupToken(t *testing.T) {
	for v, want := range map[string]bool{"18.16.1": false, "21.8.15.7": false, "22.1.3.7": false, "22.2.2.1": true, "23.8.2.7": true, "24.1": true, "x": false} {
		if got := clickhousesink.TakesDedupToken(v); got != want {
			t.Errorf("%s: %v", v, got)
		}
	}
}

func TestSettingsChecks(t *testing.T) {
	d, _ := hook.NewDestinations([]sink.Destination{clickhousesink.Destination()})
	for js, want := range map[string]string{
		`{"url":"http://ch.example.com:8123"}`:                                "",
		`{"url":"https://ch.example.com:8443","ca_file":"/nonexistent.pem"}`:  "clickhouse.ca_file: open /nonexistent.pem",
		`{"url":"http://ch.example.com:8123","ca_file":"/x.pem"}`:             "clickhouse.ca_file: only with an https:// URL",
		`{"url":"http://ch.example.com:8123/db"}`:                             "clickhouse.url: the server's address only",
		`{"url":"http://u:p@ch.example.com:8123"}`:                            "clickhouse.url: credentials in the URL are not allowed: set username and password",
		`{"url":"http://ch.example.com:8123","table":"events; DROP TABLE x"}`: "clickhouse.table: letters, digits and underscores",
		`{"url":"tcp://ch.example.com:9000"}`:                                 "clickhouse.url: an http:// or https:// URL",
	} {
		var h hook.Hook
		if err := json.Unmarshal([]byte(`{"name":"c","events":["in.*"],"type":"clickhouse","clickhouse":`+js+`}`), &h); err != nil {
			t.Fatal(err)
		}
		err := d.Check(h)
		if (want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", js, err, want)
		}
	}
}

// Over https, the server's certificate is checked against ca_file; without
// it (the system's roots) the connection is refused.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test clickhouse"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	n := clickhousenode.StartTLS(t, certFile, keyFile)
	url := fmt.Sprintf("https://127.0.0.1:%d", n.HTTPSPort)
	for _, c := range []struct {
		ca string
		ok bool
	}{{certFile, true}, {"", false}} {
		st := settings(url, "tls")
		st.CAFile = c.ca
		st.Defaults()
		s, err := st.NewSink(sink.Env{Guard: loopback})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Deliver(context.Background(), batch("msg_tls", 2))
		s.Close()
		if c.ok != (err == nil) || !c.ok && !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("ca_file %q: %v", c.ca, err)
		}
	}
	if rs := rows(t, n, "SELECT count() AS n FROM default.tls"); rs[0]["n"] != "2" {
		t.Fatalf("%v", rs)
	}
}
