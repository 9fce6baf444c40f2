package admin

import (
	"context"
	"math"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// SamplerConfig configures a Sampler.
type SamplerConfig struct {
	// Interval between two samples (default 2s).
	Interval time.Duration
	// Keep is how many samples are kept (default 300: ten minutes).
	Keep int
}

// Sampler reads the server's own metrics (its Prometheus registry) every
// Interval and keeps the last Keep points of the overview's charts: rates
// from the counters' increase between two samples, quantiles from the
// histogram buckets' increase, gauges as they are.
type Sampler struct {
	cfg SamplerConfig
	g   prometheus.Gatherer

	mu      sync.Mutex
	prev    map[string]*dto.Metric // by family and labels, the last sample's
	prevAt  time.Time
	samples []sample
	hooks   map[string]*HookStats
}

// sample is one point of every chart: chart → series label → value.
type sample struct {
	at     time.Time
	charts map[string]map[string]float64
}

// Charts of the overview, with their units.
var charts = []struct{ name, title, unit string }{
	{"events_by_dialect", "Events stored by dialect", "events/s"},
	{"events_by_project", "Events stored by project", "events/s"},
	{"refusals_by_status", "Refused requests by status", "requests/s"},
	{"commit_latency", "Commit latency", "ms"},
	{"hook_lag", "Hook lag", "events"},
	{"hook_failures", "Hook failed attempts", "attempts/s"},
}

// HookStats is what the metrics say of one hook now.
type HookStats struct {
	Active      bool    `json:"active"`
	LagEvents   float64 `json:"lag_events"`
	LagSeconds  float64 `json:"lag_seconds"`
	Delivered   float64 `json:"events_delivered"`
	Failures    float64 `json:"failures"`
	DeadLetters float64 `json:"dead_letters"`
}

// Overview is the answer of GET /api/v1/overview.
type Overview struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	// Times are the samples' times, Unix ms; every series has one value
	// per time (null where it had none).
	Times  []int64               `json:"times"`
	Charts []Chart               `json:"charts"`
	Hooks  map[string]*HookStats `json:"hooks"`
}

// Chart is one chart of the overview.
type Chart struct {
	Name   string   `json:"name"`
	Title  string   `json:"title"`
	Unit   string   `json:"unit"`
	Series []Series `json:"series"`
}

// Series is one line of a chart.
type Series struct {
	Label  string     `json:"label"`
	Values []*float64 `json:"values"`
}

// NewSampler returns a sampler of g; Run samples.
func NewSampler(cfg SamplerConfig, g prometheus.Gatherer) *Sampler {
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Keep <= 0 {
		cfg.Keep = 300
	}
	return &Sampler{cfg: cfg, g: g, hooks: map[string]*HookStats{}}
}

// Run samples until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	s.Sample(time.Now())
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.Sample(now)
		}
	}
}

