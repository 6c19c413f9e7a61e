package processor_test

import (
	"net/http"
	"testing"

	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestDeliveriesThatWereNotCallsAreNotAttempts: MAX_ATTEMPTS counts
// provider calls that failed, not JetStream deliveries. An event is first
// delivered while the key is refused (a 401 is no attempt) and handed back
// when that worker stops; the next worker's first call fails with a 500.
// With MaxAttempts 2 that is attempt 1 of 2, so the event is retried and
// applied, although JetStream has delivered it twice by then.
func TestDeliveriesThatWereNotCallsAreNotAttempts(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	uuid := "a1a1a1a1-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.SetKeyStatus(pbtest.SkipcallKey, http.StatusUnauthorized, "UNAUTHORIZED")
	cfg := pbtest.WorkerConfig()
	cfg.MaxAttempts = 2
	first := s.StartWorker(cfg)
	s.PostEvent(skipEvent("calls-1", uuid, map[string]any{"city": "Graz"}))
	pbtest.Eventually(t, waitFor, "the key refused", func() bool { return s.Skipcall.StatusCounts()[http.StatusUnauthorized] > 0 })
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	s.Skipcall.SetKeyStatus(pbtest.SkipcallKey, 0, "")
	s.Skipcall.FailNext(1, http.StatusInternalServerError)
	s.StartWorker(cfg)
	pbtest.Eventually(t, waitFor, "applied after one failed call", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["city"] == "Graz" || len(dlqLetters(t, s)) > 0
	})
	if ls := dlqLetters(t, s); len(ls) != 0 {
		t.Fatalf("dead-lettered after one failed call of MaxAttempts 2: %s (attempts %d)", ls[0].Detail, ls[0].Attempts)
	}
	if n := s.Skipcall.StatusCounts()[http.StatusInternalServerError]; n != 1 {
		t.Fatalf("%d answers were 500, want the 1 injected", n)
	}
}
