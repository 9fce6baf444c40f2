// Package bench is sluice's load generator: it drives a server over
// loopback with a fixed number of keep-alive connections and reports
// requests and events per second, latency percentiles and errors. With a
// baseline it loads, in the same process and the same way, a bare net/http
// handler that reads the same body and answers 200, so that results on a
// shared, noisy machine are compared as a ratio.
package bench

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Config describes one load run.
type Config struct {
	// URL is the server's ingest base URL.
	URL string
	// Connections is the number of concurrent keep-alive connections.
	Connections int
	// Duration of the measured part of a run (ignored when Count > 0).
	Duration time.Duration
	// Count, when > 0, sends exactly this many requests.
	Count int64
	// Warmup runs before measuring.
	Warmup time.Duration
	// Dialect selects the request: webhook, track, track-batch, s2s,
	// commerce or commerce-batch.
	Dialect string
	// Batch is the number of hits (track-batch), messages (s2s) or events
	// (commerce-batch) per request (default 100).
	Batch int
	// AppID is the s2s application id; Slug the action event type.
	AppID string
	Slug  string
	// Payload is the body; empty means the dialect's default.
	Payload []byte
	// Project and Token address and authenticate the requests.
	Project uint32
	Token   string
	// Baseline also loads a bare handler after each target run.
	Baseline bool
	// Floor also loads a floor server after each target run: FloorSQLite
	// is the bare handler plus group commit to SQLite (floor.go), its
	// database under FloorDir; FloorPostgres the same to the PostgreSQL
	// of FloorDSN (a secret: never printed).
	Floor    string
	FloorDir string
	FloorDSN string `json:"-"`
	// Rounds alternates target and baseline runs this many times.
	Rounds int
	// Rate, when > 0, paces the target's requests at this many per second
	// (an open loop over Connections connections) instead of sending as
	// fast as the answers come.
	Rate float64
	// Saturation, with Rate, also loads the target unpaced after each
	// paced run, for the ratio of their server CPU per event.
	Saturation bool
	// ServerPID, when > 0, is the target server's process: each run then
	// reports the CPU time it used (from /proc) and its CPU per event.
	ServerPID int
}

// Dialects lists what the load tool can send.
var Dialects = []string{"webhook", "track", "track-batch", "s2s", "commerce", "commerce-batch"}

// commercePurchase appends the heaviest built-in commerce event: a
// purchase-v1 with a 20-item cart (about 1.9 KB), unique by txID.
func commercePurchase(b []byte, run string, txID int64) []byte {
	b = append(b, `{"name":"Purchase","anonymousId":"bench-anon-`...)
	b = strconv.AppendInt(b, txID%1000, 10)
	b = append(b, `","properties":{"eventType":"purchase-v1","uniqueTransactionId":"`...)
	b = append(b, run...)
	b = append(b, '-')
	b = strconv.AppendInt(b, txID, 10)
	b = append(b, `","value":1234.56,"currency":"RUB","hashedEmail":"f660ab912ec121d1b1e928a0bb4bc61b15f5ad44d5efdc4e1c92a25e99b8e44a","cart":[`...)
	for i := 0; i < 20; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"productId":"sku-`...)
		b = strconv.AppendInt(b, int64(4300+i), 10)
		b = append(b, `-bg","quantity":`...)
		b = strconv.AppendInt(b, int64(i%3+1), 10)
		b = append(b, `,"itemPrice":`...)
		b = strconv.AppendInt(b, int64(10+i), 10)
		b = append(b, `.99}`...)
	}
	return append(b, "]}}"...)
}

// DefaultTrackHit is the track seed's example hit; each request gets a
// fresh version-1 hitId, so nothing is dropped as a duplicate.
//
//go:embed track_hit.json
var DefaultTrackHit []byte

