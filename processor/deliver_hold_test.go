package processor_test

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/lease"
)

// TestContactLeaseUnavailableHoldsTheEvent: when the contact's lease cannot
// be taken because NATS fails (here its bucket is gone), nothing is sent to
// the provider and nothing is dead-lettered: the event waits in the worker,
// an operator is told why, and it is applied once the bucket is back.
func TestContactLeaseUnavailableHoldsTheEvent(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	logs := recordLogs(s)
	s.RevyOps.PutContact(7, map[string]any{"first_name": "Old", "last_name": "Name"})
	cfg := pbtest.WorkerConfig()
	cfg.AlwaysLease = true // a lease per contact
	w := startObserved(t, s, cfg, nil)
	bucket := s.Stream.KVBucket("LEASES")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	pbtest.Eventually(t, waitFor, "the worker's lease bucket declared", func() bool {
		_, err := s.JS.KeyValue(ctx, bucket) // the last thing the worker's setup declares
		return err == nil
	})
	deleteBucket(t, s, "LEASES")()

	s.PostEvent(revEvent("nolease-1", 7, map[string]any{"first_name": "Ada"}))
	const msg = "contact lease unavailable; holding the events"
	pbtest.Eventually(t, waitFor, "the event held for its lease", func() bool {
		return len(logs.Records(msg)) > 0 && w.deliveries(t, "revyops", "held") > 0
	})
	expectLog(t, logs, slog.LevelWarn, msg, map[string]string{"provider": "revyops", "err": ""})
	if n := s.RevyOps.PatchCount(7); n != 0 {
		t.Fatalf("%d PATCHes without the contact's lease, want 0", n)
	}

	if _, err := lease.New(ctx, s.JS, lease.Config{Bucket: bucket, TTL: processor.DefaultLeaseTTL}); err != nil {
		t.Fatal(err)
	}
	pbtest.Eventually(t, waitFor, "the event applied once the lease bucket is back", func() bool {
		c, _ := s.RevyOps.Contact(7)
		return c["first_name"] == "Ada" && s.StreamMsgs(s.Stream.EventsStream) == 0
	})
	if ls := dlqLetters(t, s); len(ls) != 0 {
		t.Fatalf("dead letters: %+v", ls)
	}
}

// callHook passes PATCHes to the provider client, running before(n, ctx)
// before the n-th (from 1); a before that returns an error fails the call
// with it, unsent.
type callHook struct {
	inner  processor.Provider
	before func(ctx context.Context, n int) error
	calls  atomic.Int64
}

func (p *callHook) Patch(ctx context.Context, ev *events.Event) (processor.Result, error) {
	if err := p.before(ctx, int(p.calls.Add(1))); err != nil {
		return processor.Result{}, err
	}
	return p.inner.Patch(ctx, ev)
}

// TestOneByOne: a coalesced PATCH of three events is rejected (400), so
// they are sent one at a time, in stream order, under the same lease:
//   - a bad one is dead-lettered alone, and the others applied, each on its
//     own (the rest of the job is not merged again);
//   - when the first of them meets a 429, it is held until the pause ends,
//     and so are the events after it, unsent: none is left unsettled to come
//     back after the ack wait, and once the pause is over they are merged
//     and applied together.
func TestOneByOne(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		fail     map[int]int // RevyOps' answer to the n-th PATCH (from 1), when not 200
		statuses []int       // RevyOps' answers, in order
		dead     []string    // event ids dead-lettered
		contact  map[string]any
	}{
		{name: "a bad event is dead-lettered alone",
			fail: map[int]int{2: http.StatusBadRequest, 4: http.StatusBadRequest}, statuses: []int{200, 400, 200, 400, 200}, dead: []string{"obo-2"},
			contact: map[string]any{"first_name": "Ada", "last_name": "Name", "email": "ada@example.com"}},
		{name: "a held event holds the rest",
			fail: map[int]int{2: http.StatusBadRequest, 3: http.StatusTooManyRequests}, statuses: []int{200, 400, 429, 200},
			contact: map[string]any{"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := pbtest.Start(t, pbtest.Options{})
			s.RevyOps.PutContact(7, map[string]any{"first_name": "Old", "last_name": "Name"})
			started, gate := make(chan struct{}), make(chan struct{})
			w := startObserved(t, s, pbtest.WorkerConfig(), func(tg events.Target, p processor.Provider) processor.Provider {
				if tg != events.TargetRevyOps {
					return p
				}
				return &callHook{inner: p, before: func(ctx context.Context, n int) error {
					if n == 1 { // the first event's PATCH waits until the others are queued behind it
						close(started)
						select {
						case <-gate:
						case <-ctx.Done():
							return ctx.Err()
						}
					}
					if status, ok := tc.fail[n]; ok {
						s.RevyOps.FailNext(1, status) // a 429 comes with Retry-After: 1
					}
					return nil
				}}
			})
			s.PostEvent(revEvent("obo-0", 7, map[string]any{"first_name": "Zed"}))
			<-started
			s.PostEvent(revEvent("obo-1", 7, map[string]any{"first_name": "Ada"}))
			s.PostEvent(revEvent("obo-2", 7, map[string]any{"last_name": "Lovelace"}))
			s.PostEvent(revEvent("obo-3", 7, map[string]any{"email": "ada@example.com"}))
			pbtest.Eventually(t, waitFor, "the three events in the worker behind the first", func() bool {
				return consumerInfo(t, s, "revyops").NumAckPending == 4
			})
			close(gate)
			pbtest.Eventually(t, waitFor, "every event settled", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
			var statuses []int
			for _, r := range s.RevyOps.Requests() {
				statuses = append(statuses, r.Status)
			}
			if !slices.Equal(statuses, tc.statuses) {
				t.Fatalf("RevyOps answered %v, want %v", statuses, tc.statuses)
			}
			var dead []string
			for _, l := range dlqLetters(t, s) {
				dead = append(dead, l.EventID)
			}
			if !slices.Equal(dead, tc.dead) {
				t.Fatalf("dead letters %v, want %v", dead, tc.dead)
			}
			if n := w.deliveries(t, "revyops", "applied"); n != float64(4-len(tc.dead)) {
				t.Fatalf("%.0f deliveries applied, want %d", n, 4-len(tc.dead))
			}
			c, _ := s.RevyOps.Contact(7)
			for k, v := range tc.contact {
				if c[k] != v {
					t.Fatalf("contact %v, want %s %v", c, k, v)
				}
			}
			if n := consumerInfo(t, s, "revyops").NumRedelivered; n != 0 {
				t.Fatalf("%d events redelivered by JetStream: an event of the job was left unsettled", n)
			}
		})
	}
}
