package processor_test

import (
	"context"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestStateUnavailableSendsNothing guards "NATS KV unavailable to the
// worker: nothing is sent, the events are held and tried again (fail
// closed)": with the field-clock bucket gone, an event is neither sent nor
// dead-lettered nor acknowledged; a worker that finds the bucket again
// applies it.
func TestStateUnavailableSendsNothing(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	ctx := context.Background()
	a, b := "f0f0f0f0-2222-4333-8444-00000000000a", "f0f0f0f0-2222-4333-8444-00000000000b"
	s.Skipcall.PutContact(a, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.PutContact(b, map[string]any{"firstName": "A", "lastName": "B"})
	w := s.StartWorker(pbtest.WorkerConfig())
	s.PostEvent(skipEvent("kv-a", a, map[string]any{"city": "Porto"}))
	pbtest.Eventually(t, waitFor, "the first event applied while the state bucket works", func() bool {
		return s.StreamMsgs(s.Stream.EventsStream) == 0
	})

	if err := s.JS.DeleteKeyValue(ctx, s.Stream.KVBucket("STATE")); err != nil {
		t.Fatalf("delete the state bucket: %v", err)
	}
	s.PostEvent(skipEvent("kv-b", b, map[string]any{"city": "Braga"}))
	// Watch for longer than several hold periods (1 s each).
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if n := s.Skipcall.PatchCount(b); n != 0 {
			t.Fatalf("%d PATCHes sent while the field clocks were unreadable: the worker must fail closed", n)
		}
		if n := len(dlqLetters(t, s)); n != 0 {
			t.Fatalf("%d dead letters while the state bucket was gone: an outage is not the event's fault", n)
		}
		if n := s.StreamMsgs(s.Stream.EventsStream); n != 1 {
			t.Fatalf("events stream holds %d messages while the state is unavailable, want the held event", n)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A worker that (re)creates the bucket delivers the held event.
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	s.StartWorker(pbtest.WorkerConfig())
	pbtest.Eventually(t, waitFor, "the held event applied once the state bucket is back", func() bool {
		c, _ := s.Skipcall.Contact(b)
		return c["city"] == "Braga"
	})
	pbtest.Eventually(t, waitFor, "events stream emptied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
}
