package lww_test

import (
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/lww"
)

// TestBatchedReadsCostOneRequestAndStop guards the batched reader's costs:
// concurrent Gets are answered by batched reads alone (no key read on its
// own after a batch that ended normally), and a reader with nothing to
// read sends nothing: one more Get costs exactly one request.
func TestBatchedReadsCostOneRequestAndStop(t *testing.T) {
	ctx := testCtx(t)
	js := startJS(t)
	s := newStore(t, js, lww.StoreConfig{Bucket: "IDLE"})
	const n = 40
	want := make([]map[string]lww.Clock, n)
	for i := range n {
		if i%2 == 0 {
			continue // never written
		}
		want[i] = map[string]lww.Clock{"first_name": at(i, "e")}
		if err := s.Commit(ctx, events.TargetRevyOps, fmt.Sprint(i), lww.State{}, want[i]); err != nil {
			t.Fatal(err)
		}
	}

	nc, err := nats.Connect(js.Conn().ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var batched, single atomic.Int64
	for subj, count := range map[string]*atomic.Int64{
		"$JS.API.DIRECT.GET.KV_IDLE":   &batched,
		"$JS.API.DIRECT.GET.KV_IDLE.>": &single,
	} {
		sub, err := nc.Subscribe(subj, func(*nats.Msg) { count.Add(1) })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
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
			case !reflect.DeepEqual(st.Fields, want[i]) && (len(st.Fields) != 0 || len(want[i]) != 0):
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
	if got := single.Load(); got != 0 {
		t.Fatalf("%d keys read one by one beside %d batched reads, want 0: a batch that ended normally was taken for a failure", got, batched.Load())
	}
	if batched.Load() == 0 {
		t.Fatal("no batched read counted: the test watches the wrong subject")
	}

	before := batched.Load()
	if _, err := s.Get(ctx, events.TargetRevyOps, "1"); err != nil {
		t.Fatal(err)
	}
	flushed()
	if got := batched.Load() - before; got != 1 {
		t.Fatalf("one Get of an idle reader cost %d batched reads, want 1: the reader reads with nothing pending", got)
	}
}
