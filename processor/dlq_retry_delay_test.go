package processor_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestDeadLetterFailureRetriesAfterItsDelay guards "an event whose dead
// letter cannot be written is handed back with a 5 s delay" (the DLQ is
// down: trying again at once would only spin): a rejected event (404)
// reaches the provider a second time no sooner than that delay after the
// first.
func TestDeadLetterFailureRetriesAfterItsDelay(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	setDLQSubjects(t, s, "nowhere.dlq.>")
	uuid := "d1d1d1d1-2222-4333-8444-555555555555" // unknown at the sandbox: 404, rejected
	s.StartWorker(pbtest.WorkerConfig())
	s.PostEvent(skipEvent("dlq-down-delay", uuid, map[string]any{"city": "Nice"}))

	var tries []time.Time
	pbtest.Eventually(t, waitFor, "the rejected event tried a second time while the DLQ refuses writes", func() bool {
		tries = tries[:0]
		for _, r := range s.Skipcall.Requests() {
			if r.Method == http.MethodPatch && r.Status == http.StatusNotFound {
				tries = append(tries, r.At)
			}
		}
		return len(tries) >= 2
	})
	// The delay runs from the failed publish, after the first answer; the
	// server's redelivery timer may round it down a little.
	const delay = 5 * time.Second
	if gap := tries[1].Sub(tries[0]); gap < delay-500*time.Millisecond {
		t.Fatalf("second try %s after the first, want about %s (NakWithDelay after a failed dead letter)", gap, delay)
	}
}
