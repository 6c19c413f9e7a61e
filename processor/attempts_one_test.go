package processor_test

import (
	"net/http"
	"testing"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestOneAttemptDeadLettersAtTheFirstFailure guards "MAX_ATTEMPTS counts
// provider calls": with MaxAttempts 1, the first call that fails with a
// 500 is the last one. The event is dead-lettered as exhausted after that
// single call, the letter says 1 attempt, and the contact is left as it
// was.
func TestOneAttemptDeadLettersAtTheFirstFailure(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "a2a2a2a2-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B", "city": "Linz"})
	s.Skipcall.FailNext(1, http.StatusInternalServerError)
	cfg := pbtest.WorkerConfig()
	cfg.MaxAttempts = 1
	s.StartWorker(cfg)
	s.PostEvent(skipEvent("one-attempt-1", uuid, map[string]any{"city": "Graz"}))
	pbtest.Eventually(t, waitFor, "the event settled: applied or dead-lettered", func() bool {
		return s.StreamMsgs(s.Stream.EventsStream) == 0
	})
	ls := dlqLetters(t, s)
	if len(ls) != 1 {
		c, _ := s.Skipcall.Contact(uuid)
		t.Fatalf("%d dead letters after a failed call with MaxAttempts 1, want 1 (contact now %v, %d PATCHes)", len(ls), c["city"], s.Skipcall.PatchCount(uuid))
	}
	if l := ls[0]; l.Reason != dlq.ReasonExhausted || l.Attempts != 1 || l.Status != http.StatusInternalServerError {
		t.Fatalf("letter: reason %s, attempts %d, status %d; want retries_exhausted after 1 attempt, status 500", l.Reason, l.Attempts, l.Status)
	}
	if n := s.Skipcall.StatusCounts()[http.StatusInternalServerError]; n != 1 {
		t.Fatalf("%d calls answered 500, want the 1 injected", n)
	}
	if c, _ := s.Skipcall.Contact(uuid); c["city"] != "Linz" {
		t.Fatalf("contact's city %v after its only attempt failed, want Linz", c["city"])
	}
}
