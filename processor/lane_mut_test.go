package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/lease"
)

// TestLaneHeldMessagesKeepTheirRoom: a message held in the worker (here:
// another replica holds its contact's lease) still takes up the worker's
// room, so a worker whose room is full of held messages sends no pull
// request at all. Giving their room back would let the fetcher ask for
// messages it has no room for: a pull request waiting at the server for
// whatever the consumer frees next, taken from the other replicas.
func TestLaneHeldMessagesKeepTheirRoom(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	cfg := pbtest.WorkerConfig()
	cfg.AlwaysLease = true // a per-contact lease for every delivery
	room := cfg.Room()

	// Another replica holds the contact's lease for the whole test.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	other, err := lease.New(ctx, s.JS, lease.Config{Bucket: s.Stream.KVBucket("LEASES"), TTL: processor.DefaultLeaseTTL, Holder: "another-replica"})
	if err != nil {
		t.Fatal(err)
	}
	uuid := "e1e1e1e1-2222-4333-8444-555555555555"
	if _, err := other.Acquire(ctx, "skipcall."+uuid); err != nil {
		t.Fatal(err)
	}

	// More events than the worker has room for, all in the stream before
	// it starts, so every pull request it sends is filled at once.
	n := room + 100
	batch := make([]map[string]any, n)
	for i := range batch {
		batch[i] = skipEvent(fmt.Sprintf("room-%d", i), uuid, map[string]any{"city": fmt.Sprintf("Town %d", i)})
	}
	body, _ := json.Marshal(batch)
	if code, resp := s.Post(body, nil); code != http.StatusAccepted {
		t.Fatalf("POST batch: %d %s", code, resp)
	}

	w := startObserved(t, s, cfg, nil)
	pbtest.Eventually(t, waitFor, fmt.Sprintf("the worker holding its room (%d messages)", room), func() bool {
		info, ok := laneConsumerInfo(s, "skipcall")
		return ok && info.NumAckPending == room
	})
	// Watch across several hold cycles (leaseRetry, 200 ms each).
	held := w.deliveries(t, "skipcall", "held")
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		info := consumerInfo(t, s, "skipcall")
		if info.NumWaiting != 0 {
			t.Fatalf("%d pull request(s) waiting at the server from a worker whose room (%d) is full of held messages (%d ack pending): held messages gave their room back",
				info.NumWaiting, room, info.NumAckPending)
		}
		if info.NumAckPending > room {
			t.Fatalf("%d messages delivered to a worker with room for %d", info.NumAckPending, room)
		}
	}
	if now := w.deliveries(t, "skipcall", "held"); now <= held {
		t.Fatalf("no delivery held while the contact's lease was another replica's (held %v, then %v): the test saw nothing", held, now)
	}
}

// laneConsumerInfo returns the info of target's durable consumer, and false
// while it does not exist yet (the worker declares it as it starts).
func laneConsumerInfo(s *pbtest.Stack, target string) (*jetstream.ConsumerInfo, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := s.JS.Consumer(ctx, s.Stream.EventsStream, s.Stream.TargetConsumer(target))
	if err != nil {
		return nil, false
	}
	info, err := c.Info(ctx)
	return info, err == nil
}

// TestLaneStoppedWorkerLeavesItsLeaseGroup: a worker that stops gives its
// target's lease group up at once (its member key and its solo lease), so
// the worker that replaces it delivers at once instead of waiting up to
// LeaseTTL (30 s here) for the keys to expire.
func TestLaneStoppedWorkerLeavesItsLeaseGroup(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	cfg := pbtest.WorkerConfig() // solo leases, LeaseTTL 30 s
	uuid := "e2e2e2e2-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})

	first := startObserved(t, s, cfg, nil)
	s.PostEvent(skipEvent("leave-1", uuid, map[string]any{"city": "Graz"}))
	pbtest.Eventually(t, waitFor, "the first worker's delivery", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["city"] == "Graz"
	})
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := s.JS.KeyValue(ctx, s.Stream.KVBucket("LEASES"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeysFiltered(ctx, "_group.>")
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for k := range keys.Keys() {
		left = append(left, k)
	}
	if len(left) != 0 {
		t.Fatalf("a stopped worker left its lease group keys behind until their TTL: %v", left)
	}

	// Its replacement delivers well within the 30 s lease TTL.
	startObserved(t, s, cfg, nil)
	s.PostEvent(skipEvent("leave-2", uuid, map[string]any{"city": "Linz"}))
	pbtest.Eventually(t, 5*time.Second, "the replacement worker's delivery", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["city"] == "Linz"
	})
}
