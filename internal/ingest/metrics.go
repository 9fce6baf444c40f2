package ingest

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/dialect"
)

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	appended *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_requests_total",
			Help: "Ingest requests by dialect, route and response status.",
		}, []string{"dialect", "route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_ingest_request_duration_seconds",
			Help:    "Ingest request latency, from the handler's start to its return (durable commit included).",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 15),
		}, []string{"dialect"}),
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_events_total",
			Help: "Events accepted at the door by dialect and project; result is stored or duplicate.",
		}, []string{"dialect", "project", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.appended)
	}
	return m
}

func (m *metrics) observe(dialect, route string, status int, d time.Duration) {
	m.requests.WithLabelValues(dialect, route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(dialect).Observe(d.Seconds())
}

func (m *metrics) events(dialectName string, projectID uint32, out []dialect.Outcome) {
	var stored, dup float64
	for _, o := range out {
		switch {
		case o.ID == 0 || o.Conflict: // an invalid item, or nothing stored
		case o.Duplicate:
			dup++
		default:
			stored++
		}
	}
	project := strconv.FormatUint(uint64(projectID), 10)
	if stored > 0 {
		m.appended.WithLabelValues(dialectName, project, "stored").Add(stored)
	}
	if dup > 0 {
		m.appended.WithLabelValues(dialectName, project, "duplicate").Add(dup)
	}
}
