// Package ga4sink sends hook batches to Google Analytics 4 through the
// Measurement Protocol: each event mapped to a GA4 event (mapping.go), the
// events of one user (client id, user id, user properties, time) in one
// request of at most 25 events. The protocol's limits are checked for the
// whole batch before anything is sent (protocol.go): Google's collect
// endpoint accepts whatever it then drops, so a batch with an event that
// breaks one is refused whole, with the reason, and parked at once. The
// pre-test goes to the validation endpoint and reports its messages.
package ga4sink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/sink"
)

// Config is where and how to send.
type Config struct {
	CollectURL, ValidationURL string
	MeasurementID, APISecret  string
	// UserProperties are the custom fields sent as user properties.
	UserProperties []string
	Timeout        time.Duration
	Guard          *sink.Guard
	Now            func() time.Time
}

// Sink sends to one GA4 stream.
type Sink struct {
	cfg       Config
	client    *http.Client
	userProps map[string]bool

	// sent are the requests of batches not yet wholly delivered that the
	// collector took: an attempt after a partial failure sends only the
	// others (within this process; after a restart, all again).
	mu   sync.Mutex
	sent map[string]map[string]bool // batch id → request body hash
}

var _ sink.Sink = (*Sink)(nil)

// New makes the sink; it does not connect.
func New(cfg Config) (*Sink, error) {
	if cfg.CollectURL == "" || cfg.MeasurementID == "" {
		return nil, errors.New("google analytics: a collect URL and a measurement id are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	d := cfg.Guard.Dialer()
	d.Timeout = cfg.Timeout
	client := &http.Client{
		Transport: &http.Transport{DialContext: d.DialContext, Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second,
			TLSHandshakeTimeout: cfg.Timeout, ResponseHeaderTimeout: cfg.Timeout, ForceAttemptHTTP2: true},
		Timeout:       cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	up := map[string]bool{}
	for _, n := range cfg.UserProperties {
		up[n] = true
	}
	return &Sink{cfg: cfg, client: client, userProps: up, sent: map[string]map[string]bool{}}, nil
}

// request is one Measurement Protocol request.
type request struct {
	body   []byte
	events []*gaEvent
}

// Requests maps a batch to the bodies it sends, or says why it cannot be
// sent (for the tests and the pre-test).
func (s *Sink) requests(b *sink.Batch) ([]request, error) {
	now := s.cfg.Now().UnixMilli()
	var evs []*gaEvent
	var problems []string
	for i, msg := range b.Messages {
		ev := mapEvent(msg, b.MetaAt(i), s.userProps)
		for _, p := range ev.problems(now) {
			problems = append(problems, fmt.Sprintf("event %s (%s): %s", ev.eventID, ev.name, p))
		}
		evs = append(evs, ev)
	}
	if len(problems) > 0 {
		return nil, invalid(problems)
	}
	// One request per user and time, in the order of their first events.
	type group struct {
		key string
		evs []*gaEvent
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, ev := range evs {
		k := requestKey(ev)
		g := byKey[k]
		if g == nil {
			g = &group{key: k}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.evs = append(g.evs, ev)
	}
	var out []request
	for _, g := range groups {
		for start := 0; start < len(g.evs); start += MaxEventsPerRequest {
			rs, err := split(g.evs[start:min(start+MaxEventsPerRequest, len(g.evs))], now)
			if err != nil {
				return nil, err
			}
			out = append(out, rs...)
		}
	}
	return out, nil
}

// split encodes evs as requests within the body limit.
func split(evs []*gaEvent, nowMs int64) ([]request, error) {
	body := encode(evs, nowMs)
	if len(body) <= MaxBodyBytes {
		return []request{{body: body, events: evs}}, nil
	}
	if len(evs) == 1 {
		return nil, invalid([]string{fmt.Sprintf("event %s (%s): its request is %d bytes; GA4 takes at most %d", evs[0].eventID, evs[0].name, len(body), MaxBodyBytes)})
	}
	a, err := split(evs[:len(evs)/2], nowMs)
	if err != nil {
		return nil, err
	}
	b, err := split(evs[len(evs)/2:], nowMs)
	return append(a, b...), err
}

func requestKey(ev *gaEvent) string {
	k := appendParams([]byte(ev.clientID+"\x00"+ev.userID+"\x00"+strconv.FormatInt(ev.timeMs, 10)+"\x00"), ev.userProps)
	return string(k)
}

// encode writes the request body of evs (one user, one time).
func encode(evs []*gaEvent, nowMs int64) []byte {
	first := evs[0]
	b := []byte(`{"client_id":`)
	b = appendJSONString(b, first.clientID)
	if first.userID != "" {
		b = append(b, `,"user_id":`...)
		b = appendJSONString(b, first.userID)
	}
	// A time in the future (a sender's clock) is left to GA4: now.
	if first.timeMs > 0 && first.timeMs <= nowMs {
		b = append(b, `,"timestamp_micros":`...)
		b = strconv.AppendInt(b, first.timeMs*1000, 10)
	}
	if len(first.userProps) > 0 {
		b = append(b, `,"user_properties":{`...)
		for i, p := range first.userProps {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, p.name)
			b = append(b, `:{"value":`...)
			if p.isNum {
				b = append(b, p.num...)
			} else {
				b = appendJSONString(b, p.str)
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	b = append(b, `,"events":[`...)
	for i, ev := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendJSONString(b, ev.name)
		b = append(b, `,"params":`...)
		b = appendParams(b, ev.params)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

func invalid(problems []string) error {
	msg := strings.Join(problems[:min(len(problems), 10)], "; ")
	if len(problems) > 10 {
		msg += fmt.Sprintf("; and %d more", len(problems)-10)
	}
	return &sink.Error{Class: sink.ClassInvalid, Permanent: true, Err: errors.New("GA4 cannot take the batch: " + msg)}
}

// Deliver sends every request of b (those a previous attempt did not) or,
// for a pre-test, sends them to the validation endpoint.
func (s *Sink) Deliver(ctx context.Context, b *sink.Batch) (*sink.Report, error) {
	rep := &sink.Report{}
	reqs, err := s.requests(b)
	if err != nil {
		rep.Response = err.Error()
		return rep, err
	}
	start := time.Now()
	defer func() { rep.Latency = time.Since(start) }()
	if b.Test {
		return s.validate(ctx, reqs, rep)
	}
	sent := 0
	for _, r := range reqs {
		h := sha256.Sum256(r.body)
		hash := hex.EncodeToString(h[:])
		if s.wasSent(b.ID, hash) {
			continue
		}
		if rep.Request == nil {
			rep.Request = s.info(s.cfg.CollectURL, r.body)
		}
		status, _, err := s.post(ctx, s.cfg.CollectURL, r.body, rep)
		rep.Status = status
		if err != nil {
			return rep, err
		}
		s.markSent(b.ID, hash)
		sent++
	}
	s.forget(b.ID)
	rep.Response = fmt.Sprintf("%d events in %d requests", len(b.Messages), len(reqs))
	if sent < len(reqs) {
		rep.Response += fmt.Sprintf(" (%d sent before)", len(reqs)-sent)
	}
	return rep, nil
}

// validate sends the requests to the validation endpoint: its messages
// fail the pre-test.
func (s *Sink) validate(ctx context.Context, reqs []request, rep *sink.Report) (*sink.Report, error) {
	var msgs []string
	var answers []string
	for _, r := range reqs {
		if rep.Request == nil {
			rep.Request = s.info(s.cfg.ValidationURL, r.body)
		}
		status, body, err := s.post(ctx, s.cfg.ValidationURL, r.body, rep)
		rep.Status = status
		if err != nil {
			return rep, err
		}
		answers = append(answers, strings.TrimSpace(string(body)))
		var v struct {
			ValidationMessages []struct {
				FieldPath      string `json:"fieldPath"`
				Description    string `json:"description"`
				ValidationCode string `json:"validationCode"`
			} `json:"validationMessages"`
		}
		if json.Unmarshal(body, &v) == nil {
			for _, m := range v.ValidationMessages {
				msgs = append(msgs, fmt.Sprintf("%s: %s (%s)", m.FieldPath, m.Description, m.ValidationCode))
			}
		}
	}
	rep.Response = strings.Join(answers, "\n")
	if len(rep.Response) > 1<<10 {
		rep.Response = rep.Response[:1<<10]
	}
	if len(msgs) > 0 {
		return rep, &sink.Error{Class: sink.ClassInvalid, Err: errors.New("GA4 validation: " + strings.Join(msgs, "; "))}
	}
	return rep, nil
}

// post sends one body; the answer's start is kept for the report.
func (s *Sink) post(ctx context.Context, endpoint string, body []byte, rep *sink.Report) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.withCredentials(endpoint), bytes.NewReader(body))
	if err != nil {
		return 0, nil, &sink.Error{Class: sink.ClassConnect, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sluice-hooks/1")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, sink.NetError(redactErr(err, s.cfg.APISecret))
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	rep.Response = string(answer[:min(len(answer), 1<<10)])
	switch {
	case resp.StatusCode == http.StatusGone:
		return resp.StatusCode, answer, &sink.Error{Class: sink.ClassStatus, Gone: true, Err: fmt.Errorf("the collector answered %s: it is gone", resp.Status)}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return resp.StatusCode, answer, &sink.Error{Class: sink.ClassStatus, RetryAfter: retryAfter(resp.Header.Get("Retry-After")),
			Err: fmt.Errorf("the collector answered %s", resp.Status)}
	}
	return resp.StatusCode, answer, nil
}

// withCredentials adds measurement_id and api_secret to the endpoint's
// query: the protocol takes them there.
func (s *Sink) withCredentials(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return endpoint
	}
	q := u.Query()
	q.Set("measurement_id", s.cfg.MeasurementID)
	q.Set("api_secret", s.cfg.APISecret)
	u.RawQuery = q.Encode()
	return u.String()
}

// info is the request as the attempt log and the pre-test show it: the
// API secret redacted.
func (s *Sink) info(endpoint string, body []byte) *sink.RequestInfo {
	u, _ := url.Parse(endpoint)
	q := u.Query()
	q.Set("measurement_id", s.cfg.MeasurementID)
	q.Set("api_secret", "[redacted]")
	u.RawQuery = q.Encode()
	return &sink.RequestInfo{Method: http.MethodPost, URL: u.String(), Header: map[string][]string{"Content-Type": {"application/json"}}, Body: string(body)}
}

// redactErr keeps the API secret out of an error (a URL error names the
// URL).
func redactErr(err error, secret string) error {
	if secret == "" || !strings.Contains(err.Error(), url.QueryEscape(secret)) && !strings.Contains(err.Error(), secret) {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: strings.ReplaceAll(strings.ReplaceAll(ue.URL, url.QueryEscape(secret), "[redacted]"), secret, "[redacted]"), Err: ue.Err}
	}
	return errors.New(strings.ReplaceAll(err.Error(), secret, "[redacted]"))
}

func retryAfter(v string) time.Duration {
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	return 0
}

// maxRemembered bounds the batches whose sent requests are remembered.
const maxRemembered = 10000

func (s *Sink) wasSent(batch, hash string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent[batch][hash]
}

func (s *Sink) markSent(batch, hash string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sent[batch] == nil {
		if len(s.sent) >= maxRemembered {
			s.sent = map[string]map[string]bool{}
		}
		s.sent[batch] = map[string]bool{}
	}
	s.sent[batch][hash] = true
}

func (s *Sink) forget(batch string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sent, batch)
}

// Close releases idle connections.
func (s *Sink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}