func metricKey(family string, m *dto.Metric) string {
	k := family
	for _, l := range m.GetLabel() {
		k += "\xff" + l.GetName() + "=" + l.GetValue()
	}
	return k
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Sample takes one sample at now.
func (s *Sampler) Sample(now time.Time) {
	fams, err := s.g.Gather()
	if err != nil && len(fams) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := map[string]*dto.Metric{}
	pt := sample{at: now, charts: map[string]map[string]float64{}}
	for _, c := range charts {
		pt.charts[c.name] = map[string]float64{}
	}
	dt := now.Sub(s.prevAt).Seconds()
	first := s.prev == nil
	// increase is the counter's rise since the last sample (a reset
	// counts from zero).
	increase := func(key string, v float64) float64 {
		p, ok := s.prev[key]
		if !ok {
			return v
		}
		if d := v - p.GetCounter().GetValue(); d >= 0 {
			return d
		}
		return v
	}
	hooks := map[string]*HookStats{}
	hookOf := func(m *dto.Metric) *HookStats {
		id := label(m, "hook")
		if hooks[id] == nil {
			hooks[id] = &HookStats{}
		}
		return hooks[id]
	}
	for _, f := range fams {
		name := f.GetName()
		for _, m := range f.GetMetric() {
			key := metricKey(name, m)
			cur[key] = m
			switch name {
			case "sluice_ingest_events_total":
				if !first && label(m, "result") == "stored" {
					d := increase(key, m.GetCounter().GetValue()) / dt
					pt.charts["events_by_dialect"][label(m, "dialect")] += d
					pt.charts["events_by_project"][label(m, "project")] += d
				}
			case "sluice_ingest_requests_total":
				st, _ := strconv.Atoi(label(m, "status"))
				if st >= 400 && !first {
					pt.charts["refusals_by_status"][label(m, "status")] += increase(key, m.GetCounter().GetValue()) / dt
				}
			case "sluice_log_commit_duration_seconds":
				if !first {
					h := m.GetHistogram()
					var prev *dto.Histogram
					if p, ok := s.prev[key]; ok {
						prev = p.GetHistogram()
					}
					for q, lbl := range map[float64]string{0.5: "p50", 0.99: "p99"} {
						if v, ok := quantile(q, h, prev); ok {
							pt.charts["commit_latency"][lbl] = v * 1000
						}
					}
				}
			case "sluice_hook_lag_events":
				pt.charts["hook_lag"][label(m, "hook")] = m.GetGauge().GetValue()
				hookOf(m).LagEvents = m.GetGauge().GetValue()
			case "sluice_hook_lag_seconds":
				hookOf(m).LagSeconds = m.GetGauge().GetValue()
			case "sluice_hook_active":
				hookOf(m).Active = m.GetGauge().GetValue() == 1
			case "sluice_hook_events_delivered_total":
				hookOf(m).Delivered = m.GetCounter().GetValue()
			case "sluice_hook_dead_letters_total":
				hookOf(m).DeadLetters = m.GetCounter().GetValue()
			case "sluice_hook_failures_total":
				hookOf(m).Failures += m.GetCounter().GetValue()
				if !first {
					pt.charts["hook_failures"][label(m, "hook")] += increase(key, m.GetCounter().GetValue()) / dt
				}
			}
		}
	}
	s.prev, s.prevAt, s.hooks = cur, now, hooks
	if first {
		return
	}
	s.samples = append(s.samples, pt)
	if len(s.samples) > s.cfg.Keep {
		s.samples = s.samples[len(s.samples)-s.cfg.Keep:]
	}
}

// quantile estimates the q-quantile of the observations made between
// prev and h (prev nil: all of h), interpolating within a bucket as
// Prometheus' histogram_quantile does; false when there were none.
func quantile(q float64, h, prev *dto.Histogram) (float64, bool) {
	type bucket struct{ upper, count float64 }
	var bs []bucket
	for i, b := range h.GetBucket() {
		c := float64(b.GetCumulativeCount())
		if prev != nil && i < len(prev.GetBucket()) {
			c -= float64(prev.GetBucket()[i].GetCumulativeCount())
		}
		bs = append(bs, bucket{b.GetUpperBound(), c})
	}
	total := float64(h.GetSampleCount())
	if prev != nil {
		total -= float64(prev.GetSampleCount())
	}
	if total <= 0 || len(bs) == 0 {
		return 0, false
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			if b.count == below {
				return b.upper, true
			}
			return lower + (b.upper-lower)*(rank-below)/(b.count-below), true
		}
		lower, below = b.upper, b.count
	}
	// Past the last finite bucket: say its bound.
	return bs[len(bs)-1].upper, true
}

// Overview returns the kept samples as charts.
func (s *Sampler) Overview() Overview {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := Overview{IntervalSeconds: s.cfg.Interval.Seconds(), Times: make([]int64, len(s.samples)), Hooks: map[string]*HookStats{}}
	for i, p := range s.samples {
		o.Times[i] = p.at.UnixMilli()
	}
	for id, h := range s.hooks {
		c := *h
		o.Hooks[id] = &c
	}
	for _, c := range charts {
		ch := Chart{Name: c.name, Title: c.title, Unit: c.unit, Series: []Series{}}
		labels := map[string]bool{}
		for _, p := range s.samples {
			for l := range p.charts[c.name] {
				labels[l] = true
			}
		}
		names := make([]string, 0, len(labels))
		for l := range labels {
			names = append(names, l)
		}
		sort.Strings(names)
		for _, l := range names {
			se := Series{Label: l, Values: make([]*float64, len(s.samples))}
			for i, p := range s.samples {
				if v, ok := p.charts[c.name][l]; ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
					v := math.Round(v*1000) / 1000
					se.Values[i] = &v
				}
			}
			ch.Series = append(ch.Series, se)
		}
		o.Charts = append(o.Charts, ch)
	}
	return o
}

// overview is GET /api/v1/overview.
func (s *Server) overview(r *http.Request) (any, error) {
	if s.cfg.Overview == nil {
		return nil, errorf(http.StatusNotFound, "the overview is not served")
	}
	return s.cfg.Overview.Overview(), nil
}
