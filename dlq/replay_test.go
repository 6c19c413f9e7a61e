package dlq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/pbtest"
)

// skipcallContact is the i-th test contact's id at Skipcall.
func skipcallContact(i int) string { return fmt.Sprintf("0c0c0c0c-0000-4000-8000-%012d", i) }

// TestRoundTripRejectedEditedReplayedApplied: an event the sandbox rejects
// with a 400 is dead-lettered by the worker; an edit that is not a valid
// event is refused naming the field and changes nothing; the corrected
// event is replayed, applied at the sandbox, and the DLQ is empty after.
func TestRoundTripRejectedEditedReplayedApplied(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := skipcallContact(1)
	s.Skipcall.PutContact(id, map[string]any{"firstName": "Old"})
	s.Skipcall.FailNext(1, http.StatusBadRequest)
	s.StartWorker(pbtest.WorkerConfig())
	s.PostEvent(map[string]any{"id": "evt-rt-1", "target": "skipcall", "contact_id": id,
		"occurred_at": "2026-11-25T10:00:00Z", "patch": map[string]any{"firstName": "Bad"}})

	store := dlq.NewStore(s.JS, s.Stream.DLQStream, s.Stream.SubjectPrefix)
	var l dlq.Letter
	pbtest.Eventually(t, 30*time.Second, "the rejected event in the DLQ", func() bool {
		res, err := store.List(ctx, dlq.Filter{Reason: dlq.ReasonRejected}, dlq.Page{})
		if err != nil || len(res.Letters) != 1 {
			return false
		}
		l = res.Letters[0]
		return true
	})
	if l.Status != http.StatusBadRequest || l.Target != "skipcall" || l.ContactID() != id || l.EventID != "evt-rt-1" {
		t.Fatalf("letter %+v: want the 400 of evt-rt-1 for %s", l, id)
	}

	bad := []byte(fmt.Sprintf(`{"id":"evt-rt-1","target":"skipcall","contact_id":%q,"occurred_at":"2026-11-25T10:00:00Z","patch":{"firstName":""}}`, id))
	_, err := store.Replay(ctx, dlq.Selection{Seqs: []uint64{l.DLQSeq}}, dlq.ReplayOptions{Edit: bad})
	var verr *events.ValidationError
	if !errors.Is(err, dlq.ErrInvalidEdit) || !errors.As(err, &verr) || len(verr.Errors) == 0 || verr.Errors[0].Field != "patch.firstName" {
		t.Fatalf("invalid edit: %v, want ErrInvalidEdit naming patch.firstName", err)
	}
	if n := s.StreamMsgs(s.Stream.DLQStream); n != 1 {
		t.Fatalf("DLQ holds %d letters after a refused edit, want the 1 still there", n)
	}

	fixed := []byte(fmt.Sprintf(`{"id":"evt-rt-1","target":"skipcall","contact_id":%q,"occurred_at":"2026-11-25T10:00:00Z","patch":{"firstName":"Ada"}}`, id))
	rep, err := store.Replay(ctx, dlq.Selection{Seqs: []uint64{l.DLQSeq}}, dlq.ReplayOptions{Edit: fixed})
	if err != nil || rep.Replayed != 1 || rep.Results[0].Outcome != dlq.OutcomeReplayed {
		t.Fatalf("replay: %+v, %v", rep, err)
	}
	pbtest.Eventually(t, 30*time.Second, "the edited event applied", func() bool {
		c, ok := s.Skipcall.Contact(id)
		return ok && c["firstName"] == "Ada"
	})
	pbtest.Eventually(t, 30*time.Second, "the events stream drained", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	if n := s.StreamMsgs(s.Stream.DLQStream); n != 0 {
		t.Fatalf("DLQ holds %d letters after the replay was applied, want 0", n)
	}
}

// TestBulkReplayInterruptedAndRerun: 1,000 letters replayed, the run
// stopped half-way and one letter's publish left without its delete (a
// crash between the two), then run again: the events stream holds each
// event once, the worker applies each once at the sandbox, the DLQ is empty.
func TestBulkReplayInterruptedAndRerun(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 1000
	pub := dlq.NewPublisher(s.JS, s.Stream.SubjectPrefix)
	for i := 1; i <= n; i++ {
		id := skipcallContact(i)
		s.Skipcall.PutContact(id, map[string]any{"firstName": "Old"})
		ev := fmt.Sprintf(`{"id":"evt-bulk-%d","target":"skipcall","contact_id":%q,"occurred_at":"2026-11-25T10:00:00Z","patch":{"firstName":"New %d"}}`, i, id, i)
		err := pub.Publish(ctx, dlq.Letter{Reason: dlq.ReasonExhausted, Status: 503, Attempts: 4, Stream: s.Stream.EventsStream,
			StreamSeq: uint64(i), Subject: "contacts.patch.skipcall." + id, EventID: fmt.Sprintf("evt-bulk-%d", i), Target: "skipcall", Data: []byte(ev)})
		if err != nil {
			t.Fatal(err)
		}
	}
	store := dlq.NewStore(s.JS, s.Stream.DLQStream, s.Stream.SubjectPrefix)

	// The first run is interrupted after half the letters.
	rctx, stop := context.WithCancel(ctx)
	done := 0
	rep, err := store.Replay(rctx, dlq.Selection{All: true}, dlq.ReplayOptions{Progress: func(dlq.ReplayResult) {
		if done++; done == n/2 {
			stop()
		}
	}})
	stop()
	if !errors.Is(err, context.Canceled) || rep.Replayed != n/2 {
		t.Fatalf("interrupted run: replayed %d, err %v; want %d and context.Canceled", rep.Replayed, err, n/2)
	}
	// The next letter was published but the run died before deleting it.
	next, err := store.List(ctx, dlq.Filter{}, dlq.Page{Limit: dlq.MaxLimit})
	if err != nil || len(next.Letters) != n/2 {
		t.Fatalf("%d letters left (err %v), want %d", len(next.Letters), err, n/2)
	}
	oldest := next.Letters[len(next.Letters)-1]
	msg := nats.NewMsg(oldest.Subject)
	msg.Data = oldest.Data
	if _, err := s.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(dlq.ReplayMsgID(s.Stream.DLQStream, oldest.DLQSeq, oldest.EventID))); err != nil {
		t.Fatal(err)
	}

	rep, err = store.Replay(ctx, dlq.Selection{All: true}, dlq.ReplayOptions{})
	if err != nil || rep.Replayed != n/2 || rep.Failed != 0 {
		t.Fatalf("re-run: replayed %d, failed %d, err %v; want %d, 0", rep.Replayed, rep.Failed, err, n/2)
	}
	if got := s.StreamMsgs(s.Stream.EventsStream); got != n {
		t.Fatalf("events stream holds %d events after the re-run, want each of %d once", got, n)
	}
	if got := s.StreamMsgs(s.Stream.DLQStream); got != 0 {
		t.Fatalf("DLQ holds %d letters after the re-run, want 0", got)
	}

	s.StartWorker(pbtest.WorkerConfig())
	pbtest.Eventually(t, 90*time.Second, "every replayed event applied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	for i := 1; i <= n; i++ {
		id := skipcallContact(i)
		c, _ := s.Skipcall.Contact(id)
		if got := s.Skipcall.PatchCount(id); got != 1 || c["firstName"] != fmt.Sprintf("New %d", i) {
			t.Fatalf("contact %d: %d PATCHes, firstName %v; want 1 and New %d", i, got, c["firstName"], i)
		}
	}
}

