package processor_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/ratelimit"
	"github.com/patchbay/patchbay/processor/skipcall"
	"github.com/patchbay/patchbay/sandbox"
)

// startTimed runs a worker on s whose provider clients time out after
// timeout, with its metrics in a registry of its own; wrap (may be nil)
// wraps each provider.
func startTimed(t *testing.T, s *pbtest.Stack, cfg processor.Config, timeout time.Duration, wrap func(events.Target, processor.Target) processor.Provider) *observedWorker {
	t.Helper()
	targets := s.Targets(cfg, timeout)
	if wrap != nil {
		for name, tg := range targets {
			tg.Provider = wrap(name, tg)
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

// lateContact is the uuid of contact k of the late-apply tests.
func lateContact(k int) string { return fmt.Sprintf("1a7e0000-2222-4333-8444-%012d", k) }

// TestLateApplyLeavesTheNewestValue is issue 18's first situation on one
// worker: events in order, a Skipcall that applies a share of PATCHes only
// after the client gave up (the change still lands). Each contact must end
// with its newest value: after an unknown outcome nothing else is sent for
// the contact until the settle horizon has passed, then its newest values
// are sent again. Before the fix the timed-out request released the
// contact at once, the next (newer) event was applied and committed, and
// the late request then overwrote it with the older value for good.
func TestLateApplyLeavesTheNewestValue(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	const contacts, rounds = 16, 5
	const timeout, lateDelay = 400 * time.Millisecond, 900 * time.Millisecond
	for k := range contacts {
		s.Skipcall.PutContact(lateContact(k), map[string]any{"firstName": "A", "lastName": "B"})
	}
	s.Skipcall.SetFaults(sandbox.Faults{LateRate: 0.25, LateDelay: lateDelay})
	cfg := pbtest.WorkerConfig()
	cfg.LeaseTTL = 3 * time.Second // settle horizon 2 s (the default, two thirds of it): past the late delay
	cfg.MaxAttempts = 1000
	w := startTimed(t, s, cfg, timeout, nil)
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	want := map[string]string{}
	for r := range rounds {
		for k := range contacts {
			v := fmt.Sprintf("r%d", r)
			ev := skipEvent(fmt.Sprintf("late-%d-%d", k, r), lateContact(k), map[string]any{"city": v})
			ev["occurred_at"] = base.Add(time.Duration(r) * time.Second).Format(time.RFC3339Nano)
			s.PostEvent(ev)
			want[lateContact(k)] = v
		}
		// The next round while this one's PATCHes are in flight or late.
		time.Sleep(timeout / 2) // pacing the input, not synchronisation
	}
	settled := func() bool {
		if s.StreamMsgs(s.Stream.EventsStream) != 0 {
			return false
		}
		for k := range contacts {
			if s.Skipcall.InFlight(lateContact(k)) != 0 {
				return false
			}
		}
		return true
	}
	pbtest.Eventually(t, 2*time.Minute, "every event settled and no PATCH in flight at the sandbox", settled)
	stale := 0
	for c, v := range want {
		got, _ := s.Skipcall.Contact(c)
		if got["city"] != v {
			stale++
			t.Errorf("contact %s: city %v, want %s (the newest)", c, got["city"], v)
		}
	}
	late := s.Skipcall.LateApplies()
	unknown := w.metric(t, "patchbay_worker_unknown_outcomes_total", map[string]string{"target": "skipcall"})
	repairs := w.metric(t, "patchbay_worker_repairs_total", map[string]string{"target": "skipcall", "reason": "unknown_outcome"})
	t.Logf("%d contacts, %d rounds: %d stale, %d PATCHes applied late, %.0f unknown outcomes, %.0f repairs", contacts, rounds, stale, late, unknown, repairs)
	if late == 0 {
		t.Fatal("no PATCH was applied late: the test proves nothing")
	}
	if unknown < float64(late) || repairs == 0 {
		t.Errorf("%.0f unknown outcomes and %.0f repairs counted for %d late applies", unknown, repairs, late)
	}
	if ls := dlqLetters(t, s); len(ls) != 0 {
		t.Errorf("%d events dead-lettered", len(ls))
	}
	for _, o := range s.Skipcall.Overlaps() {
		t.Errorf("contact %s had %d PATCHes in flight at once: a request was sent before the settle horizon", o.Contact, o.MaxInFlight)
	}
}

// fenceLapses sends its first calls with a fence already passed but the
// context still live (as a worker resumed after SIGSTOP sees it before its
// timers fire): the budget's transport refuses to write them.
type fenceLapses struct {
	next processor.Provider
	left atomic.Int32
}

func (f *fenceLapses) Patch(ctx context.Context, ev *events.Event) (processor.Result, error) {
	if f.left.Add(-1) >= 0 {
		past := time.Now().Add(-time.Second)
		return f.next.Patch(ratelimit.WithFence(ctx, func() time.Time { return past }), ev)
	}
	return f.next.Patch(ctx, ev)
}

// TestFenceRefusalIsNotAnAttempt: a request its fence refused before
// anything was written is not an attempt. With MAX_ATTEMPTS 1 the event
// is not dead-lettered after three refusals; it is applied once a request
// goes out. Before the fix each refusal was a transient failure and
// counted: the first one dead-lettered the event.
func TestFenceRefusalIsNotAnAttempt(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "fe0ce000-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	cfg := pbtest.WorkerConfig()
	cfg.MaxAttempts = 1
	fl := &fenceLapses{}
	fl.left.Store(3)
	w := startTimed(t, s, cfg, 2*time.Second, func(target events.Target, tg processor.Target) processor.Provider {
		if target != events.TargetSkipcall {
			return tg.Provider
		}
		fl.next = tg.Provider
		return fl
	})
	s.PostEvent(skipEvent("fenced-1", uuid, map[string]any{"city": "Graz"}))
	pbtest.Eventually(t, waitFor, "applied", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["city"] == "Graz"
	})
	pbtest.Eventually(t, waitFor, "stream emptied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	if ls := dlqLetters(t, s); len(ls) != 0 {
		t.Fatalf("dead-lettered after refusals that wrote nothing: %+v", ls)
	}
	if n := s.Skipcall.PatchCount(uuid); n != 1 {
		t.Fatalf("%d PATCHes applied, want 1", n)
	}
	if r := w.deliveries(t, "skipcall", "retry"); r != 0 {
		t.Errorf("%.0f retries counted for refusals that wrote nothing", r)
	}
	if h := w.deliveries(t, "skipcall", "held"); h < 3 {
		t.Errorf("%.0f holds, want at least the 3 refusals", h)
	}
}

// dialFails sends its first calls through a client of the same budget to
// a loopback port nothing listens on: the dial is refused, nothing written.
type dialFails struct {
	next, closed processor.Provider
	left         atomic.Int32
}

func (d *dialFails) Patch(ctx context.Context, ev *events.Event) (processor.Result, error) {
	if d.left.Add(-1) >= 0 {
		return d.closed.Patch(ctx, ev)
	}
	return d.next.Patch(ctx, ev)
}

// TestDialFailureIsNotAnAttempt: a provider that cannot be reached (the
// connection refused: nothing written) does not use up the event's
// attempts; with MAX_ATTEMPTS 1 it is applied once the provider listens.
func TestDialFailureIsNotAnAttempt(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "d1a10000-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + ln.Addr().String()
	ln.Close()
	cfg := pbtest.WorkerConfig()
	cfg.MaxAttempts = 1
	df := &dialFails{}
	df.left.Store(3)
	w := startTimed(t, s, cfg, 2*time.Second, func(target events.Target, tg processor.Target) processor.Provider {
		if target != events.TargetSkipcall {
			return tg.Provider
		}
		closed, err := skipcall.New(skipcall.Config{BaseURL: closedURL, APIKey: pbtest.SkipcallKey, Timeout: 2 * time.Second},
			processor.WithBudget(nil, tg.Budget, 2*time.Second, 4), 4)
		if err != nil {
			t.Fatal(err)
		}
		df.next, df.closed = tg.Provider, closed
		return df
	})
	s.PostEvent(skipEvent("dial-1", uuid, map[string]any{"city": "Brno"}))
	pbtest.Eventually(t, waitFor, "applied", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["city"] == "Brno"
	})
	if ls := dlqLetters(t, s); len(ls) != 0 {
		t.Fatalf("dead-lettered after dials that failed: %+v", ls)
	}
	if r := w.deliveries(t, "skipcall", "retry"); r != 0 {
		t.Errorf("%.0f retries counted for dials that failed", r)
	}
	if n := df.left.Load(); n >= 0 {
		t.Fatalf("%d refused dials left: the event went out before they were used", n+1)
	}
}
