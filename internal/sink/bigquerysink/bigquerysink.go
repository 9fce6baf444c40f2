// Package bigquerysink streams hook batches into a BigQuery table with the
// official client (cloud.google.com/go/bigquery): a row per event, the
// event id as the row's insert id (BigQuery drops a row whose insert id
// it saw in the last minute or so: a retried batch is not doubled), the
// canonical columns and the event's data as JSON (Schema). The table is
// created when missing, partitioned by day on the event time and
// clustered by project and key. Every connection, the OAuth token's
// included, dials through the SSRF guard.
package bigquerysink

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/bigquery"
	"github.com/tidwall/gjson"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/sluicehq/sluice/internal/sink"
)

// Schema is the table's: the columns of the canonical event, its data,
// identities and custom_data as JSON.
func Schema() bigquery.Schema {
	return bigquery.Schema{
		{Name: "id", Type: bigquery.StringFieldType, Required: true, Description: "sluice event id"},
		{Name: "project_id", Type: bigquery.IntegerFieldType, Required: true},
		{Name: "key", Type: bigquery.StringFieldType, Required: true},
		{Name: "time", Type: bigquery.TimestampFieldType, Required: true, Description: "event time"},
		{Name: "received_at", Type: bigquery.TimestampFieldType},
		{Name: "channel", Type: bigquery.StringFieldType},
		{Name: "service", Type: bigquery.StringFieldType},
		{Name: "name", Type: bigquery.StringFieldType},
		{Name: "dialect", Type: bigquery.StringFieldType},
		{Name: "uid", Type: bigquery.StringFieldType},
		{Name: "identities", Type: bigquery.JSONFieldType},
		{Name: "data", Type: bigquery.JSONFieldType},
		{Name: "custom_data", Type: bigquery.JSONFieldType},
		{Name: "batch_id", Type: bigquery.StringFieldType},
		{Name: "is_test", Type: bigquery.BooleanFieldType},
	}
}

// Config is where and how to stream.
type Config struct {
	Project, Dataset, Table string
	// Credentials is a service account's JSON key; empty only with an
	// Endpoint (an emulator).
	Credentials []byte
	// Endpoint overrides Google's API (http://host:port).
	Endpoint    string
	CreateTable bool
	Timeout     time.Duration
	Guard       *sink.Guard
}

// Sink streams into one table.
type Sink struct {
	cfg    Config
	client *bigquery.Client
	table  *bigquery.Table
	hc     *http.Client

	mu    sync.Mutex
	ready bool // the table exists
}

var _ sink.Sink = (*Sink)(nil)

// New makes the client; it connects on first use.
func New(cfg Config) (*Sink, error) {
	if cfg.Project == "" || cfg.Dataset == "" || cfg.Table == "" {
		return nil, errors.New("bigquery: a project, a dataset and a table are required")
	}
	if len(cfg.Credentials) == 0 && cfg.Endpoint == "" {
		return nil, errors.New("bigquery: credentials are required (only an endpoint override may go without)")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	d := cfg.Guard.Dialer()
	d.Timeout = cfg.Timeout
	base := &http.Transport{DialContext: d.DialContext, Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: cfg.Timeout, ResponseHeaderTimeout: cfg.Timeout, ForceAttemptHTTP2: true}
	guarded := &http.Client{Transport: base, Timeout: cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var rt http.RoundTripper = base
	if len(cfg.Credentials) > 0 {
		jwt, err := google.JWTConfigFromJSON(cfg.Credentials, bigquery.Scope)
		if err != nil {
			return nil, fmt.Errorf("bigquery: credentials: %w", err)
		}
		// The token is fetched through the guard too, and refreshed by
		// the transport.
		tctx := context.WithValue(context.Background(), oauth2.HTTPClient, guarded)
		rt = &oauth2.Transport{Source: jwt.TokenSource(tctx), Base: base}
	}
	opts := []option.ClientOption{option.WithHTTPClient(&http.Client{Transport: rt, Timeout: cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }})}
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(apiBase(cfg.Endpoint)))
	}
	client, err := bigquery.NewClient(context.Background(), cfg.Project, opts...)
	if err != nil {
		return nil, fmt.Errorf("bigquery: %w", err)
	}
	return &Sink{cfg: cfg, client: client, table: client.Dataset(cfg.Dataset).Table(cfg.Table), hc: guarded}, nil
}

// apiBase is the REST API's base under an endpoint: its /bigquery/v2/.
func apiBase(endpoint string) string {
	e := strings.TrimRight(endpoint, "/")
	if strings.HasSuffix(e, "/bigquery/v2") {
		return e + "/"
	}
	return e + "/bigquery/v2/"
}

// row is one event as a table row, its insert id the event id.
type row struct {
	msg     []byte
	batchID string
	test    bool // a pre-test's row: its own insert id, not dropped as a repeat of the event's
}

