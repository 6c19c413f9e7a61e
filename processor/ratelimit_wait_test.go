package processor_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestRetryAfterOf429IsTheWait: RevyOps answers a 429 with Retry-After: 1.
// The target pauses until then (plus the reset margin, at most a second)
// and no longer: the event is sent again no earlier than the provider
// asked and well before a window of the budget's own (a minute) would
// end, and applied once without using an attempt.
func TestRetryAfterOf429IsTheWait(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	s.RevyOps.PutContact(7, map[string]any{"first_name": "Old", "last_name": "Name"})
	s.RevyOps.FailNext(1, http.StatusTooManyRequests)
	cfg := pbtest.WorkerConfig()
	cfg.MaxAttempts = 1 // a 429 that used up an attempt would dead-letter at once
	_, w := startWorkerOf(t, s, cfg)
	s.PostEvent(revEvent("ra-1", 7, map[string]any{"first_name": "Ada"}))
	// Watch the pause the worker reports until the event is applied.
	var pausedUntil time.Time
	isApplied := func() bool {
		c, _ := s.RevyOps.Contact(7)
		return c["first_name"] == "Ada"
	}
	for deadline := time.Now().Add(waitFor); !isApplied(); time.Sleep(10 * time.Millisecond) {
		for _, st := range w.States() {
			if st.Target == "revyops" && st.Until.After(pausedUntil) {
				pausedUntil = st.Until
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not applied %s after a 429 with Retry-After: 1; the target stays paused %s more", waitFor, time.Until(pausedUntil).Round(time.Second))
		}
	}
	var limited, applied time.Time
	for _, r := range s.RevyOps.Requests() {
		switch r.Status {
		case http.StatusTooManyRequests:
			limited = r.At
		case http.StatusOK:
			applied = r.At
		}
	}
	if limited.IsZero() || applied.IsZero() {
		t.Fatalf("requests %+v: want a 429 then a 200", s.RevyOps.Requests())
	}
	if gap := applied.Sub(limited); gap < time.Second {
		t.Fatalf("sent again %s after a 429 with Retry-After: 1", gap)
	}
	if d := pausedUntil.Sub(limited); d < time.Second || d > 3*time.Second {
		t.Fatalf("paused until %s after the 429, want Retry-After (1 s) plus at most the reset margin", d)
	}
	if n := s.RevyOps.PatchCount(7); n != 1 {
		t.Fatalf("%d PATCHes applied, want 1", n)
	}
	if ls := dlqLetters(t, s); len(ls) != 0 {
		t.Fatalf("a 429 dead-lettered the event: %+v", ls[0])
	}
}

// TestHoldLimitDecidesWhereRateWaitsHappen: HOLD_LIMIT is the longest wait
// for the rate limit a delivery spends in its goroutine. With 8 events for
// a budget of 3 per second, every wait is under a second: with HoldLimit
// 3 s they are waited in place and no event is ever held back in the
// queue; with HoldLimit 0 every wait puts the events back in the queue
// (a hold observed in the retry delay histogram with class rate_limit). Either way all are applied once, without a 429.
func TestHoldLimitDecidesWhereRateWaitsHappen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		holdLimit time.Duration
		wantHeld  bool
	}{
		{"waits under the limit stay in the goroutine", 3 * time.Second, false},
		{"waits over the limit go back to the queue", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := pbtest.Start(t, pbtest.Options{SkipcallRate: 3, SkipcallWindow: time.Second})
			const n = 8
			for i := range n {
				id := fmt.Sprintf("87878787-2222-4333-8444-%012d", i)
				s.Skipcall.PutContact(id, map[string]any{"firstName": "A", "lastName": "B"})
				s.PostEvent(skipEvent(fmt.Sprintf("hl-%d", i), id, map[string]any{"city": "Rome"}))
			}
			cfg := pbtest.WorkerConfig()
			cfg.HoldLimit = tc.holdLimit
			reg := startMeasuredWorker(t, s, cfg)
			pbtest.Eventually(t, time.Minute, "all applied", func() bool {
				return counter(t, reg, "patchbay_worker_deliveries_total", outcome("skipcall", "applied")) == n
			})
			// Holds for other reasons (joining the lease group at start) are
			// not counted: only those for the rate limit.
			var held uint64
			if m := metric(t, reg, "patchbay_worker_retry_delay_seconds", map[string]string{"target": "skipcall", "class": "rate_limit"}); m != nil {
				held = m.GetHistogram().GetSampleCount()
			}
			if (held > 0) != tc.wantHeld {
				t.Fatalf("HoldLimit %s: %d holds back in the queue for the rate limit", tc.holdLimit, held)
			}
			if n := s.Skipcall.StatusCounts()[http.StatusTooManyRequests]; n != 0 {
				t.Fatalf("%d answers were 429", n)
			}
		})
	}
}
