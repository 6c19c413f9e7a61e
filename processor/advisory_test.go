package processor

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/ratelimit"
	"github.com/patchbay/patchbay/stream"
	"github.com/patchbay/patchbay/stream/embedded"
)

type unusedProvider struct{}

func (unusedProvider) Patch(context.Context, *events.Event) (Result, error) {
	panic("not called")
}

// TestMaxDeliveriesAdvisoryDeadLetters sets MaxDeliver on the consumer, as an
// operator might, lets JetStream give up on a message, and checks that the
// worker's advisory listener dead-letters it instead of leaving it stranded.
func TestMaxDeliveriesAdvisoryDeadLetters(t *testing.T) {
	t.Parallel()
	emb, err := embedded.Run(embedded.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := stream.Connect(ctx, emb.ClientURL(), "", "advisory-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	scfg := stream.Config{SubjectPrefix: "contacts", EventsStream: "EV", DLQStream: "DLQ", Replicas: 1, DedupWindow: time.Hour, Consumer: "workers", MaxBytes: -1}
	if err := stream.Ensure(ctx, js, scfg); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Concurrency: 1, AckWait: time.Second, MaxAttempts: 3, MaxRetryAge: time.Hour, BackoffInitial: time.Second, BackoffMax: time.Second, CredentialsPause: time.Second}
	targets := map[events.Target]Target{}
	for _, tg := range events.Targets() {
		b, err := ratelimit.New(ctx, js, cfg.BudgetConfig(scfg, tg, "key", 0, 0), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		targets[tg] = Target{Provider: unusedProvider{}, Budget: b}
	}
	w, err := New(cfg, Deps{JS: js, Conn: nc, Stream: scfg, Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := w.watchMaxDeliveries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	ack, err := js.Publish(ctx, "contacts.patch.revyops.5", []byte(`{"some":"event"}`), jetstream.WithMsgID("evt-5"))
	if err != nil {
		t.Fatal(err)
	}
	cc := scfg.ConsumerConfig(time.Second, 10)
	cc.MaxDeliver = 1
	cons, err := js.CreateOrUpdateConsumer(ctx, scfg.EventsStream, cc)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() { // delivered once, never acknowledged
	}

	store := dlq.NewStore(js, scfg.DLQStream, scfg.SubjectPrefix)
	deadline := time.Now().Add(15 * time.Second)
	for {
		ls, err := store.List(ctx, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) == 1 {
			l := ls[0]
			if l.Reason != dlq.ReasonMaxDeliveries || l.StreamSeq != ack.Sequence || l.EventID != "evt-5" || l.Target != "revyops" {
				t.Fatalf("letter %+v", l)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no dead letter after MAX_DELIVERIES")
		}
		time.Sleep(20 * time.Millisecond)
	}
	str, err := js.Stream(ctx, scfg.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := str.GetMsg(ctx, ack.Sequence); err == nil {
		t.Fatal("the stranded message is still in the events stream")
	}
}
