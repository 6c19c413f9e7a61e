package lww_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/lww"
)

// TestBatchedReadsCostOneRequestAndStop guards the batched reader's costs:
// concurrent Gets are answered by batched reads alone (no key read on its
// own after a batch that ended normally), and a reader with nothing to
// read sends nothing: one more Get costs exactly one request.
func TestBatchedReadsCostOneRequestAndStop(t *testing.T) {
	ctx := natstest.Context(t)
	js := natstest.JetStream(t)
	s := newStore(t, js, lww.StoreConfig{Bucket: "IDLE"})
	const n = 40
	want := make([]map[string]lww.Clock, n)
	for i := range n {
		if i%2 == 0 {
			continue // never written
		}
		want[i] = map[string]lww.Clock{"first_name": at(i, "e")}
		if _, err := s.Commit(ctx, events.TargetRevyOps, fmt.Sprint(i), lww.State{}, nil, want[i]); err != nil {
			t.Fatal(err)
		}
	}

	nc, err := nats.Connect(js.Conn().ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Synchronous subscriptions queue what they receive in the order the
	// connection reads it, so once a Flush of nc returns, every request
	// sent before it is counted in Pending (a callback may not have run
	// yet).
	subscribe := func(subj string) *nats.Subscription {
		sub, err := nc.SubscribeSync(subj)
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
		return sub
	}
	batchedSub, singleSub := subscribe("$JS.API.DIRECT.GET.KV_IDLE"), subscribe("$JS.API.DIRECT.GET.KV_IDLE.>")
	count := func(sub *nats.Subscription) int {
		t.Helper()
		n, _, err := sub.Pending()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// flushed makes sure every request the store sent has reached the
	// counting subscriptions.
	flushed := func() {
		t.Helper()
		if err := js.Conn().Flush(); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			st, err := s.Get(ctx, events.TargetRevyOps, fmt.Sprint(i))
			switch {
			case err != nil:
				errs <- err
			case !sameClocks(st.Fields, want[i]) && (len(st.Fields) != 0 || len(want[i]) != 0):
				errs <- fmt.Errorf("contact %d: fields %v, want %v", i, st.Fields, want[i])
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	flushed()
	if got := count(singleSub); got != 0 {
		t.Fatalf("%d keys read one by one beside %d batched reads, want 0: a batch that ended normally was taken for a failure", got, count(batchedSub))
	}
	if count(batchedSub) == 0 {
		t.Fatal("no batched read counted: the test watches the wrong subject")
	}

	before := count(batchedSub)
	if _, err := s.Get(ctx, events.TargetRevyOps, "1"); err != nil {
		t.Fatal(err)
	}
	flushed()
	if got := count(batchedSub) - before; got != 1 {
		t.Fatalf("one Get of an idle reader cost %d batched reads, want 1: the reader reads with nothing pending", got)
	}
}
