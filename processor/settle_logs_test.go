package processor

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/logtest"
)

// The warnings of deadLetter an operator relies on.
const (
	dlqPublishFailed = "dead-letter publish failed; keeping the event for a later try"
	nakFailed        = "nak failed; the event will be redelivered after the ack wait"
	termFailed       = "term after dead-lettering failed; a redelivery will be dead-lettered again (deduplicated)"
)

// TestDeadLetterSettleFailuresAreLogged: deadLetter settles the event after
// the DLQ's answer, a Nak with delay when the letter was refused and a Term
// when it was written. Each of those can fail (here: the connection that
// delivered the event closes at that point), and each failure says what
// happens to the event instead, with the event's sequence and the cause;
// a settle that works logs nothing.
func TestDeadLetterSettleFailuresAreLogged(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t)
	tap, log := logtest.New()
	w := e.worker(t, advisoryConfig(), log)
	l := laneOf(t, w, events.TargetRevyOps)
	for i, tc := range []struct {
		name          string
		refuse, close bool // the DLQ refuses the letter; the event's connection closes after the DLQ's answer
		want, notWant []string
	}{
		{name: "refused, nak works", refuse: true, want: []string{dlqPublishFailed}, notWant: []string{nakFailed, termFailed}},
		{name: "refused, nak fails", refuse: true, close: true, want: []string{dlqPublishFailed, nakFailed}, notWant: []string{termFailed}},
		{name: "written, term fails", close: true, want: []string{termFailed}, notWant: []string{dlqPublishFailed, nakFailed}},
		{name: "written, term works", notWant: []string{dlqPublishFailed, nakFailed, termFailed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, nc := e.fetchOne(t, fmt.Sprintf("settle-%d", i))
			d := &dlqTap{js: e.js, refuse: tc.refuse}
			if tc.close {
				d.after = nc.Close
			}
			w.dlq = dlq.NewPublisher(d, e.scfg.SubjectPrefix)
			l.deadLetter(testCtx(t), p, nil, dlq.ReasonRejected, errors.New("test: rejected"), 1, time.Time{})

			for _, msg := range tc.want {
				rs := recordsOfSeq(tap.Records(msg), p.seq)
				if len(rs) != 1 {
					t.Fatalf("%d records %q of seq %d, want 1 (all: %+v)", len(rs), msg, p.seq, tap.Records(msg))
				}
				if rs[0].Attrs["err"].Any() == nil {
					t.Errorf("%q without its cause: %+v", msg, rs[0])
				}
				if msg == dlqPublishFailed {
					if rs[0].Level != slog.LevelError || rs[0].Str("provider") != "revyops" {
						t.Errorf("%q: %+v, want error level and provider revyops", msg, rs[0])
					}
					continue
				}
				if rs[0].Level != slog.LevelWarn {
					t.Errorf("%q at level %s, want WARN", msg, rs[0].Level)
				}
				if err, _ := rs[0].Attrs["err"].Any().(error); !errors.Is(err, nats.ErrConnectionClosed) {
					t.Errorf("%q with err %v, want the closed connection's", msg, rs[0].Attrs["err"])
				}
			}
			for _, msg := range tc.notWant {
				if rs := recordsOfSeq(tap.Records(msg), p.seq); len(rs) != 0 {
					t.Errorf("%q logged though it did not happen: %+v", msg, rs)
				}
			}
		})
	}
}

// recordsOfSeq returns the records of rs whose seq is seq.
func recordsOfSeq(rs []logtest.Record, seq uint64) []logtest.Record {
	var out []logtest.Record
	for _, r := range rs {
		if r.Uint("seq") == seq {
			out = append(out, r)
		}
	}
	return out
}

// fetchOne publishes an event for revyops under contact id and fetches it
// on a connection of its own (returned: closing it makes the event's Nak
// and Term fail), through a consumer of its own.
func (e *embeddedEnv) fetchOne(t *testing.T, id string) (pending, *nats.Conn) {
	t.Helper()
	ctx := testCtx(t)
	subject := "contacts.patch.revyops." + id
	if _, err := e.js.Publish(ctx, subject, []byte(`{"some":"event"}`), jetstream.WithMsgID("evt-"+id)); err != nil {
		t.Fatal(err)
	}
	nc, js := e.connect(t, "fetch-"+id)
	cons, err := js.CreateOrUpdateConsumer(ctx, e.scfg.EventsStream, jetstream.ConsumerConfig{
		Durable: id, FilterSubject: subject, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := <-batch.Messages()
	if !ok {
		t.Fatalf("no message on %s: %v", subject, batch.Error())
	}
	md, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	return pending{msg: m, md: md, seq: md.Sequence.Stream}, nc
}
