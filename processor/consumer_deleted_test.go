package processor_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestDeletedConsumerIsDeclaredAgain: an operator (or a stream restore)
// deletes a target's durable consumer while the worker runs. The worker
// does not go quiet with events piling up in the stream: it notices the
// consumer is gone, declares it again, says so at warning level, and
// applies the events posted since.
func TestDeletedConsumerIsDeclaredAgain(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	logs := recordLogs(s)
	uuid := "c0c0c0c0-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.StartWorker(pbtest.WorkerConfig())
	s.PostEvent(skipEvent("before-delete", uuid, map[string]any{"city": "Lille"}))
	pbtest.Eventually(t, waitFor, "the first event applied", func() bool { return s.Skipcall.PatchCount(uuid) == 1 })

	name := s.Stream.TargetConsumer("skipcall")
	if err := s.JS.DeleteConsumer(context.Background(), s.Stream.EventsStream, name); err != nil {
		t.Fatal(err)
	}
	later := skipEvent("after-delete", uuid, map[string]any{"city": "Roubaix"})
	later["occurred_at"] = "2026-11-25T11:00:00Z" // newer than the first: it must win
	s.PostEvent(later)
	pbtest.Eventually(t, waitFor, "the event posted after the consumer was deleted applied", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["city"] == "Roubaix"
	})
	expectLog(t, logs, slog.LevelWarn, logConsumerDeclaredAgain, map[string]string{"consumer": name})
}

// logConsumerDeclaredAgain is the worker's warning when it finds its
// consumer deleted.
const logConsumerDeclaredAgain = "the consumer was deleted; declared it again, its events are delivered from the stream"
