package processor_test

import (
	"context"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/lww"
)

// TestClocksStoredOnlyUnderTheLease: a delivery whose lease ran out after
// the provider's 2xx does not store the clocks and acknowledge (another
// replica may have sent an older value after it without knowing it): it
// delivers the event again, PATCHing it a second time, and acknowledges
// only once its clocks are stored under a lease.
func TestClocksStoredOnlyUnderTheLease(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "e1e1e1e1-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	cfg := pbtest.WorkerConfig()
	cfg.LeaseTTL = 2 * time.Second
	// A per-contact lease, whose deadline is fixed: a lone worker's solo
	// lease is renewed while the worker runs and never runs out here.
	cfg.AlwaysLease = true
	late := &answerAtDeadline{applied: make(chan struct{})}
	w := startObserved(t, s, cfg, func(tg events.Target, p processor.Provider) processor.Provider {
		if tg != events.TargetSkipcall {
			return p
		}
		late.inner = p
		return late
	})
	s.PostEvent(skipEvent("late-commit", uuid, map[string]any{"city": "Lyon"}))
	pbtest.Eventually(t, waitFor, "the event acknowledged", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	if n := s.Skipcall.PatchCount(uuid); n != 2 {
		t.Fatalf("the contact was PATCHed %d times, want 2: once past the lease, once again to store its clocks under one", n)
	}
	if n := w.deliveries(t, "skipcall", "applied"); n != 1 {
		t.Fatalf("%.0f deliveries counted applied, want 1", n)
	}
	st, err := lww.NewStore(context.Background(), s.JS, lww.StoreConfig{Bucket: s.Stream.KVBucket("STATE"), TTL: processor.DefaultStateTTL})
	if err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(context.Background(), events.TargetSkipcall, uuid)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Fields["city"]; !ok {
		t.Fatalf("the city clock was not stored: %v", got.Fields)
	}
	if ls := dlqLetters(t, s); len(ls) != 0 {
		t.Fatalf("dead letters: %+v", ls)
	}
}
