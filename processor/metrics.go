package processor

import "github.com/prometheus/client_golang/prometheus"

// metrics are the worker's Prometheus series. Labels are bounded: target,
// outcome, class, status class and reason; never a contact or event id.
type metrics struct {
	deliveries  *prometheus.CounterVec   // target, outcome
	requests    *prometheus.HistogramVec // target, status_class
	retryDelay  *prometheus.HistogramVec // target, class
	deadLetters *prometheus.CounterVec   // target, reason
	paused      *prometheus.GaugeVec     // target
	coalesced   *prometheus.CounterVec   // target
	repairs     *prometheus.CounterVec   // target, reason
	inflight    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_worker_deliveries_total",
			Help: "Events handled, by target and outcome: applied, superseded (every field older than the value at the provider), held (waiting in the worker: pause, busy contact), retry, dead_lettered, abandoned (shutdown).",
		}, []string{"target", "outcome"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "patchbay_worker_provider_request_duration_seconds",
			Help:    "Provider PATCH latency by target and HTTP status class.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"target", "status_class"}),
		retryDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "patchbay_worker_retry_delay_seconds",
			Help:    "Delay before the next delivery attempt, by target and the class of failure that caused it.",
			Buckets: []float64{0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800},
		}, []string{"target", "class"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_worker_dead_letters_total",
			Help: "Events dead-lettered, by target and reason.",
		}, []string{"target", "reason"}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "patchbay_worker_target_paused",
			Help: "1 while deliveries to a target are paused (rate limit window used up, or bad credentials).",
		}, []string{"target"}),
		coalesced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_worker_coalesced_total",
			Help: "Events merged into another event's PATCH instead of sent on their own, by target.",
		}, []string{"target"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_worker_repairs_total",
			Help: "PATCHes whose commit found a newer value of a field they had just overwritten at the provider, by target and reason: newer_clock (the newer value is sent again), no_value (its value is not stored, written by an older version: it cannot be).",
		}, []string{"target", "reason"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "patchbay_worker_inflight",
			Help: "Deliveries being handled now.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.deliveries, m.requests, m.retryDelay, m.deadLetters, m.paused, m.coalesced, m.repairs, m.inflight)
	}
	return m
}
