// Package clickhousesink inserts hook batches into a ClickHouse table over
// its HTTP interface: one INSERT … FORMAT JSONEachRow per batch, a row per
// event (Schema). The table is created when missing, as a
// ReplacingMergeTree ordered by project, key, time and event id (and
// is_test: a pre-test's row never replaces the event's), so that a
// batch inserted twice (a retry after a lost answer, a replay) collapses
// to one row per event when ClickHouse merges (SELECT … FINAL sees it at
// once). Servers from 22.2 on also get the batch id as the insert's
// deduplication token, which drops the repeated insert itself.
package clickhousesink

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sluicehq/sluice/internal/event"
	"github.com/sluicehq/sluice/internal/sink"
)

// Schema is the table a hook creates when it is missing (%s: the
// database and table, %s: the table settings). It keeps to the types of
// ClickHouse 18.16 (no DateTime64, no JSON type): the event time is a
// DateTime in UTC plus time_ms, the event's data and identities are JSON
// text (JSONExtract*, or visitParam* on old servers).
const Schema = `CREATE TABLE IF NOT EXISTS %s (
    project_id  UInt32,
    key         String,
    time        DateTime('UTC'),
    time_ms     UInt64,
    id          UInt64,
    channel     String,
    service     String,
    name        String,
    dialect     String,
    received_at UInt64,
    uid         String,
    identities  String,
    data        String,
    custom_data String,
    batch_id    String,
    is_test     UInt8
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (project_id, key, time, id, is_test)%s`

// Config is where and how to insert.
type Config struct {
	// URL is the server's HTTP interface: http://host:8123 or
	// https://host:8443.
	URL                string
	Database, Table    string
	Username, Password string
	TLS                *tls.Config
	// CreateTable creates the table when it is missing.
	CreateTable bool
	Timeout     time.Duration
	Guard       *sink.Guard
}

// Sink inserts into one table.
type Sink struct {
	cfg    Config
	client *http.Client
	target string // `db`.`table`

	mu sync.Mutex
	// ready: the server's version is known and the table exists.
	ready bool
	token bool // the server takes insert_deduplication_token
}

var _ sink.Sink = (*Sink)(nil)

// New makes the sink; it connects on first use.
func New(cfg Config) (*Sink, error) {
	if cfg.URL == "" || cfg.Table == "" {
		return nil, errors.New("clickhouse: a URL and a table are required")
	}
	if cfg.Database == "" {
		cfg.Database = "default"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	d := cfg.Guard.Dialer()
	d.Timeout = cfg.Timeout
	client := &http.Client{
		Transport: &http.Transport{DialContext: d.DialContext, Proxy: nil, TLSClientConfig: cfg.TLS, MaxIdleConnsPerHost: 4,
			IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: cfg.Timeout, ResponseHeaderTimeout: cfg.Timeout},
		Timeout:       cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Sink{cfg: cfg, client: client, target: quote(cfg.Database) + "." + quote(cfg.Table)}, nil
}

func quote(id string) string { return "`" + id + "`" }

// serverError is ClickHouse's answer to a failed query: "Code: 60, …".
type serverError struct {
	status int
	code   int
	text   string
}

func (e *serverError) Error() string {
	return fmt.Sprintf("clickhouse answered %d: %s", e.status, e.text)
}

// query runs q with body (nil for none) and returns the answer.
func (s *Sink) query(ctx context.Context, q string, params url.Values, body []byte) ([]byte, error) {
	u, err := url.Parse(s.cfg.URL)
	if err != nil {
		return nil, err
	}
	if params == nil {
		params = url.Values{}
	}
	params.Set("query", q)
	u.RawQuery = params.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), rd)
	if err != nil {
		return nil, err
	}
	if s.cfg.Username != "" || s.cfg.Password != "" {
		req.SetBasicAuth(s.cfg.Username, s.cfg.Password)
	}
	req.Header.Set("User-Agent", "sluice-hooks/1")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, sink.NetError(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		text := strings.TrimSpace(string(answer))
		e := &serverError{status: resp.StatusCode, text: text}
		if c, ok := strings.CutPrefix(text, "Code: "); ok {
			e.code, _ = strconv.Atoi(c[:strings.IndexFunc(c+",", func(r rune) bool { return r < '0' || r > '9' })])
		}
		return answer, &sink.Error{Class: sink.ClassStatus, Err: e}
	}
	return answer, nil
}

// prepare learns the server's version and creates the table when it is
// missing, once per sink (again after the table went away).
func (s *Sink) prepare(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready {
		return nil
	}
	v, err := s.query(ctx, "SELECT version()", nil, nil)
	if err != nil {
		return err
	}
	s.token = TakesDedupToken(strings.TrimSpace(string(v)))
	if s.cfg.CreateTable {
		settings := ""
		if s.token {
			// Without it, a table that is not replicated keeps no
			// insert hashes to deduplicate by.
			settings = "\nSETTINGS non_replicated_deduplication_window = 1000"
		}
		if _, err := s.query(ctx, fmt.Sprintf(Schema, s.target, settings), nil, nil); err != nil {
			return err
		}
	}
	s.ready = true
	return nil
}

