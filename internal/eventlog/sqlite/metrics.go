package sqlite

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	batch   prometheus.Histogram
	latency prometheus.Histogram
	sync    prometheus.Histogram
	stored  prometheus.Counter
	failed  *prometheus.CounterVec
	// walRestarts counts the WAL restarts a commit forced (boundWAL).
	walRestarts prometheus.Counter
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
			Help:    "Time to insert one group of events, commit it and sync the WAL (the sync alone: sluice_log_sync_duration_seconds).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		sync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sluice_log_sync_duration_seconds",
			Help:    "Time of one fdatasync of the event log's WAL, which makes every group committed before it durable; the next group commits meanwhile.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_log_events_stored_total",
			Help: "Events committed to the event log (duplicates not included).",
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_log_append_failures_total",
			Help: "Appends to the event log that failed, nothing stored, by reason: disk_full, io (an I/O error), closed (stopping) or other.",
		}, []string{"reason"}),
	}
	m.walRestarts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_log_wal_restarts_total",
		Help: "Times a commit waited for readers to start the event log's WAL over, because it had grown past its bound.",
	})
	for _, r := range []string{reasonDiskFull, reasonIO, reasonClosed, reasonOther} {
		m.failed.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.batch, m.latency, m.sync, m.stored, m.failed, m.walRestarts)
	}
	return m
}

func (m *metrics) appendFailed(reason string) { m.failed.WithLabelValues(reason).Inc() }

func (m *metrics) observeCommit(events int) {
	m.batch.Observe(float64(events))
	m.stored.Add(float64(events))
}
