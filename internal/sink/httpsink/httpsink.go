// Package httpsink delivers hook batches as one signed HTTP POST of a JSON
// array, following the Standard Webhooks specification for the signature.
package httpsink

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/sink"
)

// Auth is how requests authenticate. Password and Token are write-only:
// the API never returns them.
type Auth struct {
	Type     string `json:"type" yaml:"type"` // none, basic or bearer
	Username string `json:"username,omitempty" yaml:"username"`
	Password string `json:"password,omitempty" yaml:"password"`
	Token    string `json:"token,omitempty" yaml:"token"`
}

// Config configures one hook's HTTP delivery.
type Config struct {
	URL     string
	Timeout time.Duration // default 10s
	Header  map[string]string
	Auth    Auth
	// SuccessRegex, when set, must match the response body.
	SuccessRegex *regexp.Regexp
	// Secrets sign requests (whsec_…); during a rotation there are two and
	// each signs.
	Secrets []string
	// Guard refuses forbidden addresses at connect time.
	Guard *sink.Guard
	// Now is the clock for webhook-timestamp.
	Now func() time.Time
	// Conns is how many connections to the target are kept open for
	// reuse (the hook's max_in_flight: each batch in flight holds one);
	// default 4.
	Conns int
}

// Sink is the HTTP sink.
type Sink struct {
	cfg    Config
	client *http.Client
	keys   [][]byte
}

var _ sink.Sink = (*Sink)(nil)

// New checks cfg and returns the sink.
func New(cfg Config) (*Sink, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var keys [][]byte
	for _, s := range cfg.Secrets {
		k, err := sink.DecodeSecret(s)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if cfg.Conns < 4 {
		cfg.Conns = 4
	}
	d := cfg.Guard.Dialer()
	d.Timeout = cfg.Timeout
	tr := &http.Transport{
		DialContext:           d.DialContext,
		Proxy:                 nil,       // a proxy would dial for us and bypass the guard
		MaxIdleConnsPerHost:   cfg.Conns, // else every batch beyond them dials anew
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		ForceAttemptHTTP2:     true,
	}
	client := &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		// A 3xx is a failure: redirects are never followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Sink{cfg: cfg, client: client, keys: keys}, nil
}

// Sign returns the webhook-signature header value for id, ts and body:
// "v1,<base64 HMAC-SHA256(id.ts.body)>" for each key, space-separated.
func Sign(keys [][]byte, id string, ts int64, body []byte) string {
	var b strings.Builder
	for i, k := range keys {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(id))
		m.Write([]byte{'.'})
		m.Write(strconv.AppendInt(nil, ts, 10))
		m.Write([]byte{'.'})
		m.Write(body)
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	return b.String()
}

// Body is the request body of a batch: a JSON array of its messages.
func Body(msgs [][]byte) []byte {
	n := 2
	for _, m := range msgs {
		n += len(m) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m...)
	}
	return append(b, ']')
}

const maxResponse = 1 << 10

// Deliver POSTs the batch once.
func (s *Sink) Deliver(ctx context.Context, b *sink.Batch) (*sink.Report, error) {
	body := Body(b.Messages)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return nil, &sink.Error{Class: sink.ClassConnect, Err: err}
	}
	h := req.Header
	for k, v := range s.cfg.Header {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "sluice-hooks/1")
	switch s.cfg.Auth.Type {
	case "basic":
		req.SetBasicAuth(s.cfg.Auth.Username, s.cfg.Auth.Password)
	case "bearer":
		h.Set("Authorization", "Bearer "+s.cfg.Auth.Token)
	}
	ts := s.cfg.Now().Unix()
	h.Set("webhook-id", b.ID)
	h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	if len(s.keys) > 0 {
		h.Set("webhook-signature", Sign(s.keys, b.ID, ts, body))
	}
	rep := &sink.Report{Request: &sink.RequestInfo{Method: req.Method, URL: s.cfg.URL, Header: redact(h), Body: string(body)}}
	start := time.Now()
	resp, err := s.client.Do(req)
	rep.Latency = time.Since(start)
	if err != nil {
		return rep, sink.NetError(err)
	}
	defer resp.Body.Close()
	rep.Status = resp.StatusCode
	// Read what the regex needs (up to 64 KiB), keep 1 KiB for the log.
	respBody, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	rep.Response = string(respBody[:min(len(respBody), maxResponse)])
	switch {
	case resp.StatusCode == http.StatusGone:
		return rep, &sink.Error{Class: sink.ClassStatus, Gone: true, Err: fmt.Errorf("the target answered %s: it is gone", resp.Status)}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return rep, &sink.Error{Class: sink.ClassStatus, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), s.cfg.Now()),
			Err: fmt.Errorf("the target answered %s", resp.Status)}
	case s.cfg.SuccessRegex != nil && !s.cfg.SuccessRegex.Match(respBody):
		return rep, &sink.Error{Class: sink.ClassRegex, Err: fmt.Errorf("status %d but the body does not match %s", resp.StatusCode, s.cfg.SuccessRegex)}
	}
	return rep, nil
}

// Close releases idle connections.
func (s *Sink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

// redact copies h without credentials.
func redact(h http.Header) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, v := range h {
		if k == "Authorization" {
			v = []string{"[redacted]"}
		}
		out[k] = v
	}
	return out
}

// retryAfter reads Retry-After: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