// TakesDedupToken reports whether a server of version v (19.1.6, 23.8.2.7)
// takes the insert_deduplication_token setting (22.2 and later).
func TakesDedupToken(v string) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	return err1 == nil && err2 == nil && (major > 22 || major == 22 && minor >= 2)
}

// Rows writes the JSONEachRow body of a batch: a row per message.
func Rows(b *sink.Batch) []byte {
	var out []byte
	for _, msg := range b.Messages {
		out = appendRow(out, msg, b.ID)
	}
	return out
}

func appendRow(dst, msg []byte, batchID string) []byte {
	f := gjson.GetManyBytes(msg, "projectId", "key", "time", "id", "channel", "service", "name", "dialect", "receivedAt", "uid", "identities", "data", "custom_data", "is_test")
	ms := f[2].Int()
	dst = append(dst, `{"project_id":`...)
	dst = strconv.AppendUint(dst, f[0].Uint(), 10)
	dst = appendField(dst, "key", f[1].String())
	dst = appendField(dst, "time", time.UnixMilli(ms).UTC().Format(time.DateTime))
	dst = append(dst, `,"time_ms":`...)
	dst = strconv.AppendInt(dst, max(ms, 0), 10)
	dst = append(dst, `,"id":`...)
	id, _ := strconv.ParseUint(f[3].String(), 10, 64)
	dst = strconv.AppendUint(dst, id, 10)
	dst = appendField(dst, "channel", f[4].String())
	dst = appendField(dst, "service", f[5].String())
	dst = appendField(dst, "name", f[6].String())
	dst = appendField(dst, "dialect", f[7].String())
	dst = append(dst, `,"received_at":`...)
	dst = strconv.AppendInt(dst, max(f[8].Int(), 0), 10)
	dst = appendField(dst, "uid", f[9].String())
	dst = appendField(dst, "identities", rawOr(f[10], "[]"))
	dst = appendField(dst, "data", rawOr(f[11], "null"))
	dst = appendField(dst, "custom_data", rawOr(f[12], "{}"))
	dst = appendField(dst, "batch_id", batchID)
	if f[13].Bool() {
		dst = append(dst, `,"is_test":1}`...)
	} else {
		dst = append(dst, `,"is_test":0}`...)
	}
	return append(dst, '\n')
}

func rawOr(r gjson.Result, def string) string {
	if !r.Exists() {
		return def
	}
	return r.Raw
}

func appendField(dst []byte, name, v string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return event.AppendString(dst, v)
}

// Deliver inserts the batch as one INSERT. A pre-test inserts its row
// (is_test 1) as a delivery does.
func (s *Sink) Deliver(ctx context.Context, b *sink.Batch) (*sink.Report, error) {
	start := time.Now()
	body := Rows(b)
	q := "INSERT INTO " + s.target + " FORMAT JSONEachRow"
	rep := &sink.Report{Request: &sink.RequestInfo{Method: http.MethodPost, URL: s.redactedURL(q), Header: map[string][]string{}, Body: string(body[:min(len(body), 4<<10)])}}
	defer func() { rep.Latency = time.Since(start) }()
	if err := s.prepare(ctx); err != nil {
		s.note(rep, err)
		return rep, err
	}
	params := url.Values{}
	s.mu.Lock()
	if s.token {
		params.Set("insert_deduplication_token", b.ID)
	}
	s.mu.Unlock()
	if _, err := s.query(ctx, q, params, body); err != nil {
		var se *serverError
		if errors.As(err, &se) && se.code == 60 { // the table went away: create it again next time
			s.mu.Lock()
			s.ready = false
			s.mu.Unlock()
		}
		s.note(rep, err)
		return rep, err
	}
	rep.Status = http.StatusOK
	rep.Response = fmt.Sprintf("%d rows inserted into %s", len(b.Messages), s.target)
	return rep, nil
}

// note puts the server's answer in the report.
func (s *Sink) note(rep *sink.Report, err error) {
	var se *serverError
	if errors.As(err, &se) {
		rep.Status, rep.Response = se.status, se.text[:min(len(se.text), 1<<10)]
	}
}

func (s *Sink) redactedURL(q string) string {
	u, err := url.Parse(s.cfg.URL)
	if err != nil {
		return s.cfg.URL
	}
	u.User = nil
	u.RawQuery = url.Values{"query": {q}}.Encode()
	return u.String()
}

// Close releases idle connections.
func (s *Sink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}