// DefaultWebhookPayload is a call tracker's postback of about 500 bytes.
const DefaultWebhookPayload = `{"call_id":"c7f1b2a4-9d3e-4f5a-8b6c-1d2e3f4a5b6c","caller":"+79990000000","called":"+74950000000","duration":187,"status":"answered","campaign":"autumn-sale","utm_source":"google","utm_medium":"cpc","utm_campaign":"brand","utm_term":"buy shoes","utm_content":"ad-42","landing":"https://shop.example.com/sale?utm_source=google","manager":"Ivan Petrov","tags":["new","mobile"],"recording":"https://calls.example.com/rec/c7f1b2a4.mp3","started_at":"2026-11-23T10:15:00Z","city":"Moscow","amount":1999.5}`

// request is a prepared request shape.
type request struct {
	method  string
	url     string
	header  http.Header
	body    []byte
	events  int64 // events one request carries
	dialect string
	// fresh, when set, rewrites body in place before each request (new ids).
	fresh func(body []byte)
	// gen, when set, writes a new body into dst before each request.
	gen func(dst []byte) []byte
}

func (c *Config) build(base string) (request, error) {
	base = strings.TrimSuffix(base, "/")
	switch c.Dialect {
	case "", "webhook":
		body := c.Payload
		if len(body) == 0 {
			body = []byte(DefaultWebhookPayload)
		}
		u := fmt.Sprintf("%s/bench/event/%d", base, c.Project)
		if c.Token != "" {
			u += "?token=" + c.Token
		}
		h := http.Header{"Content-Type": {"application/json"}, "User-Agent": {"sluice-bench"}}
		return request{method: "POST", url: u, header: h, body: body, events: 1, dialect: "webhook"}, nil
	case "track", "track-batch":
		hit := c.Payload
		if len(hit) == 0 {
			hit = DefaultTrackHit
		}
		at, err := hitIDOffsets(hit)
		if err != nil {
			return request{}, err
		}
		h := http.Header{"Content-Type": {"application/json"}, "User-Agent": {"sluice-bench"}}
		if c.Token != "" {
			h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(c.Token+":")))
		}
		if c.Dialect == "track" {
			return request{method: "POST", url: base + "/track", header: h, body: hit, events: 1, dialect: c.Dialect,
				fresh: func(b []byte) { newHitID(b[at:]) }}, nil
		}
		n := c.Batch
		if n <= 0 {
			n = 100
		}
		body := []byte(`{"batch":[`)
		var offs []int
		for i := 0; i < n; i++ {
			if i > 0 {
				body = append(body, ',')
			}
			offs = append(offs, len(body)+at)
			body = append(body, hit...)
		}
		body = append(body, "]}"...)
		return request{method: "POST", url: base + "/track/batch", header: h, body: body, events: int64(n), dialect: c.Dialect,
			fresh: func(b []byte) {
				for _, o := range offs {
					newHitID(b[o:])
				}
			}}, nil
	case "s2s":
		if c.AppID == "" || c.Token == "" {
			return request{}, errors.New("s2s needs --app-id and --token (the API key)")
		}
		n := c.Batch
		if n <= 0 {
			n = 100
		}
		slug := c.Slug
		if slug == "" {
			slug = "bench"
		}
		h := http.Header{"Content-Type": {"application/json"}, "User-Agent": {"sluice-bench"},
			"X-Application-Id": {c.AppID}, "X-Api-Key": {c.Token}}
		run := strconv.FormatInt(time.Now().UnixNano(), 36)
		var seq atomic.Int64
		gen := func(dst []byte) []byte {
			first := seq.Add(int64(n)) - int64(n)
			now := strconv.AppendInt(nil, time.Now().UnixMilli(), 10)
			b := append(dst[:0], `{"customUserId":"bench-user-`...)
			// Request k speaks for person k of 1 000 (first is k·n).
			b = strconv.AppendInt(b, first/int64(n)%1000, 10)
			b = append(b, `","messages":[`...)
			for i := int64(0); i < int64(n); i++ {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"type":"action","id":"`...)
				b = append(b, run...)
				b = append(b, '-')
				b = strconv.AppendInt(b, first+i, 10)
				b = append(b, `","time":`...)
				b = append(b, now...)
				b = append(b, `,"name":"`...)
				b = append(b, slug...)
				b = append(b, `","attributes":{"order_id":"12","product_id":"20","channel":"web"}}`...)
			}
			return append(b, "]}"...)
		}
		return request{method: "POST", url: base + "/", header: h, body: gen(nil), events: int64(n), dialect: c.Dialect, gen: gen}, nil
	case "commerce", "commerce-batch":
		if c.Token == "" {
			return request{}, errors.New("commerce needs --token (a project token)")
		}
		n := 1
		if c.Dialect == "commerce-batch" {
			if n = c.Batch; n <= 0 {
				n = 100
			}
		}
		h := http.Header{"Content-Type": {"application/json"}, "User-Agent": {"sluice-bench"}, "Authorization": {"Bearer " + c.Token}}
		run := strconv.FormatInt(time.Now().UnixNano(), 36)
		var seq atomic.Int64
		gen := func(dst []byte) []byte {
			first := seq.Add(int64(n)) - int64(n)
			if c.Dialect == "commerce" {
				return commercePurchase(dst[:0], run, first)
			}
			b := append(dst[:0], `{"batch":[`...)
			for i := int64(0); i < int64(n); i++ {
				if i > 0 {
					b = append(b, ',')
				}
				b = commercePurchase(b, run, first+i)
			}
			return append(b, "]}"...)
		}
		return request{method: "POST", url: base + "/v1/events", header: h, body: gen(nil), events: int64(n), dialect: c.Dialect, gen: gen}, nil
	}
	return request{}, fmt.Errorf("dialect %q: the load tool knows %s", c.Dialect, strings.Join(Dialects, ", "))
}

