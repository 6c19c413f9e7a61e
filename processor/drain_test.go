package processor_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
)

// answerAtDeadline sends each PATCH to the real provider client; the
// first one's answer it holds until the delivery's context ends (the drain
// deadline cancels it, or the lease's deadline passes) and only then
// returns it: a PATCH that succeeded at the provider just as the worker
// was stopping, or that the worker saw only after its lease had run out.
// Later PATCHes pass straight through.
type answerAtDeadline struct {
	inner   processor.Provider
	applied chan struct{} // closed once the first PATCH has been answered
	once    sync.Once

	mu       sync.Mutex
	ctxEnded int // answers returned after the delivery's context had ended
}

func (p *answerAtDeadline) Patch(ctx context.Context, ev *events.Event) (processor.Result, error) {
	res, err := p.inner.Patch(context.WithoutCancel(ctx), ev)
	first := false
	p.once.Do(func() { first = true; close(p.applied) })
	if first {
		<-ctx.Done()
		p.mu.Lock()
		p.ctxEnded++
		p.mu.Unlock()
	}
	return res, err
}

// TestSuccessAtDrainDeadlineIsAcked guards "a PATCH that succeeded just as
// the drain deadline fired is acked, not handed back": the provider
// applies the PATCH, its answer reaches the worker only after the drain
// deadline cancelled the delivery, and the event must be acknowledged
// once (applied, not abandoned), leave the stream, and never be
// redelivered and applied again.
func TestSuccessAtDrainDeadlineIsAcked(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "d1d1d1d1-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	cfg := pbtest.WorkerConfig()
	cfg.DrainTimeout = 200 * time.Millisecond
	late := &answerAtDeadline{applied: make(chan struct{})}
	w := startObserved(t, s, cfg, func(tg events.Target, p processor.Provider) processor.Provider {
		if tg != events.TargetSkipcall {
			return p
		}
		late.inner = p
		return late
	})
	s.PostEvent(skipEvent("drain-ack", uuid, map[string]any{"city": "Ghent"}))
	select {
	case <-late.applied:
	case <-time.After(waitFor):
		t.Fatalf("the PATCH did not reach the provider within %s", waitFor)
	}
	if c, _ := s.Skipcall.Contact(uuid); c["city"] != "Ghent" {
		t.Fatalf("the provider did not apply the PATCH before the stop: %v", c)
	}
	// Stop: the drain deadline fires while the answer is held, cancelling
	// the delivery's context; the answer is then returned.
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	late.mu.Lock()
	ended := late.ctxEnded
	late.mu.Unlock()
	if ended != 1 {
		t.Fatalf("%d answers were returned after the drain deadline, want 1: the scenario did not happen", ended)
	}
	if n := w.deliveries(t, "skipcall", "abandoned"); n != 0 {
		t.Fatalf("%.0f deliveries abandoned (handed back with Nak) although the provider answered 2xx", n)
	}
	if n := w.deliveries(t, "skipcall", "applied"); n != 1 {
		t.Fatalf("%.0f deliveries counted applied, want 1", n)
	}
	pbtest.Eventually(t, waitFor, "the applied event acknowledged (gone from the work-queue stream)", func() bool {
		return s.StreamMsgs(s.Stream.EventsStream) == 0
	})
	if info := consumerInfo(t, s, "skipcall"); info.NumAckPending != 0 || info.NumRedelivered != 0 || info.NumPending != 0 {
		t.Fatalf("consumer after the stop: %d unacknowledged, %d redelivered, %d pending; want none", info.NumAckPending, info.NumRedelivered, info.NumPending)
	}
	if n := s.Skipcall.PatchCount(uuid); n != 1 {
		t.Fatalf("the contact was PATCHed %d times, want exactly once", n)
	}
	if ls := dlqLetters(t, s); len(ls) != 0 {
		t.Fatalf("dead letters: %+v", ls)
	}
}
