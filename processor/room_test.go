package processor_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/lease"
)

// TestHeldMessagesKeepTheirRoom guards "the worker holds at most Room
// messages of a target, held ones included": another replica holds one
// contact's lease while a backlog of more than Room events of that contact
// waits in the stream. The worker fetches Room of them and holds them
// (contact_busy) again and again; a held message is not settled, so it
// frees no room, and the fetcher has no pull request waiting at the server
// the whole time. Then the lease is released and every event is applied.
func TestHeldMessagesKeepTheirRoom(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	cfg := pbtest.WorkerConfig()
	// Per-contact leases: the lease held here stands for another replica's
	// (a lone worker under its solo lease takes none).
	cfg.AlwaysLease = true
	room := cfg.Room()
	// Read-ahead room is for a limited or paused target only: this one
	// (no plan limit, not paused) still holds only the room its
	// deliveries need.
	cfg.ReadAhead = 4 * room
	backlog := room + 150
	uuid := "a0a0a0a0-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})

	leases, err := lease.New(context.Background(), s.JS, lease.Config{Bucket: s.Stream.KVBucket("LEASES"), TTL: processor.DefaultLeaseTTL})
	if err != nil {
		t.Fatal(err)
	}
	other, err := leases.Acquire(context.Background(), "skipcall."+uuid)
	if err != nil {
		t.Fatalf("the other replica's lease: %v", err)
	}
	released := false
	defer func() {
		if !released {
			_ = other.Release(context.Background())
		}
	}()
	for i := range backlog {
		ev := skipEvent(fmt.Sprintf("room-%04d", i), uuid, map[string]any{"city": fmt.Sprintf("C%d", i)})
		ev["occurred_at"] = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second).Format(time.RFC3339)
		s.PostEvent(ev)
	}

	w := startObserved(t, s, cfg, nil)
	// Each hold of a job adds its Coalesce messages to the held counter:
	// wait for several rounds of holds, sampling the consumer meanwhile.
	rounds := float64(4 * cfg.Coalesce)
	deadline := time.Now().Add(waitFor)
	samples := 0
	for w.deliveries(t, "skipcall", "held") < rounds {
		if time.Now().After(deadline) {
			t.Fatalf("after %s, %v messages held, want at least %v: the contact's lease is not making the worker hold", waitFor, w.deliveries(t, "skipcall", "held"), rounds)
		}
		info, err := tryConsumerInfo(s, "skipcall")
		if err != nil { // the worker has not declared its consumer yet
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if info.NumWaiting > 0 && info.NumAckPending >= room {
			t.Fatalf("the worker holds %d messages (room %d) and still has %d pull request(s) waiting at the server: room was given back for held messages", info.NumAckPending, room, info.NumWaiting)
		}
		samples++
		time.Sleep(20 * time.Millisecond) // a sampling period, not a synchronisation
	}
	info := consumerInfo(t, s, "skipcall")
	if info.NumAckPending != room || info.NumWaiting != 0 {
		t.Fatalf("after %v holds: %d messages held by the worker (want room, %d) and %d pull requests waiting (want 0)", w.deliveries(t, "skipcall", "held"), info.NumAckPending, room, info.NumWaiting)
	}
	t.Logf("%d samples of the consumer while the worker held %d messages", samples, info.NumAckPending)

	if err := other.Release(context.Background()); err != nil {
		t.Fatalf("releasing the other replica's lease: %v", err)
	}
	released = true
	pbtest.Eventually(t, waitFor, "the whole backlog applied once the lease is free", func() bool {
		return s.StreamMsgs(s.Stream.EventsStream) == 0
	})
	if c, _ := s.Skipcall.Contact(uuid); c["city"] != fmt.Sprintf("C%d", backlog-1) {
		t.Fatalf("contact after the backlog: %v, want the last event's city C%d", c, backlog-1)
	}
}

// tryConsumerInfo returns the info of target's durable consumer, or the
// error of asking for it (the consumer may not be declared yet).
func tryConsumerInfo(s *pbtest.Stack, target string) (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := s.JS.Consumer(ctx, s.Stream.EventsStream, s.Stream.TargetConsumer(target))
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}
