package processor

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/logtest"
)

// advisoryConfig is the worker configuration of the advisory tests.
func advisoryConfig() Config {
	return Config{Concurrency: 1, AckWait: time.Second, MaxAttempts: 3, MaxRetryAge: time.Hour, BackoffInitial: time.Second, BackoffMax: time.Second, CredentialsPause: time.Second}
}

// advisoryFailed is the error a replica logs when it cannot dead-letter a
// message JetStream gave up on.
const advisoryFailed = "could not dead-letter a message JetStream stopped delivering; it stays in the stream"

// watch starts w's MAX_DELIVERIES listener until the test ends.
func watch(t *testing.T, w *Worker) {
	t.Helper()
	sub, err := w.watchMaxDeliveries(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
}

// strand publishes an event for revyops with msgID, and lets JetStream give
// up on it, as with an operator's MaxDeliver of 1: a consumer delivers it
// once and it is never acknowledged. It returns the event's sequence; the
// advisory follows about a second later (the ack wait).
func (e *embeddedEnv) strand(t *testing.T, msgID string) uint64 {
	t.Helper()
	ctx := testCtx(t)
	ack, err := e.js.Publish(ctx, "contacts.patch.revyops.5", []byte(`{"some":"event"}`), jetstream.WithMsgID(msgID))
	if err != nil {
		t.Fatal(err)
	}
	cc := e.scfg.ConsumerConfig(time.Second, 10)
	cc.MaxDeliver = 1
	cons, err := e.js.CreateOrUpdateConsumer(ctx, e.scfg.EventsStream, cc)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() { // delivered once, never acknowledged
	}
	return ack.Sequence
}

// inEvents says whether the events stream still holds seq.
func (e *embeddedEnv) inEvents(t *testing.T, seq uint64) bool {
	t.Helper()
	str, err := e.js.Stream(testCtx(t), e.scfg.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	_, err = str.GetMsg(testCtx(t), seq)
	return err == nil
}

// awaitLetters polls the DLQ until it holds n letters and returns them.
func (e *embeddedEnv) awaitLetters(t *testing.T, n int) []dlq.Letter {
	t.Helper()
	store := dlq.NewStore(e.js, e.scfg.DLQStream, e.scfg.SubjectPrefix)
	deadline := time.Now().Add(15 * time.Second)
	for {
		ls, err := store.ListSubject(testCtx(t), "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) >= n {
			return ls
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d dead letters after 15 s, want %d", len(ls), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMaxDeliveriesAdvisoryDeadLetters sets MaxDeliver on the consumer, as an
// operator might, lets JetStream give up on a message, and checks that the
// worker's advisory listener dead-letters it instead of leaving it stranded,
// counts it, and logs no failure.
func TestMaxDeliveriesAdvisoryDeadLetters(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t)
	tap, log := logtest.New()
	w := e.worker(t, advisoryConfig(), log)
	watch(t, w)
	seq := e.strand(t, "evt-5")

	l := e.awaitLetters(t, 1)[0]
	if l.Reason != dlq.ReasonMaxDeliveries || l.StreamSeq != seq || l.EventID != "evt-5" || l.Target != "revyops" {
		t.Fatalf("letter %+v", l)
	}
	awaitCount(t, w, "revyops", string(dlq.ReasonMaxDeliveries), 1)
	if e.inEvents(t, seq) {
		t.Fatal("the stranded message is still in the events stream")
	}
	if rs := tap.Records(advisoryFailed); len(rs) != 0 {
		t.Fatalf("a dead-lettered message logged %q: %+v", advisoryFailed, rs)
	}
}

// awaitCount polls w's dead-letter counter of target and reason until it
// is want.
func awaitCount(t *testing.T, w *Worker, target, reason string, want float64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := deadLetterCount(t, w, target, reason)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead letters of %s/%s: %v after 15 s, want %v", target, reason, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
