package processor_test

import (
	"context"
	"testing"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/pbtest"
)

// setDLQSubjects points the dead-letter stream at subjects: anything but the
// stack's DLQ subjects makes every dead-letter publish fail (no stream
// answers), as when the DLQ stream is unavailable.
func setDLQSubjects(t *testing.T, s *pbtest.Stack, subjects ...string) {
	t.Helper()
	ctx := context.Background()
	str, err := s.JS.Stream(ctx, s.Stream.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	cfg.Subjects = subjects
	if _, err := s.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("update DLQ stream subjects: %v", err)
	}
}

// TestDeadLetterStreamUnavailableKeepsTheEvent breaks the promise row "dead-
// letter stream unavailable: the event is not terminated, it is retried
// later": an event the provider rejects (404) while the DLQ refuses writes
// must stay in the events stream and be tried again, and be dead-lettered
// exactly once when the DLQ is back.
func TestDeadLetterStreamUnavailableKeepsTheEvent(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	setDLQSubjects(t, s, "nowhere.dlq.>")
	uuid := "dddddddd-2222-4333-8444-555555555555" // unknown at the sandbox: 404, rejected
	s.StartWorker(pbtest.WorkerConfig())
	s.PostEvent(skipEvent("dlq-down", uuid, map[string]any{"city": "Nice"}))

	// The first dead-lettering fails; the event must come back (NakWithDelay)
	// and reach the provider again instead of being terminated.
	pbtest.Eventually(t, waitFor, "the rejected event tried a second time while the DLQ refuses writes", func() bool {
		return s.Skipcall.StatusCounts()[404] >= 2
	})
	if n := s.StreamMsgs(s.Stream.EventsStream); n != 1 {
		t.Fatalf("events stream holds %d messages while the DLQ is down, want 1: the event was terminated without a dead letter", n)
	}
	if n := s.StreamMsgs(s.Stream.DLQStream); n != 0 {
		t.Fatalf("DLQ holds %d letters while it refuses writes", n)
	}

	setDLQSubjects(t, s, s.Stream.DLQSubjects())
	var ls []dlq.Letter
	pbtest.Eventually(t, waitFor, "one dead letter once the DLQ accepts writes again", func() bool {
		ls = dlqLetters(t, s)
		return len(ls) >= 1
	})
	pbtest.Eventually(t, waitFor, "events stream emptied after the dead letter", func() bool {
		return s.StreamMsgs(s.Stream.EventsStream) == 0
	})
	if ls = dlqLetters(t, s); len(ls) != 1 {
		t.Fatalf("%d dead letters for one event, want 1", len(ls))
	}
	l := ls[0]
	if l.Reason != dlq.ReasonRejected || l.Status != 404 || l.EventID != "dlq-down" {
		t.Fatalf("letter %+v, want reason rejected, status 404, event dlq-down", l)
	}
	if l.Attempts < 2 {
		t.Fatalf("letter says %d attempts, want at least 2 (one failed dead-lettering before)", l.Attempts)
	}
}