// Requests returns the requests the load tool sends for cfg, for loading
// a handler in process (Go benchmarks): each call of newWorker gives one
// worker's own request maker (each request with fresh ids where the
// dialect needs them, from 127.0.0.1), and events is what each request
// carries.
func Requests(cfg Config) (newWorker func() func() *http.Request, events int, err error) {
	req, err := cfg.build("http://sluice.test")
	if err != nil {
		return nil, 0, err
	}
	return func() func() *http.Request {
		body := bytes.Clone(req.body)
		return func() *http.Request {
			switch {
			case req.fresh != nil:
				req.fresh(body)
			case req.gen != nil:
				body = req.gen(body)
			}
			r, _ := http.NewRequest(req.method, req.url, bytes.NewReader(body))
			r.Header = req.header.Clone()
			r.RemoteAddr = "127.0.0.1:40000"
			return r
		}
	}, int(req.events), nil
}

// Result is one measured run.
type Result struct {
	Name      string         `json:"name"`
	URL       string         `json:"url"`
	Requests  int64          `json:"requests"`
	Events    int64          `json:"events"`
	Errors    int64          `json:"errors"`
	Statuses  map[int]int64  `json:"statuses"`
	NetErrors map[string]int `json:"netErrors,omitempty"`
	Elapsed   time.Duration  `json:"elapsedNs"`
	RPS       float64        `json:"requestsPerSecond"`
	EPS       float64        `json:"eventsPerSecond"`
	Latency   LatencySummary `json:"latency"`
	// Rate is the pace of a paced run (requests/s), zero when unpaced.
	Rate float64 `json:"rate,omitempty"`
	// ServerCPU is the CPU time the target server used during the run,
	// and CPUPerEvent that divided by the events stored (with ServerPID).
	ServerCPU   time.Duration   `json:"serverCpuNs,omitempty"`
	CPUPerEvent time.Duration   `json:"cpuPerEventNs,omitempty"`
	hist        []time.Duration // sorted latencies
}

// LatencySummary holds percentiles.
type LatencySummary struct {
	P50 time.Duration `json:"p50Ns"`
	P90 time.Duration `json:"p90Ns"`
	P99 time.Duration `json:"p99Ns"`
	Max time.Duration `json:"maxNs"`
}

