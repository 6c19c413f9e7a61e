package processor_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
)

// TestSoloWorkerTakesNoContactLeases: by default a lone worker delivers
// every event without writing a single per-contact lease; with
// Config.AlwaysLease, every delivery writes one.
func TestSoloWorkerTakesNoContactLeases(t *testing.T) {
	t.Parallel()
	for _, solo := range []bool{true, false} {
		t.Run(fmt.Sprintf("solo=%v", solo), func(t *testing.T) {
			t.Parallel()
			s := pbtest.Start(t, pbtest.Options{})
			writes := countMsgs(t, s, "$KV."+s.Stream.KVBucket("LEASES")+".skipcall.>")
			cfg := pbtest.WorkerConfig()
			cfg.AlwaysLease = !solo
			s.StartWorker(cfg)
			const n = 20
			for i := range n {
				uuid := fmt.Sprintf("f0f0f0f0-2222-4333-8444-%012d", i)
				s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
				s.PostEvent(skipEvent(fmt.Sprintf("solo-%d", i), uuid, map[string]any{"city": "Oslo"}))
			}
			pbtest.Eventually(t, waitFor, "every event applied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
			if err := s.NC.Flush(); err != nil {
				t.Fatal(err)
			}
			got := writes.Load()
			switch {
			case solo && got != 0:
				t.Fatalf("a lone solo worker wrote %d per-contact lease records, want 0", got)
			case !solo && got < n:
				t.Fatalf("without Solo, %d per-contact lease writes for %d deliveries", got, n)
			}
			for i := range n {
				uuid := fmt.Sprintf("f0f0f0f0-2222-4333-8444-%012d", i)
				if c, _ := s.Skipcall.Contact(uuid); c["city"] != "Oslo" {
					t.Fatalf("contact %d not applied: %v", i, c)
				}
			}
		})
	}
}

// slowCalls sends each PATCH to the real client after d, unless the
// delivery's context ends first, and counts the PATCHes begun.
type slowCalls struct {
	inner processor.Provider
	d     time.Duration
	calls atomic.Int64
}

func (p *slowCalls) Patch(ctx context.Context, ev *events.Event) (processor.Result, error) {
	p.calls.Add(1)
	select {
	case <-time.After(p.d):
	case <-ctx.Done():
		return processor.Result{}, ctx.Err()
	}
	return p.inner.Patch(ctx, ev)
}

// TestSoloDeliveryOutlastsItsFirstDeadline: a delivery under the solo
// lease may run as long as the lease is renewed, not only until the
// lease's end as it stood when the delivery began. With a 4 s lease
// (renewed every 1.33 s, good for 3.2 s after each renewal) a 2.6 s call
// that began late in a renewal period used to be cut short and tried again
// (with a call time locked to the renewals, again and again): every call
// must now succeed the first time. The sizes leave a renewal 1.8 s to
// succeed before a fence passes, for a busy machine.
func TestSoloDeliveryOutlastsItsFirstDeadline(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	cfg := pbtest.WorkerConfig()
	cfg.LeaseTTL = 4 * time.Second
	slow := &slowCalls{d: 2600 * time.Millisecond}
	startObserved(t, s, cfg, func(tg events.Target, p processor.Provider) processor.Provider {
		if tg != events.TargetSkipcall {
			return p
		}
		slow.inner = p
		return slow
	})
	const n = 12
	for i := range n {
		uuid := fmt.Sprintf("f1f1f1f1-2222-4333-8444-%012d", i)
		s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
		s.PostEvent(skipEvent(fmt.Sprintf("slow-solo-%d", i), uuid, map[string]any{"city": "Bergen"}))
		// Spread over more than a renewal period, so that calls begin at
		// every point of it (pacing the load, not waiting for anything).
		time.Sleep(125 * time.Millisecond)
	}
	pbtest.Eventually(t, waitFor, "every event applied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	for i := range n {
		uuid := fmt.Sprintf("f1f1f1f1-2222-4333-8444-%012d", i)
		if c, _ := s.Skipcall.Contact(uuid); c["city"] != "Bergen" {
			t.Fatalf("contact %d not applied: %v", i, c)
		}
	}
	if got := slow.calls.Load(); got != n {
		t.Fatalf("%d PATCHes begun for %d events: calls were cut short by a solo lease that was still being renewed", got, n)
	}
}
