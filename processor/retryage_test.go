package processor_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestRetryAgeDeadLetters guards "retries … up to MAX_RETRY_AGE, then a
// dead letter with the last status": with attempts to spare but the age
// used up, the first transient failure dead-letters the event as
// retries_exhausted, after one provider call.
func TestRetryAgeDeadLetters(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "eeeeeeee-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.FailNext(-1, http.StatusBadGateway)
	cfg := pbtest.WorkerConfig()
	cfg.MaxAttempts = 100
	cfg.MaxRetryAge = time.Nanosecond // any stored event is older than this
	s.StartWorker(cfg)
	s.PostEvent(skipEvent("too-old", uuid, map[string]any{"role": "CEO"}))
	var ls []dlq.Letter
	pbtest.Eventually(t, waitFor, "a retries_exhausted dead letter once MAX_RETRY_AGE has passed", func() bool {
		ls = dlqLetters(t, s)
		return len(ls) == 1
	})
	if l := ls[0]; l.Reason != dlq.ReasonExhausted || l.Status != http.StatusBadGateway || l.Attempts != 1 {
		t.Fatalf("letter %+v, want reason retries_exhausted, status 502, 1 attempt", l)
	}
	if n := s.Skipcall.StatusCounts()[http.StatusBadGateway]; n != 1 {
		t.Fatalf("%d provider calls for an event past its retry age, want 1", n)
	}
	pbtest.Eventually(t, waitFor, "events stream emptied after the dead letter", func() bool {
		return s.StreamMsgs(s.Stream.EventsStream) == 0
	})
}