// TestReplayDryRunChangesNothing: a dry run reports each letter as
// would_replay and leaves both streams as they were; an invalid stored
// event is reported failed, not published.
func TestReplayDryRunChangesNothing(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	ctx := context.Background()
	pub := dlq.NewPublisher(s.JS, s.Stream.SubjectPrefix)
	if err := pub.Publish(ctx, letter(1, "a")); err != nil {
		t.Fatal(err)
	}
	broken := letter(2, "b")
	broken.Reason, broken.Data = dlq.ReasonInvalid, []byte(`{"id":"x"}`)
	if err := pub.Publish(ctx, broken); err != nil {
		t.Fatal(err)
	}
	store := dlq.NewStore(s.JS, s.Stream.DLQStream, s.Stream.SubjectPrefix)
	rep, err := store.Replay(ctx, dlq.Selection{All: true}, dlq.ReplayOptions{DryRun: true})
	if err != nil || rep.Replayed != 1 || rep.Failed != 1 || rep.Results[0].Outcome != dlq.OutcomeWouldReplay || rep.Results[1].Outcome != dlq.OutcomeFailed {
		b, _ := json.Marshal(rep)
		t.Fatalf("dry run: %s, %v", b, err)
	}
	if s.StreamMsgs(s.Stream.EventsStream) != 0 || s.StreamMsgs(s.Stream.DLQStream) != 2 {
		t.Fatal("a dry run changed the streams")
	}
	if _, err := store.Replay(ctx, dlq.Selection{}, dlq.ReplayOptions{}); !errors.Is(err, dlq.ErrEmptySelection) {
		t.Fatalf("empty selection: %v, want ErrEmptySelection", err)
	}
}
