package app

import (
	"context"
	"testing"
	"time"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/stream"
)

// TestStatusCountsDeadLettersByTargetAndReason: the report counts every
// dead letter once, by target and reason, leaves no consumer of its own
// behind, and shows targets no worker has run with as unknown.
func TestStatusCountsDeadLettersByTargetAndReason(t *testing.T) {
	emb := natstest.Server(t)
	js := natstest.Connect(t, emb, t.Name())
	scfg := pbtest.StreamConfig(emb.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := stream.Ensure(ctx, js, scfg); err != nil {
		t.Fatal(err)
	}
	pub := dlq.NewPublisher(js, scfg.SubjectPrefix)
	letters := []struct {
		target string
		reason dlq.Reason
	}{{"skipcall", dlq.ReasonRejected}, {"skipcall", dlq.ReasonRejected}, {"skipcall", dlq.ReasonExhausted}, {"revyops", dlq.ReasonInvalid}}
	for i, l := range letters {
		err := pub.Publish(ctx, dlq.Letter{Reason: l.reason, Target: l.target, Stream: scfg.EventsStream, StreamSeq: uint64(i + 1),
			Subject: scfg.SubjectPrefix + ".patch." + l.target + ".c", Data: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := Status(ctx, js, scfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []LetterCount{{"revyops", dlq.ReasonInvalid, 1}, {"skipcall", dlq.ReasonRejected, 2}, {"skipcall", dlq.ReasonExhausted, 1}}
	if !r.DeadLettersScanned || len(r.DeadLetters) != len(want) {
		t.Fatalf("dead letters %+v (complete %v), want %+v", r.DeadLetters, r.DeadLettersScanned, want)
	}
	for i := range want {
		if r.DeadLetters[i] != want[i] {
			t.Fatalf("dead letters %+v, want %+v", r.DeadLetters, want)
		}
	}
	if r.Streams[1].Messages != 4 {
		t.Fatalf("DLQ stream %+v", r.Streams[1])
	}
	str, err := js.Stream(ctx, scfg.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := str.Info(ctx); err != nil || info.State.Consumers != 0 {
		t.Fatalf("consumers left on the DLQ stream: %+v, %v", info, err)
	}
	for _, ts := range r.Targets {
		if ts.State != "unknown" {
			t.Fatalf("target without a worker: %+v", ts)
		}
	}
}