func (r row) Save() (map[string]bigquery.Value, string, error) {
	f := gjson.GetManyBytes(r.msg, "id", "projectId", "key", "time", "receivedAt", "channel", "service", "name", "dialect", "uid", "identities", "data", "custom_data", "is_test")
	id := f[0].String()
	m := map[string]bigquery.Value{
		"id": id, "project_id": f[1].Int(), "key": f[2].String(), "time": timestamp(f[3].Int()), "channel": f[5].String(),
		"service": f[6].String(), "name": f[7].String(), "dialect": f[8].String(), "uid": f[9].String(),
		"identities": rawOr(f[10], "[]"), "data": rawOr(f[11], "null"), "custom_data": rawOr(f[12], "{}"),
		"batch_id": r.batchID, "is_test": f[13].Bool(),
	}
	if f[4].Exists() {
		m["received_at"] = timestamp(f[4].Int())
	}
	if r.test {
		return m, r.batchID + "-" + id, nil
	}
	return m, id, nil
}

// timestamp is a TIMESTAMP as the API takes it: RFC 3339 in UTC, to the
// microsecond.
func timestamp(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000000Z")
}

func rawOr(r gjson.Result, def string) string {
	if !r.Exists() {
		return def
	}
	return r.Raw
}

// prepare creates the table when it is missing, once per sink (again
// after the table went away).
func (s *Sink) prepare(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready || !s.cfg.CreateTable {
		return nil
	}
	_, err := s.table.Metadata(ctx)
	if isStatus(err, http.StatusNotFound) {
		err = s.table.Create(ctx, &bigquery.TableMetadata{
			Schema:           Schema(),
			TimePartitioning: &bigquery.TimePartitioning{Type: bigquery.DayPartitioningType, Field: "time"},
			Clustering:       &bigquery.Clustering{Fields: []string{"project_id", "key"}},
			Description:      "sluice events (docs/destinations.md)",
		})
		if isStatus(err, http.StatusConflict) { // created meanwhile
			err = nil
		}
	}
	if err != nil {
		return classify(err)
	}
	s.ready = true
	return nil
}

func isStatus(err error, code int) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == code
}

// Deliver streams every row of b in one insertAll request. The client
// retries a 5xx or rate limit within the attempt (BigQuery's SLA
// backoff), bounded by the timeout; the loop retries the rest.
func (s *Sink) Deliver(ctx context.Context, b *sink.Batch) (*sink.Report, error) {
	start := time.Now()
	target := fmt.Sprintf("%s.%s.%s", s.cfg.Project, s.cfg.Dataset, s.cfg.Table)
	rep := &sink.Report{Request: &sink.RequestInfo{Method: "INSERTALL", URL: "bigquery://" + target, Header: map[string][]string{}}}
	if len(b.Messages) > 0 {
		rep.Request.Body = string(b.Messages[0])
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	defer func() { rep.Latency = time.Since(start) }()
	if err := s.prepare(ctx); err != nil {
		s.note(rep, err)
		return rep, err
	}
	rows := make([]row, len(b.Messages))
	for i, m := range b.Messages {
		rows[i] = row{msg: m, batchID: b.ID, test: b.Test}
	}
	if err := s.table.Inserter().Put(ctx, rows); err != nil {
		if isStatus(err, http.StatusNotFound) {
			s.mu.Lock()
			s.ready = false // the table went away: created again next time
			s.mu.Unlock()
		}
		err = classify(err)
		s.note(rep, err)
		return rep, err
	}
	rep.Status = http.StatusOK
	rep.Response = fmt.Sprintf("%d rows streamed into %s", len(rows), target)
	return rep, nil
}

// classify turns the client's errors into the loop's: row errors of an
// invalid value are permanent (the same rows fail again), a status is a
// status, the rest a network failure.
func classify(err error) error {
	var pme bigquery.PutMultiError
	if errors.As(err, &pme) {
		invalid := false
		var msgs []string
		for _, re := range pme {
			for _, e := range re.Errors {
				var be *bigquery.Error
				if errors.As(e, &be) && be.Reason == "invalid" {
					invalid = true
					msgs = append(msgs, fmt.Sprintf("row %d (event %s): %s: %s", re.RowIndex, re.InsertID, be.Location, be.Message))
				}
			}
		}
		if len(msgs) > 10 {
			msgs = append(msgs[:10], fmt.Sprintf("and %d more", len(msgs)-10))
		}
		return &sink.Error{Class: sink.ClassInvalid, Permanent: invalid, Err: fmt.Errorf("bigquery refused the rows: %s", strings.Join(msgs, "; "))}
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return &sink.Error{Class: sink.ClassStatus, Err: fmt.Errorf("bigquery: %w", ge)}
	}
	return sink.NetError(err)
}

// note puts the API's status in the report.
func (s *Sink) note(rep *sink.Report, err error) {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		rep.Status, rep.Response = ge.Code, ge.Message
		return
	}
	rep.Response = err.Error()
}

// Close closes the client.
func (s *Sink) Close() error {
	s.hc.CloseIdleConnections()
	return s.client.Close()
}
