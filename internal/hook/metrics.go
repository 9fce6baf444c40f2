package hook

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	delivered, batches, retries, deadLetters, stops, filterErrors *prometheus.CounterVec
	failures                                                      *prometheus.CounterVec
	lagEvents, lagSeconds, active                                 *prometheus.GaugeVec
	latency                                                       *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	h := []string{"hook"}
	m := &metrics{
		delivered:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_hook_events_delivered_total", Help: "Events delivered (confirmed by the target), replays included."}, h),
		batches:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_hook_batches_delivered_total", Help: "Batches delivered."}, h),
		retries:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_hook_retries_total", Help: "Attempts after a failed one."}, h),
		deadLetters:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_hook_dead_letters_total", Help: "Batches parked after their last attempt failed."}, h),
		stops:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_hook_stops_total", Help: "Hooks stopped by the delivery loop (410 Gone, a streak of dead letters)."}, h),
		filterErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_hook_filter_errors_total", Help: "Events whose filter failed to evaluate (counted as no match)."}, h),
		failures:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_hook_failures_total", Help: "Failed attempts by error class (dns, connect, timeout, status, regex, blocked)."}, []string{"hook", "class"}),
		lagEvents:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_hook_lag_events", Help: "Events in the log after the hook's cursor (capped at 10000)."}, h),
		lagSeconds:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_hook_lag_seconds", Help: "Age of the oldest event after the hook's cursor."}, h),
		active:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_hook_active", Help: "1 while the hook's delivery loop runs."}, h),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sluice_hook_delivery_seconds", Help: "Duration of delivery attempts.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}, h),
	}
	if reg != nil {
		reg.MustRegister(m.delivered, m.batches, m.retries, m.deadLetters, m.stops, m.filterErrors, m.failures, m.lagEvents, m.lagSeconds, m.active, m.latency)
	}
	return m
}
