package ratelimit

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// State is a budget's shared state as this replica sees it, for /readyz
// (it marshals to the JSON detail of one target) and logs.
type State struct {
	Target string `json:"target"`
	// Budget is the first 8 hex digits of the budget's id (a hash of the
	// target and its API key): a target run with two keys has two.
	Budget string `json:"budget,omitempty"`
	// Paused is true while nothing may be sent: a rate-limit pause, or a
	// credentials pause (which also stays Paused while its probe is due).
	Paused bool `json:"paused"`
	// Kind is "rate_limit", "credentials" or "manual" (an operator's,
	// PauseTarget) for a pause, empty otherwise.
	Kind   string    `json:"kind,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	// Until is when the pause ends, or for credentials when the next probe
	// may be sent; zero for a manual pause, which lasts until a resume.
	Until time.Time `json:"until,omitzero"`
	// By names who paused the target by hand (a manual pause).
	By string `json:"by,omitempty"`
	// ConsecutiveFailures counts credential failures since the last success.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// Limit is the requests per window (the provider's once it has said).
	Limit int `json:"limit"`
	// WindowEnd is when the running shared window ends (zero: none runs).
	WindowEnd time.Time `json:"window_end,omitzero"`
}

// State returns the budget's state from local memory (no round trip).
func (b *Budget) State() State {
	now := b.now()
	s, _ := b.snapshot(now)
	st := stateOf(b.cfg.Name, b.cfg.Limit, now, s.window, s.pause)
	st.Budget = b.id[:8]
	return st
}

// stateOf is the State of a budget of target with the plan's limit and
// the shared records w and p, at now.
func stateOf(target string, limit int, now time.Time, w window, p pause) State {
	st := State{Target: target, Limit: limit}
	if w.Limit > 0 {
		st.Limit = w.Limit
	}
	if w.runs(now) {
		st.WindowEnd = time.UnixMilli(w.End)
	}
	if p.Kind != "" && (p.active(now) || p.Kind == kindCredentials) {
		st.Paused, st.Kind, st.Reason, st.By = true, p.Kind, p.Reason, p.By
		st.Since = time.UnixMilli(p.Since)
		if p.Until != 0 {
			st.Until = time.UnixMilli(p.Until)
		}
		st.ConsecutiveFailures = p.Failures
	}
	return st
}

// metrics are a budget's Prometheus collectors, labelled target=Name.
type metrics struct {
	reg       prometheus.Registerer
	takes     *prometheus.CounterVec
	paused    prometheus.GaugeFunc
	failures  prometheus.GaugeFunc
	remaining prometheus.GaugeFunc
	byHand    prometheus.GaugeFunc
	granted   prometheus.Counter // takes' series every granted slot counts in, looked up once
}

// newMetrics registers the collectors with reg (nil: not registered, the
// collectors still count).
func newMetrics(reg prometheus.Registerer, b *Budget) (*metrics, error) {
	labels := prometheus.Labels{"target": b.cfg.Name}
	m := &metrics{
		reg: reg,
		takes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_ratelimit_takes_total", ConstLabels: labels,
			Help: "Requests for a slot of the shared rate-limit window, by result (granted, probe, exhausted, clock_skew, paused).",
		}, []string{"result"}),
		paused: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "patchbay_ratelimit_paused", ConstLabels: labels,
			Help: "1 while the target is paused for every replica (rate limit, credentials, or by hand), else 0.",
		}, func() float64 {
			if b.State().Paused {
				return 1
			}
			return 0
		}),
		failures: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "patchbay_ratelimit_credential_failures", ConstLabels: labels,
			Help: "Consecutive credential failures (401/403) of the target's API key; 0 when it works.",
		}, func() float64 { return float64(b.State().ConsecutiveFailures) }),
		remaining: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "patchbay_ratelimit_pause_remaining_seconds", ConstLabels: labels,
			Help: "Seconds until the target's pause ends (or its credential probe is due); 0 when not paused.",
		}, func() float64 {
			s := b.State()
			if !s.Paused || s.Until.IsZero() {
				return 0
			}
			return max(time.Until(s.Until).Seconds(), 0)
		}),
		byHand: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "patchbay_ratelimit_paused_by_hand", ConstLabels: labels,
			Help: "1 while an operator has paused the target (patchbay targets pause), else 0.",
		}, func() float64 {
			if b.State().Kind == kindManual {
				return 1
			}
			return 0
		}),
	}
	for _, r := range []string{"granted", "probe", "exhausted", "clock_skew", "paused"} {
		m.takes.WithLabelValues(r)
	}
	m.granted = m.takes.WithLabelValues("granted")
	if reg == nil {
		return m, nil
	}
	for i, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors()[:i] {
				reg.Unregister(done)
			}
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.takes, m.paused, m.failures, m.remaining, m.byHand}
}

func (m *metrics) take(result string) {
	if result == "granted" {
		m.granted.Inc()
		return
	}
	m.takes.WithLabelValues(result).Inc()
}

func (m *metrics) unregister() {
	if m == nil || m.reg == nil {
		return
	}
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
}
