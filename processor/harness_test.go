package processor_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
)

// observedWorker is a worker started by startObserved: its metrics are in
// reg, and Stop returns once Run has.
type observedWorker struct {
	reg     *prometheus.Registry
	targets map[events.Target]processor.Target
	cancel  context.CancelFunc
	done    chan error
}

// startObserved runs a worker on s like pbtest's StartWorker, with its
// metrics registered in a registry of its own, and each provider passed
// through wrap when wrap is not nil.
func startObserved(t *testing.T, s *pbtest.Stack, cfg processor.Config, wrap func(events.Target, processor.Provider) processor.Provider) *observedWorker {
	t.Helper()
	targets := s.Targets(cfg, 2*time.Second)
	if wrap != nil {
		for name, tg := range targets {
			tg.Provider = wrap(name, tg.Provider)
			targets[name] = tg
		}
	}
	reg := prometheus.NewRegistry()
	w, err := processor.New(cfg, processor.Deps{JS: s.JS, Conn: s.NC, Stream: s.Stream, Targets: targets, Logger: s.Log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ow := &observedWorker{reg: reg, targets: targets, cancel: cancel, done: make(chan error, 1)}
	go func() { ow.done <- w.Run(ctx) }()
	t.Cleanup(func() { _ = ow.Stop() })
	return ow
}

// Stop cancels the worker and waits for Run to return; it may be called
// more than once.
func (w *observedWorker) Stop() error {
	w.cancel()
	err, ok := <-w.done
	if ok {
		close(w.done)
	}
	return err
}

// metric returns the value of the counter or gauge name with labels (0 if
// the series does not exist yet).
func (w *observedWorker) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := w.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// deliveries returns the worker's deliveries counter of target and outcome.
func (w *observedWorker) deliveries(t *testing.T, target, outcome string) float64 {
	t.Helper()
	return w.metric(t, "patchbay_worker_deliveries_total", map[string]string{"target": target, "outcome": outcome})
}

// paused returns the worker's paused gauge of target.
func (w *observedWorker) paused(t *testing.T, target string) float64 {
	t.Helper()
	return w.metric(t, "patchbay_worker_target_paused", map[string]string{"target": target})
}

// consumerInfo returns the info of target's durable consumer.
func consumerInfo(t *testing.T, s *pbtest.Stack, target string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := s.JS.Consumer(ctx, s.Stream.EventsStream, s.Stream.TargetConsumer(target))
	if err != nil {
		t.Fatalf("consumer of %s: %v", target, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer of %s: %v", target, err)
	}
	return info
}

// countMsgs counts the messages published on subject from now on (the
// subscription is in place at the server when it returns), until the test
// ends.
func countMsgs(t *testing.T, s *pbtest.Stack, subject string) *atomic.Int64 {
	t.Helper()
	n := new(atomic.Int64)
	sub, err := s.NC.Subscribe(subject, func(*nats.Msg) { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := s.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	return n
}
