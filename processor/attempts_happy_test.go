package processor_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestHappyPathWritesNoAttempts guards "the attempts bucket is written only
// when a call fails: the happy path costs nothing": events applied, or
// dead-lettered as rejected, at their first delivery write nothing to it,
// not even the purge that forgets a count; an event applied after a failed
// call writes its count and then forgets it.
func TestHappyPathWritesNoAttempts(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	writes := countMsgs(t, s, "$KV."+s.Stream.KVBucket("ATTEMPTS")+".>")
	s.StartWorker(pbtest.WorkerConfig())
	const n = 20
	for i := range n {
		uuid := fmt.Sprintf("e0e0e0e0-2222-4333-8444-%012d", i)
		s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
		s.PostEvent(skipEvent(fmt.Sprintf("happy-%d", i), uuid, map[string]any{"city": "Oslo"}))
	}
	// Unknown at the sandbox: 404, dead-lettered at its first delivery.
	s.PostEvent(skipEvent("happy-rejected", "e2e0e0e0-2222-4333-8444-555555555555", map[string]any{"city": "Oslo"}))
	pbtest.Eventually(t, waitFor, "every event applied or dead-lettered", func() bool {
		return s.StreamMsgs(s.Stream.EventsStream) == 0 && len(dlqLetters(t, s)) == 1
	})
	if err := s.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := writes.Load(); got != 0 {
		t.Fatalf("%d writes to the attempts bucket for %d events applied and 1 dead-lettered at their first call, want 0", got, n)
	}

	// The control: a failed call is counted, and forgotten once applied.
	uuid := "e1e0e0e0-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.FailNext(1, http.StatusInternalServerError)
	s.PostEvent(skipEvent("happy-after-500", uuid, map[string]any{"city": "Oslo"}))
	pbtest.Eventually(t, waitFor, "the event applied after a failed call, its count written and purged", func() bool {
		return s.StreamMsgs(s.Stream.EventsStream) == 0 && writes.Load() >= 2
	})
	if err := s.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := writes.Load(); got != 2 {
		t.Fatalf("%d writes to the attempts bucket for one failed call then success, want 2 (the count, then its purge)", got)
	}
}
