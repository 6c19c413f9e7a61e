package processor_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/sandbox"
)

// startMeasuredWorker runs a worker of s with cfg whose metrics go to a
// registry of its own, until the test ends.
func startMeasuredWorker(t *testing.T, s *pbtest.Stack, cfg processor.Config) *prometheus.Registry {
	reg, _ := startWorkerOf(t, s, cfg)
	return reg
}

// startWorkerOf is startMeasuredWorker that also returns the worker.
func startWorkerOf(t *testing.T, s *pbtest.Stack, cfg processor.Config) (*prometheus.Registry, *processor.Worker) {
	t.Helper()
	reg := prometheus.NewRegistry()
	w, err := processor.New(cfg, processor.Deps{JS: s.JS, Conn: s.NC, Stream: s.Stream, Targets: s.Targets(cfg, 2*time.Second), Logger: s.Log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return reg, w
}

// metric returns the series of family name whose labels include labels,
// or nil.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

// counter returns the value of a counter series (0 when it does not exist).
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	if m := metric(t, reg, name, labels); m != nil {
		return m.GetCounter().GetValue()
	}
	return 0
}

func outcome(target, o string) map[string]string {
	return map[string]string{"target": target, "outcome": o}
}

// TestMetricsOfACoalescedBacklog: a backlog of one contact is merged into
// few PATCHes; every event is counted applied once, and the events merged
// into another's PATCH are counted in patchbay_worker_coalesced_total:
// events minus PATCHes.
func TestMetricsOfACoalescedBacklog(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "cdcdcdcd-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.SetFaults(sandbox.Faults{Latency: 300 * time.Millisecond})
	reg := startMeasuredWorker(t, s, pbtest.WorkerConfig())
	const n = 8
	for i := range n {
		s.PostEvent(skipEvent("mco-"+strconv.Itoa(i), uuid, map[string]any{"customFields": map[string]string{"k" + strconv.Itoa(i): "v"}}))
	}
	pbtest.Eventually(t, waitFor, "every event settled", func() bool {
		return counter(t, reg, "patchbay_worker_deliveries_total", outcome("skipcall", "applied")) == n
	})
	patches := s.Skipcall.PatchCount(uuid)
	if patches >= n {
		t.Fatalf("%d PATCHes for %d events of one contact behind a slow provider: nothing was coalesced", patches, n)
	}
	if got := counter(t, reg, "patchbay_worker_coalesced_total", map[string]string{"target": "skipcall"}); got != float64(n-patches) {
		t.Fatalf("coalesced_total %v, want %d events - %d PATCHes", got, n, patches)
	}
	if got := counter(t, reg, "patchbay_worker_deliveries_total", outcome("skipcall", "superseded")); got != 0 {
		t.Fatalf("superseded %v, want 0: every event set a field of its own", got)
	}
}

// TestMetricsOfRetriesAndDeadLetters: two 500s then a 200 count two
// retries and one applied, with two transient retry delays that follow the
// backoff (the second about twice the first); an event that always fails
// counts MaxAttempts-1 retries, one dead letter with reason retries_exhausted, and
// no application. Each PATCH is timed under its status class, and the
// attempt counts of both are deleted once they settle.
func TestMetricsOfRetriesAndDeadLetters(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	ok := "dededede-2222-4333-8444-555555555555"
	bad := "dfdfdfdf-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(ok, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.PutContact(bad, map[string]any{"firstName": "A", "lastName": "B"})
	cfg := pbtest.WorkerConfig()
	cfg.BackoffInitial, cfg.BackoffMax = 100*time.Millisecond, 10*time.Second
	reg := startMeasuredWorker(t, s, cfg)

	s.Skipcall.FailNext(2, http.StatusInternalServerError)
	s.PostEvent(skipEvent("mretry-1", ok, map[string]any{"role": "CTO"}))
	pbtest.Eventually(t, waitFor, "applied after two retries", func() bool {
		return counter(t, reg, "patchbay_worker_deliveries_total", outcome("skipcall", "applied")) == 1
	})
	if got := counter(t, reg, "patchbay_worker_deliveries_total", outcome("skipcall", "retry")); got != 2 {
		t.Fatalf("retries counted %v, want 2", got)
	}
	h := metric(t, reg, "patchbay_worker_retry_delay_seconds", map[string]string{"target": "skipcall", "class": "transient"})
	if h == nil || h.GetHistogram().GetSampleCount() != 2 {
		t.Fatalf("transient retry delays: %v, want 2 samples", h)
	}
	// Attempt 1 waits 100 ms ± 30 %, attempt 2 200 ms ± 30 %.
	if sum := h.GetHistogram().GetSampleSum(); sum < 0.07+0.14 || sum > 0.13+0.26 {
		t.Fatalf("the two retry delays add up to %.3f s, want 0.21..0.39 s (100 ms then 200 ms, ±30 %%)", sum)
	}

	s.Skipcall.FailNext(-1, http.StatusInternalServerError)
	s.PostEvent(skipEvent("mretry-2", bad, map[string]any{"role": "CTO"}))
	pbtest.Eventually(t, waitFor, "dead-lettered", func() bool {
		return counter(t, reg, "patchbay_worker_dead_letters_total", map[string]string{"target": "skipcall", "reason": string(dlq.ReasonExhausted)}) == 1
	})
	if got := counter(t, reg, "patchbay_worker_deliveries_total", outcome("skipcall", "dead_lettered")); got != 1 {
		t.Fatalf("dead_lettered counted %v, want 1", got)
	}
	if got := counter(t, reg, "patchbay_worker_deliveries_total", outcome("skipcall", "retry")); got != 2+float64(cfg.MaxAttempts-1) {
		t.Fatalf("retries counted %v, want 2 + %d", got, cfg.MaxAttempts-1)
	}
	if got := counter(t, reg, "patchbay_worker_deliveries_total", outcome("skipcall", "applied")); got != 1 {
		t.Fatalf("applied counted %v, want 1", got)
	}
	// Both events have settled, so their attempt counts are forgotten: the
	// bucket does not grow with every event that was ever retried.
	kv, err := s.JS.KeyValue(context.Background(), s.Stream.KVBucket("ATTEMPTS"))
	if err != nil {
		t.Fatal(err)
	}
	pbtest.Eventually(t, waitFor, "attempt counts of settled events forgotten", func() bool {
		lister, err := kv.ListKeys(context.Background())
		if err != nil {
			return false
		}
		n := 0
		for range lister.Keys() {
			n++
		}
		return n == 0
	})
	// Every PATCH is timed under its status class: 2 + MaxAttempts 500s, one 200.
	for class, want := range map[string]uint64{"5xx": 2 + uint64(cfg.MaxAttempts), "2xx": 1} {
		m := metric(t, reg, "patchbay_worker_provider_request_duration_seconds", map[string]string{"target": "skipcall", "status_class": class})
		if m == nil || m.GetHistogram().GetSampleCount() != want {
			t.Fatalf("provider requests timed as %s: %v, want %d", class, m, want)
		}
	}
}

// TestPausedGaugeFollowsThePause: patchbay_worker_target_paused is 1 while
// a refused key pauses the target and back to 0 once the key works and
// the event is applied; the other target is never paused. Meanwhile the
// worker's States (served to operators) say why, with the provider's
// answer.
func TestPausedGaugeFollowsThePause(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "efefefef-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.SetKeyStatus(pbtest.SkipcallKey, http.StatusUnauthorized, "UNAUTHORIZED")
	reg, w := startWorkerOf(t, s, pbtest.WorkerConfig())
	gauge := func(target string) float64 {
		if m := metric(t, reg, "patchbay_worker_target_paused", map[string]string{"target": target}); m != nil {
			return m.GetGauge().GetValue()
		}
		return -1
	}
	s.PostEvent(skipEvent("mpause-1", uuid, map[string]any{"city": "Oslo"}))
	pbtest.Eventually(t, waitFor, "skipcall shown paused", func() bool { return gauge("skipcall") == 1 })
	if g := gauge("revyops"); g != 0 {
		t.Fatalf("revyops paused gauge %v while only skipcall's key is refused", g)
	}
	for _, st := range w.States() {
		switch st.Target {
		case "skipcall":
			if !st.Paused || st.Kind != "credentials" || !strings.Contains(st.Reason, "HTTP 401 UNAUTHORIZED") {
				t.Fatalf("skipcall state %+v, want a credentials pause whose reason names HTTP 401 UNAUTHORIZED", st)
			}
		case "revyops":
			if st.Paused {
				t.Fatalf("revyops state %+v while only skipcall's key is refused", st)
			}
		}
	}
	s.Skipcall.SetKeyStatus(pbtest.SkipcallKey, 0, "")
	pbtest.Eventually(t, waitFor, "applied once the key works", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["city"] == "Oslo"
	})
	pbtest.Eventually(t, waitFor, "skipcall shown not paused", func() bool { return gauge("skipcall") == 0 })
	if got := counter(t, reg, "patchbay_worker_deliveries_total", outcome("skipcall", "held")); got < 1 {
		t.Fatalf("held counted %v while the target was paused, want at least 1", got)
	}
}
