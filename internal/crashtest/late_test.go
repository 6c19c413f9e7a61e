package crashtest

// Process-level test of issue 18's first situation: a provider that applies
// a share of PATCHes only after the worker gave up on them.

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/patchbay/patchbay/sandbox"
)

// Late-apply scenario timing: the worker gives up after lateTimeout, the
// sandbox applies a late PATCH lateDelay after it arrived, and the settle
// horizon (from the request's start) is past both, within two thirds of
// the lease TTL.
const (
	lateTimeout  = time.Second
	lateDelay    = 2 * time.Second
	lateHorizon  = 3 * time.Second
	lateLeaseTTL = 6 * time.Second
	lateShare    = 0.05
)

// TestLateApplyLeavesNoStaleContact: one and three worker processes, events
// in shuffled occurred_at order with 10% duplicates, a Skipcall sandbox that
// applies 5% of PATCHes late (after the worker's timeout; the change lands
// all the same). Every contact must end with the per-field last writer's
// values, once no PATCH is in flight at the sandbox any more (a late one
// included): an unknown outcome keeps the contact's lease and events until
// the settle horizon has passed, then sends the newest values again.
func TestLateApplyLeavesNoStaleContact(t *testing.T) {
	for _, workers := range []int{1, 3} {
		t.Run(strconv.Itoa(workers)+"workers", func(t *testing.T) {
			r := newRig(t)
			contacts, n := size(50, 200), size(400, 2000)
			r.sk.SetFaults(sandbox.Faults{LateRate: lateShare, LateDelay: lateDelay})
			h := generate(rand.New(rand.NewPCG(18, uint64(workers))), "lt", contacts, n, 0.1, true)
			r.startIngest(nil)
			o := newObserver(r)
			ws := startWorkers(r, workers, map[string]string{
				"PATCHBAY_SKIPCALL_TIMEOUT":         lateTimeout.String(),
				"PATCHBAY_SKIPCALL_SETTLE_HORIZON":  lateHorizon.String(),
				"PATCHBAY_WORKER_LEASE_TTL":         lateLeaseTTL.String(),
				"PATCHBAY_WORKER_MAX_ATTEMPTS":      "1000",
				"PATCHBAY_SKIPCALL_RATE_PER_MINUTE": "0",
			})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			p := &rpPoster{r: r}
			start := time.Now()
			p.postAll(ctx, h.posts, 8)
			took := settle(t, o, r.sk, h, 2*time.Minute)
			// A late PATCH may still be held at the sandbox: the state is
			// judged once none is in flight.
			waitUntil(t, lateDelay+30*time.Second, "no PATCH in flight at the sandbox", func() bool {
				for c := range h.want {
					if r.sk.InFlight(c) != 0 {
						return false
					}
				}
				return true
			})
			stale := mismatches(t, r.sk, h, true)
			staleContacts := 0
			for c := range h.want {
				one := &rpHistory{want: map[string]map[string]string{c: h.want[c]}, clocks: h.clocks}
				if mismatches(t, r.sk, one, false) > 0 {
					staleContacts++
				}
			}
			var unknown, repairs float64
			for _, w := range ws {
				u, _ := w.metric(`patchbay_worker_unknown_outcomes_total{target="skipcall"}`)
				rp, _ := w.metric(`patchbay_worker_repairs_total{reason="unknown_outcome",target="skipcall"}`)
				unknown, repairs = unknown+u, repairs+rp
			}
			late := r.sk.LateApplies()
			overlaps := r.sk.Overlaps()
			t.Logf("%d worker(s), %d events (%d posts) to %d contacts, %.0f%% of PATCHes applied %s late (timeout %s, settle horizon %s): contacts right %d/%d, stale fields %d, late applies %d, unknown outcomes %.0f, repairs %.0f, contacts with overlapping PATCHes %d; settled in %s (%s after the last post)",
				workers, n, len(h.posts), contacts, 100*lateShare, lateDelay, lateTimeout, lateHorizon, len(h.want)-staleContacts, len(h.want), stale, late, unknown, repairs, len(overlaps),
				time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
			if late == 0 {
				t.Fatal("no PATCH was applied late: the scenario proves nothing")
			}
			if stale > 0 {
				t.Errorf("%d fields of %d contacts ended with an older value", stale, staleContacts)
			}
			if len(overlaps) > 0 {
				t.Errorf("%d contacts had two PATCHes in flight at once (a request sent within the settle horizon), e.g. %+v", len(overlaps), overlaps[0])
			}
			if n := o.msgs(rpDLQ); n != 0 {
				t.Errorf("%d events dead-lettered", n)
			}
			for _, w := range ws {
				if w.p.Exited() {
					t.Errorf("a worker exited:\n%s", w.p.Output())
				}
			}
		})
	}
}
