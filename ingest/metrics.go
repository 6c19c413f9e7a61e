package ingest

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests *prometheus.CounterVec
	events   *prometheus.CounterVec
	rejected prometheus.Counter
	shed     prometheus.Counter
	publish  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_ingest_requests_total", Help: "Ingest HTTP requests by status code.",
		}, []string{"code"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_ingest_events_total", Help: "Events stored in JetStream, by target.",
		}, []string{"target"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchbay_ingest_rejected_total", Help: "Requests rejected as malformed, invalid or too large.",
		}),
		shed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchbay_ingest_shed_total", Help: "Requests answered 503 because too many were in flight.",
		}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "patchbay_ingest_publish_duration_seconds", Help: "Time from decoded request to JetStream acknowledgement of all its events.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.events, m.rejected, m.shed, m.publish)
	}
	return m
}
