package lww_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/lww"
)

// TestConcurrentGetsAreBatched: many deliveries reading state at once are
// answered by far fewer requests, and each gets exactly its own contact's
// state: committed, deleted, purged or never written.
func TestConcurrentGetsAreBatched(t *testing.T) {
	ctx := natstest.Context(t)
	js := natstest.JetStream(t)
	s := newStore(t, js, lww.StoreConfig{Bucket: "BATCH"})
	kv, err := js.KeyValue(ctx, "BATCH")
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	want := make([]map[string]lww.Clock, n)
	for i := range n {
		contact := fmt.Sprint(i)
		switch i % 4 {
		case 0: // never written
		case 1, 2: // committed (2: then deleted or purged below)
			applied := map[string]lww.Clock{"first_name": at(i, "e"), fmt.Sprintf("f%d", i): at(1, "x")}
			if _, err := s.Commit(ctx, events.TargetRevyOps, contact, lww.State{}, nil, applied); err != nil {
				t.Fatal(err)
			}
			if i%4 == 1 {
				want[i] = applied
			}
		case 3:
			if _, err := s.Commit(ctx, events.TargetRevyOps, contact, lww.State{}, nil, map[string]lww.Clock{"email": at(1, "a")}); err != nil {
				t.Fatal(err)
			}
		}
		if i%4 == 2 {
			if err := kv.Delete(ctx, "revyops."+contact); err != nil {
				t.Fatal(err)
			}
		}
		if i%4 == 3 {
			if err := kv.Purge(ctx, "revyops."+contact); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Count the read requests the store sends.
	nc, err := nats.Connect(js.Conn().ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var requests atomic.Int64
	sub, err := nc.Subscribe("$JS.API.DIRECT.GET.KV_BATCH", func(*nats.Msg) { requests.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			st, err := s.Get(ctx, events.TargetRevyOps, fmt.Sprint(i))
			if err != nil {
				errs <- err
				return
			}
			if !sameClocks(st.Fields, want[i]) && !(len(st.Fields) == 0 && len(want[i]) == 0) {
				errs <- fmt.Errorf("contact %d: fields %v, want %v", i, st.Fields, want[i])
				return
			}
			if (st.Revision != 0) != (want[i] != nil) {
				errs <- fmt.Errorf("contact %d: revision %d with fields %v", i, st.Revision, want[i])
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	got := requests.Load()
	t.Logf("%d concurrent Gets in %d requests", n, got)
	if got == 0 || got > n/4 {
		t.Fatalf("%d concurrent Gets took %d read requests, want at least 1 and at most %d", n, got, n/4)
	}

	// A committed state read back gives the revision Commit builds on.
	st, err := s.Get(ctx, events.TargetRevyOps, "1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, events.TargetRevyOps, "1", st, nil, map[string]lww.Clock{"first_name": at(1000, "z")}); err != nil {
		t.Fatalf("commit on a batched read's revision: %v", err)
	}
}

// sameClocks reports whether a and b hold the same fields with Equal
// clocks (the order; what describes the event is not compared).
func sameClocks(a, b map[string]lww.Clock) bool {
	if len(a) != len(b) {
		return false
	}
	for n, c := range a {
		if o, ok := b[n]; !ok || !o.Equal(c) {
			return false
		}
	}
	return true
}
