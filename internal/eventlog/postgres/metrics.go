package postgres

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the SQLite log's, under the same names: a dashboard of the
// log reads either backend.
type metrics struct {
	batch   prometheus.Histogram
	latency prometheus.Histogram
	stored  prometheus.Counter
	failed  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_log_commit_batch_events",
			Help:    "Events stored by one commit of the event log (group commit size).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_log_commit_duration_seconds",
			Help:    "Time to insert one group of events and commit it, the wait for the log's lock and PostgreSQL's WAL flush included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_log_events_stored_total",
			Help: "Events committed to the event log (duplicates not included).",
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_log_append_failures_total",
			Help: "Appends to the event log that failed, nothing stored, by reason: unavailable (PostgreSQL unreachable, shutting down or read-only), disk_full, io (an I/O error), closed (stopping) or other.",
		}, []string{"reason"}),
	}
	for _, r := range []string{reasonUnavailable, reasonDiskFull, reasonIO, reasonClosed, reasonOther} {
		m.failed.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.batch, m.latency, m.stored, m.failed)
	}
	return m
}

func (m *metrics) appendFailed(reason string) { m.failed.WithLabelValues(reason).Inc() }

func (m *metrics) observeCommit(events int, d time.Duration) {
	m.batch.Observe(float64(events))
	m.latency.Observe(d.Seconds())
	m.stored.Add(float64(events))
}
