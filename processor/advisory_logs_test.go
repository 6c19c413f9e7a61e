package processor

import (
	"errors"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/logtest"
)

// TestAdvisoryDeadLetterFailureIsLogged: when the dead letter of a message
// JetStream gave up on cannot be written, the message stays in the events
// stream, and the replica says so at error level with the message's
// sequence and the cause: nothing else tells an operator that a message is
// stranded.
func TestAdvisoryDeadLetterFailureIsLogged(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t)
	tap, log := logtest.New()
	w := e.worker(t, advisoryConfig(), log)
	w.dlq = dlq.NewPublisher(&dlqTap{js: e.js, refuse: true}, e.scfg.SubjectPrefix)
	watch(t, w)
	seq := e.strand(t, "evt-6")

	r := tap.Await(t, 15*time.Second, advisoryFailed, 1)[0]
	if r.Level != slog.LevelError || r.Uint("seq") != seq {
		t.Fatalf("logged %+v, want error level and seq %d", r, seq)
	}
	if err, _ := r.Attrs["err"].Any().(error); !errors.Is(err, errDLQRefused) {
		t.Fatalf("logged err %v, want the DLQ's refusal", r.Attrs["err"])
	}
	if !e.inEvents(t, seq) {
		t.Fatal("a message whose dead letter failed left the events stream")
	}
	if n := deadLetterCount(t, w, "revyops", string(dlq.ReasonMaxDeliveries)); n != 0 {
		t.Fatalf("dead letters counted: %v, want 0", n)
	}
}

// TestAdvisoryForAMessageAlreadyGone: another replica dead-lettered the
// same message and deleted it between this replica's read and its delete
// (the letters are deduplicated by the message's sequence). The message is
// dead-lettered, so this replica counts its letter and logs no failure.
// The race is made deterministic: the message is deleted as the letter is
// written.
func TestAdvisoryForAMessageAlreadyGone(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t)
	tap, log := logtest.New()
	w := e.worker(t, advisoryConfig(), log)
	deleted := make(chan error, 1)
	w.dlq = dlq.NewPublisher(&dlqTap{js: e.js, before: func(m *nats.Msg) {
		seq, err := strconv.ParseUint(m.Header.Get(dlq.HeaderStreamSeq), 10, 64)
		if err == nil {
			var str jetstream.Stream
			if str, err = e.js.Stream(testCtx(t), e.scfg.EventsStream); err == nil {
				err = str.DeleteMsg(testCtx(t), seq)
			}
		}
		select {
		case deleted <- err:
		default: // a second advisory: the first answer is the one checked
		}
	}}, e.scfg.SubjectPrefix)
	watch(t, w)
	seq := e.strand(t, "evt-7")

	select {
	case err := <-deleted:
		if err != nil {
			t.Fatalf("the other replica's delete: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no dead letter written 15 s after the message was stranded")
	}
	awaitCount(t, w, "revyops", string(dlq.ReasonMaxDeliveries), 1)
	if l := e.awaitLetters(t, 1)[0]; l.StreamSeq != seq {
		t.Fatalf("letter of seq %d, want %d", l.StreamSeq, seq)
	}
	if rs := tap.Records(advisoryFailed); len(rs) != 0 {
		t.Fatalf("a message another replica deleted first logged %q: %+v", advisoryFailed, rs)
	}
	if e.inEvents(t, seq) {
		t.Fatal("the message is back in the events stream")
	}
}

// TestAdvisoryDeleteRefusedIsLogged: when the events stream refuses to
// delete the message (an operator's DenyDelete), the letter is written but
// the message stays in the stream, and the replica says so at error level
// with the sequence and the cause; it does not count a dead letter.
func TestAdvisoryDeleteRefusedIsLogged(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t)
	ctx := testCtx(t)
	str, err := e.js.Stream(ctx, e.scfg.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	cfg.DenyDelete = true
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("deny deletes on the events stream: %v", err)
	}
	tap, log := logtest.New()
	w := e.worker(t, advisoryConfig(), log)
	watch(t, w)
	seq := e.strand(t, "evt-8")

	r := tap.Await(t, 15*time.Second, advisoryFailed, 1)[0]
	if r.Level != slog.LevelError || r.Uint("seq") != seq {
		t.Fatalf("logged %+v, want error level and seq %d", r, seq)
	}
	if err, _ := r.Attrs["err"].Any().(error); !errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		t.Fatalf("logged err %v, want the refused delete", r.Attrs["err"])
	}
	if !e.inEvents(t, seq) {
		t.Fatal("the message left a stream that denies deletes")
	}
	if l := e.awaitLetters(t, 1)[0]; l.StreamSeq != seq {
		t.Fatalf("letter of seq %d, want %d", l.StreamSeq, seq)
	}
	if n := deadLetterCount(t, w, "revyops", string(dlq.ReasonMaxDeliveries)); n != 0 {
		t.Fatalf("dead letters counted: %v, want 0 (the message stays)", n)
	}
}
