package processor_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/sandbox"
)

// deliveredOf returns how many times the skipcall consumer has delivered
// a message (redeliveries included).
func deliveredOf(t *testing.T, s *pbtest.Stack) uint64 {
	t.Helper()
	c, err := s.JS.Consumer(context.Background(), s.Stream.EventsStream, s.Stream.TargetConsumer("skipcall"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.Delivered.Consumer
}

// TestSlowCallIsKeptAlive: a PATCH that takes longer than the ack wait (and
// less than the client timeout, 2 s in pbtest) is
// kept alive (InProgress), so JetStream does not deliver the event again
// while the call runs.
func TestSlowCallIsKeptAlive(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "b2b2b2b2-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.SetFaults(sandbox.Faults{Latency: 1700 * time.Millisecond})
	cfg := pbtest.WorkerConfig()
	cfg.AckWait = time.Second
	s.StartWorker(cfg)
	s.PostEvent(skipEvent("slow-1", uuid, map[string]any{"city": "Linz"}))
	pbtest.Eventually(t, waitFor, "stream emptied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	if n := deliveredOf(t, s); n != 1 {
		t.Fatalf("delivered %d times during a 1.7 s call with a 1 s ack wait, want 1", n)
	}
	if n := s.Skipcall.PatchCount(uuid); n != 1 {
		t.Fatalf("%d PATCHes applied, want 1", n)
	}
}

// TestHeldEventIsKeptAlive: an event waiting in the worker while its
// target is paused (a refused key, for several ack waits) is kept alive,
// not redelivered, and applied once the key works.
func TestHeldEventIsKeptAlive(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "b3b3b3b3-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.SetKeyStatus(pbtest.SkipcallKey, http.StatusUnauthorized, "UNAUTHORIZED")
	cfg := pbtest.WorkerConfig()
	cfg.AckWait = time.Second
	s.StartWorker(cfg)
	s.PostEvent(skipEvent("held-1", uuid, map[string]any{"city": "Wels"}))
	pbtest.Eventually(t, waitFor, "the key refused", func() bool { return s.Skipcall.StatusCounts()[http.StatusUnauthorized] > 0 })
	// Watch across three and a half ack waits.
	for deadline := time.Now().Add(3500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n := deliveredOf(t, s); n != 1 {
			t.Fatalf("delivered %d times while held in the worker, want 1", n)
		}
	}
	s.Skipcall.SetKeyStatus(pbtest.SkipcallKey, 0, "")
	pbtest.Eventually(t, waitFor, "applied once the key works", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["city"] == "Wels"
	})
}
