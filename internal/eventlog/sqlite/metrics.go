package sqlite

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	batch   prometheus.Histogram
	latency prometheus.Histogram
	stored  prometheus.Counter
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
			Help:    "Time to insert one group of events and commit it, fsync of the WAL included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_log_events_stored_total",
			Help: "Events committed to the event log (duplicates not included).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.batch, m.latency, m.stored)
	}
	return m
}

func (m *metrics) observeCommit(events int, d time.Duration) {
	m.batch.Observe(float64(events))
	m.latency.Observe(d.Seconds())
	m.stored.Add(float64(events))
}