// Run loads the target (and the baseline when asked) and returns every
// measured run, in the order run.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if cfg.Connections <= 0 {
		cfg.Connections = 64
	}
	if cfg.Duration <= 0 && cfg.Count <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 1
	}
	target, err := cfg.build(cfg.URL)
	if err != nil {
		return nil, err
	}
	var baseURL string
	if cfg.Baseline {
		srv, url, err := startBaseline()
		if err != nil {
			return nil, err
		}
		defer srv.Close()
		baseURL = url
	}
	var floorURL string
	if cfg.Floor != FloorNone {
		f, err := startFloor(cfg.Floor, cfg.FloorDir, cfg.FloorDSN, int(target.events))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		floorURL = f.url
	}
	var out []Result
	for round := 0; round < cfg.Rounds; round++ {
		r, err := load(ctx, cfg, "target", target)
		if err != nil {
			return out, err
		}
		out = append(out, r)
		if cfg.Rate > 0 && cfg.Saturation {
			unpaced := cfg
			unpaced.Rate = 0
			r, err := load(ctx, unpaced, "saturation", target)
			if err != nil {
				return out, err
			}
			out = append(out, r)
		}
		if floorURL != "" {
			b, _ := cfg.build(floorURL)
			r, err := load(ctx, cfg, "floor", b)
			if err != nil {
				return out, err
			}
			out = append(out, r)
		}
		if cfg.Baseline {
			b, _ := cfg.build(baseURL)
			r, err := load(ctx, cfg, "baseline", b)
			if err != nil {
				return out, err
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// ServeBaseline serves only the bare handler on addr until ctx ends, for
// loading it with another tool (wrk, hey) in the same way as sluice.
func ServeBaseline(ctx context.Context, addr string) error {
	srv, _, err := startBaselineOn(addr)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return srv.Close()
}

// hitIDOffsets finds where the hitId's 36-character value sits in a hit.
func hitIDOffsets(hit []byte) (int, error) {
	var h struct {
		HitID string `json:"hitId"`
	}
	if err := json.Unmarshal(hit, &h); err != nil || len(h.HitID) != 36 {
		return 0, errors.New("a track payload must be a JSON hit with a hitId UUID in the 36-character form")
	}
	i := bytes.Index(hit, []byte(`"`+h.HitID+`"`))
	if i < 0 {
		return 0, errors.New("cannot find the hitId's value in the payload")
	}
	return i + 1, nil
}

// newHitID writes a fresh version-1 UUID over the first 36 bytes of b.
func newHitID(b []byte) {
	u, err := uuid.NewUUID()
	if err != nil {
		u = uuid.Must(uuid.NewRandom()) // no clock sequence: never on Linux
		u[6] = u[6]&0x0f | 0x10
	}
	copy(b[:36], u.String())
}

// startBaseline serves the bare handler: read the body, answer 200.
func startBaseline() (*http.Server, string, error) { return startBaselineOn("127.0.0.1:0") }

func startBaselineOn(addr string) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("baseline listener: %w", err)
	}
	resp := []byte(`{"key":"in.gen.bench.event","id":"0"}` + "\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(resp)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, "http://" + ln.Addr().String(), nil
}

// load runs one measured load against req.
func load(ctx context.Context, cfg Config, name string, req request) (Result, error) {
	tr := &http.Transport{
		MaxIdleConns: cfg.Connections, MaxIdleConnsPerHost: cfg.Connections, MaxConnsPerHost: cfg.Connections,
		DisableCompression: true, IdleConnTimeout: time.Minute,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	// The pace and the server's CPU are the target's only.
	rate, pid := cfg.Rate, cfg.ServerPID
	if name != "target" && name != "saturation" {
		rate, pid = 0, 0
	}
	// Warm up: open the connections and let both sides reach steady state.
	if cfg.Warmup > 0 {
		if _, err := drive(ctx, client, cfg.Connections, req, time.Now().Add(cfg.Warmup), 0, false, pace(time.Now(), rate)); err != nil {
			return Result{}, err
		}
	}
	var deadline time.Time
	if cfg.Count <= 0 {
		deadline = time.Now().Add(cfg.Duration)
	}
	var cpu0 time.Duration
	if pid > 0 {
		c, err := ProcessCPU(pid)
		if err != nil {
			return Result{}, err
		}
		cpu0 = c
	}
	start := time.Now()
	w, err := drive(ctx, client, cfg.Connections, req, deadline, cfg.Count, true, pace(start, rate))
	if err != nil {
		return Result{}, err
	}
	elapsed := time.Since(start)
	r := Result{Name: name, URL: req.url, Elapsed: elapsed, Statuses: map[int]int64{}, NetErrors: map[string]int{}, Rate: rate}
	if pid > 0 {
		c, err := ProcessCPU(pid)
		if err != nil {
			return Result{}, err
		}
		r.ServerCPU = c - cpu0
	}
	for _, wk := range w {
		r.Requests += wk.requests
		for code, n := range wk.statuses {
			r.Statuses[code] += n
			if code < 200 || code > 299 {
				r.Errors += n
			}
		}
		for e, n := range wk.netErrors {
			r.NetErrors[e] += n
			r.Errors += int64(n)
		}
		r.hist = append(r.hist, wk.latencies...)
	}
	ok := r.Requests - r.Errors
	r.Events = ok * req.events
	secs := elapsed.Seconds()
	r.RPS = float64(r.Requests) / secs
	r.EPS = float64(r.Events) / secs
	slices.Sort(r.hist)
	r.Latency = summarize(r.hist)
	if r.Events > 0 {
		r.CPUPerEvent = r.ServerCPU / time.Duration(r.Events)
	}
	return r, nil
}

type worker struct {
	requests  int64
	statuses  map[int]int64
	netErrors map[string]int
	latencies []time.Duration
}

// drive runs conns workers until deadline (or count requests in all),
// each sending its next request when the last is answered, or when at
// says (a paced load; at is nil for none).
func drive(ctx context.Context, client *http.Client, conns int, req request, deadline time.Time, count int64, record bool, at func(n int64) time.Time) ([]*worker, error) {
	var issued, paced atomic.Int64
	workers := make([]*worker, conns)
	var wg sync.WaitGroup
	for i := range workers {
		wk := &worker{statuses: map[int]int64{}, netErrors: map[string]int{}}
		workers[i] = wk
		wg.Add(1)
		go func() {
			defer wg.Done()
			rd := bytes.NewReader(nil)
			header := req.header.Clone()
			body := req.body
			if req.fresh != nil || req.gen != nil {
				body = bytes.Clone(req.body) // this worker's copy, rewritten per request
			}
			for ctx.Err() == nil {
				if count > 0 {
					if issued.Add(1) > count {
						return
					}
				} else if !time.Now().Before(deadline) {
					return
				}
				if at != nil {
					when := at(paced.Add(1) - 1)
					if !deadline.IsZero() && !when.Before(deadline) {
						return
					}
					if d := time.Until(when); d > 0 {
						select {
						case <-ctx.Done():
							return
						case <-time.After(d):
						}
					}
				}
				switch {
				case req.fresh != nil:
					req.fresh(body)
				case req.gen != nil:
					body = req.gen(body)
				}
				rd.Reset(body)
				hr, err := http.NewRequestWithContext(ctx, req.method, req.url, rd)
				if err != nil {
					wk.netErrors[err.Error()]++
					return
				}
				hr.Header = header
				hr.ContentLength = int64(len(body))
				t0 := time.Now()
				resp, err := client.Do(hr)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					wk.requests++
					wk.netErrors[classify(err)]++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				wk.requests++
				wk.statuses[resp.StatusCode]++
				if record {
					wk.latencies = append(wk.latencies, d)
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return workers, nil
}

func classify(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "connection reset"):
		return "connection reset"
	case strings.Contains(err.Error(), "EOF"):
		return "EOF"
	}
	return err.Error()
}

func summarize(sorted []time.Duration) LatencySummary {
	if len(sorted) == 0 {
		return LatencySummary{}
	}
	at := func(p float64) time.Duration {
		i := int(p*float64(len(sorted))+0.5) - 1
		return sorted[min(max(i, 0), len(sorted)-1)]
	}
	return LatencySummary{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: sorted[len(sorted)-1]}
}

// Report writes the results in text, with the target/baseline ratio.
func Report(w io.Writer, cfg Config, results []Result) {
	mode := fmt.Sprintf("%s for %s", plural(cfg.Connections, "connection"), cfg.Duration)
	if cfg.Count > 0 {
		mode = fmt.Sprintf("%s, %d requests", plural(cfg.Connections, "connection"), cfg.Count)
	}
	dialect := cfg.Dialect
	if dialect == "" {
		dialect = "webhook"
	}
	fmt.Fprintf(w, "dialect %s, %s\n", dialect, mode)
	var tEPS, bEPS, fEPS float64
	var tCPU, sCPU time.Duration
	var tN, sN int
	for _, r := range results {
		label := r.Name
		switch r.Name {
		case "baseline":
			label = "baseline (bare net/http handler, same body)"
			bEPS += r.EPS
		case "floor":
			label = "floor (" + cfg.Floor + ": the bare handler plus group commit of the body, a row per event)"
			fEPS += r.EPS
		case "saturation":
			label = "saturation (the target unpaced)"
			sCPU += r.CPUPerEvent
			sN++
		default:
			tEPS += r.EPS
			tCPU += r.CPUPerEvent
			tN++
		}
		if r.Rate > 0 {
			label += fmt.Sprintf(" (paced at %g requests/s)", r.Rate)
		}
		fmt.Fprintf(w, "%s  %s\n", label, r.URL)
		fmt.Fprintf(w, "  %10.0f events/s  %10.0f requests/s  requests %d  errors %d\n", r.EPS, r.RPS, r.Requests, r.Errors)
		if cfg.ServerPID > 0 && (r.Name == "target" || r.Name == "saturation") {
			fmt.Fprintf(w, "  server cpu %s (%.2f cores)  %s per event\n", r.ServerCPU, r.ServerCPU.Seconds()/r.Elapsed.Seconds(), r.CPUPerEvent)
		}
		fmt.Fprintf(w, "  latency p50 %s  p90 %s  p99 %s  max %s\n", round(r.Latency.P50), round(r.Latency.P90), round(r.Latency.P99), round(r.Latency.Max))
		if r.Errors > 0 {
			var parts []string
			codes := make([]int, 0, len(r.Statuses))
			for c := range r.Statuses {
				codes = append(codes, c)
			}
			sort.Ints(codes)
			for _, c := range codes {
				parts = append(parts, fmt.Sprintf("%d×%d", r.Statuses[c], c))
			}
			for e, n := range r.NetErrors {
				parts = append(parts, fmt.Sprintf("%d×%s", n, e))
			}
			fmt.Fprintf(w, "  responses: %s\n", strings.Join(parts, ", "))
		}
	}
	if bEPS > 0 {
		fmt.Fprintf(w, "ratio target/baseline: %.2f\n", tEPS/bEPS)
	}
	if fEPS > 0 {
		fmt.Fprintf(w, "ratio target/floor: %.2f\n", tEPS/fEPS)
	}
	if tN > 0 && sN > 0 && sCPU > 0 && tCPU > 0 {
		fmt.Fprintf(w, "ratio paced/saturation server cpu per event: %.2f\n", (float64(tCPU)/float64(tN))/(float64(sCPU)/float64(sN)))
	}
	if fEPS > 0 && bEPS > 0 {
		fmt.Fprintf(w, "ratio floor/baseline: %.2f\n", fEPS/bEPS)
	}
}

func plural(n int, s string) string {
	if n == 1 {
		return "1 " + s
	}
	return fmt.Sprintf("%d %ss", n, s)
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
