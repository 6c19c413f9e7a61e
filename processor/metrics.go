package processor

import "github.com/prometheus/client_golang/prometheus"

// metrics are the worker's Prometheus series. Labels are bounded: target,
// outcome, class, status class and reason; never a contact or event id.
type metrics struct {
	deliveries    *prometheus.CounterVec   // target, outcome
	requests      *prometheus.HistogramVec // target, status_class
	retryDelay    *prometheus.HistogramVec // target, class
	deadLetters   *prometheus.CounterVec   // target, reason
	paused        *prometheus.GaugeVec     // target
	enabled       *prometheus.GaugeVec     // target
	coalesced     *prometheus.CounterVec   // target
	unknown       *prometheus.CounterVec   // target
	repairs       *prometheus.CounterVec   // target, reason
	historyFailed *prometheus.CounterVec   // target
	inflight      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_worker_deliveries_total",
			Help: "Events handled, by target and outcome: applied, superseded (every field older than the value at the provider), held (waiting in the worker: pause, busy contact, a request not sent), unknown (sent, no answer read in full: held until the settle horizon, then sent again), retry, dead_lettered, abandoned (shutdown).",
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
		enabled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "patchbay_worker_target_enabled",
			Help: "1 for a target this worker delivers to, 0 for one disabled by configuration (its events stay queued in the stream).",
		}, []string{"target"}),
		coalesced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_worker_coalesced_total",
			Help: "Events merged into another event's PATCH instead of sent on their own, by target.",
		}, []string{"target"}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_worker_unknown_outcomes_total",
			Help: "Provider requests whose outcome is unknown (written, then a timeout, a reset or an answer cut off), by target: the provider may apply them late; the contact waits out the settle horizon.",
		}, []string{"target"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_worker_repairs_total",
			Help: "Provider requests sending a contact's values again, by target and reason: unknown_outcome (a request's outcome was unknown: once its settle horizon passed, the contact's newest values are sent again), newer_clock (a commit found a newer value of a field its PATCH had just overwritten at the provider: the newer value is sent again), no_value (the same, but the newer value was stored by an older version without values: it cannot be sent again).",
		}, []string{"target", "reason"}),
		historyFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_worker_history_failed_total",
			Help: "Contact history records the worker could not publish (NATS unreachable), by target: the delivery went on, its record is missing from 'patchbay contacts history'.",
		}, []string{"target"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "patchbay_worker_inflight",
			Help: "Deliveries being handled now.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.deliveries, m.requests, m.retryDelay, m.deadLetters, m.paused, m.enabled, m.coalesced, m.unknown, m.repairs, m.historyFailed, m.inflight)
	}
	return m
}
