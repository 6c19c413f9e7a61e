package processor_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/stream"
)

// partitionStream partitions s's events stream in place into n partitions,
// as a worker or ingest of this version starting with PARTITIONS=n does.
func partitionStream(t *testing.T, s *pbtest.Stack, n int) {
	t.Helper()
	c := s.Stream
	c.Partitions = n
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := stream.Ensure(ctx, s.JS, c); err != nil {
		t.Fatal(err)
	}
}

// groupMembers counts the members of target's lease group.
func groupMembers(t *testing.T, s *pbtest.Stack, target string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := s.JS.KeyValue(ctx, s.Stream.KVBucket("LEASES"))
	if err != nil {
		return 0
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return 0
	}
	n := 0
	for k := range keys.Keys() {
		if strings.HasPrefix(k, "_group."+target+".member.") {
			n++
		}
	}
	return n
}

// TestPartitionsMeetAContactsEventsInOneWorker guards "a contact's events
// meet in one worker" with two workers on a partitioned stream: Skipcall
// allows 20 requests per 6 s; 20 contacts use the first window up while the
// workers share the 4 partitions out; then 31 other contacts get 4 events (a field each)
// each, interleaved. Each of them gets exactly one request once the window
// opens, both workers deliver some, and no answer is a 429.
func TestPartitionsMeetAContactsEventsInOneWorker(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{SkipcallRate: 20, SkipcallWindow: 6 * time.Second})
	partitionStream(t, s, 4)
	id := func(group string, i int) string { return fmt.Sprintf("%s-2222-4333-8444-%012d", group, i) }
	const warm, contacts, each = 20, 31, 4 // an odd count: events do not fall to workers by the parity of their contact
	for i := range warm {
		s.Skipcall.PutContact(id("10101010", i), map[string]any{"firstName": "A", "lastName": "B"})
	}
	for i := range contacts {
		s.Skipcall.PutContact(id("30303030", i), map[string]any{"firstName": "A", "lastName": "B"})
	}
	cfg := pbtest.WorkerConfig()
	w1 := startObserved(t, s, cfg, nil)
	w2 := startObserved(t, s, cfg, nil)
	pbtest.Eventually(t, waitFor, "both workers in the lease group", func() bool { return groupMembers(t, s, "skipcall") == 2 })
	for i := range warm {
		s.PostEvent(skipEvent(fmt.Sprintf("warm-%d", i), id("10101010", i), map[string]any{"city": "Oslo"}))
	}
	pbtest.Eventually(t, waitFor, "the first window used up", func() bool {
		return s.Skipcall.StatusCounts()[http.StatusOK] >= warm && w1.paused(t, "skipcall") == 1
	})
	fields := [each]string{"city", "company", "role", "country"}
	for k := range each {
		for i := range contacts {
			// A field per event: no event of a contact supersedes another,
			// so events spread over two workers would cost two requests.
			ev := skipEvent(fmt.Sprintf("pt-%d-%d", i, k), id("30303030", i), map[string]any{fields[k]: fmt.Sprintf("V%d", k)})
			ev["occurred_at"] = time.Date(2026, 11, 25, 10, 0, k, 0, time.UTC).Format(time.RFC3339)
			s.PostEvent(ev)
		}
	}
	pbtest.Eventually(t, time.Minute, "every contact applied", func() bool {
		for i := range contacts {
			c, _ := s.Skipcall.Contact(id("30303030", i))
			for k, f := range fields {
				if c[f] != fmt.Sprintf("V%d", k) {
					return false
				}
			}
		}
		return true
	})
	total := 0
	for i := range contacts {
		n := s.Skipcall.PatchCount(id("30303030", i))
		total += n
		if n != 1 {
			t.Errorf("contact %d (partition %d): %d requests, want 1", i, stream.PartitionOf(id("30303030", i), 4), n)
		}
	}
	d1, d2 := w1.deliveries(t, "skipcall", "applied"), w2.deliveries(t, "skipcall", "applied")
	t.Logf("%d requests for %d contacts; applied events: %v and %v", total, contacts, d1, d2)
	if d1 == 0 || d2 == 0 {
		t.Errorf("applied events per worker %v and %v: one worker had every partition", d1, d2)
	}
	if n := s.Skipcall.StatusCounts()[http.StatusTooManyRequests]; n != 0 {
		t.Errorf("%d answers were 429", n)
	}
	// Every event was delivered from a partition consumer.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for p := range 4 {
		c, err := s.JS.Consumer(ctx, s.Stream.EventsStream, s.Stream.PartitionConsumer("skipcall", p))
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.PriorityPolicy != jetstream.PriorityPolicyPinned {
			t.Errorf("partition %d's consumer policy %v", p, info.Config.PriorityPolicy)
		}
	}
}

// TestPartitionedWorkerDeliversAtOnce guards "an idle consumer's waiting
// pull request holds no room the other fetchers need": on a partitioned
// stream, a worker with the default read-ahead (whose largest pull is the
// whole room its deliveries need) gets events posted after it started to
// the provider well before a pull request expires (5 s). Before, the
// target consumer's empty request took all of that room and the partition
// fetchers waited for it to expire.
func TestPartitionedWorkerDeliversAtOnce(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	partitionStream(t, s, 16)
	cfg := pbtest.WorkerConfig()
	cfg.ReadAhead = 10240
	cfg.Concurrency = 16
	w := startObserved(t, s, cfg, nil)
	pbtest.Eventually(t, waitFor, "the worker pulling every partition", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for p := range 16 {
			c, err := s.JS.Consumer(ctx, s.Stream.EventsStream, s.Stream.PartitionConsumer("skipcall", p))
			if err != nil || c.CachedInfo().NumWaiting == 0 {
				return false
			}
		}
		return true
	})
	start := time.Now()
	for i := range 20 {
		id := fmt.Sprintf("70707070-2222-4333-8444-%012d", i)
		s.Skipcall.PutContact(id, map[string]any{"firstName": "A", "lastName": "B"})
		s.PostEvent(skipEvent(fmt.Sprintf("pd-%d", i), id, map[string]any{"city": "X"}))
	}
	pbtest.Eventually(t, waitFor, "every event applied", func() bool { return w.deliveries(t, "skipcall", "applied") == 20 })
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("20 events took %s to apply: a pull request's expiry (5 s) went by", took)
	}
}

// consumerGone reports whether the events stream has no consumer name.
func consumerGone(t *testing.T, s *pbtest.Stack, name string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.JS.Consumer(ctx, s.Stream.EventsStream, name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatal(err)
	}
	return err != nil
}

// TestShortFormConsumerDrainsThenGoes upgrades a stream in place with
// events stored before, one of them held unacknowledged by a worker of
// the previous version: the worker delivers the others through the
// narrowed target consumer and every later event through the partition
// consumers, keeps fetching the narrowed consumer while the held event is
// in the stream, delivers that one too once it is handed back, and only
// then removes the consumer. Every contact gets one request, and a worker
// of the previous version started afterwards cannot declare its consumer.
func TestShortFormConsumerDrainsThenGoes(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	old := s.Stream // as b50f17e declares it: no partitions
	legacy, err := s.JS.CreateOrUpdateConsumer(ctx, old.EventsStream, old.TargetConsumerConfig("skipcall", time.Minute, 1000))
	if err != nil {
		t.Fatal(err)
	}
	id := func(group string, i int) string { return fmt.Sprintf("%s-2222-4333-8444-%012d", group, i) }
	const before, after = 10, 10
	for i := range before {
		s.Skipcall.PutContact(id("50505050", i), map[string]any{"firstName": "A", "lastName": "B"})
		s.PostEvent(skipEvent(fmt.Sprintf("sf-%d", i), id("50505050", i), map[string]any{"city": "Before"}))
	}
	held, err := legacy.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var heldMsg jetstream.Msg
	for m := range held.Messages() {
		heldMsg = m
	}
	if heldMsg == nil {
		t.Fatal("the old worker got no event to hold")
	}
	partitionStream(t, s, 4)
	for i := range after {
		s.Skipcall.PutContact(id("60606060", i), map[string]any{"firstName": "A", "lastName": "B"})
		s.PostEvent(skipEvent(fmt.Sprintf("pf-%d", i), id("60606060", i), map[string]any{"city": "After"}))
	}
	name := s.Stream.TargetConsumer("skipcall")
	pulls := countMsgs(t, s, "$JS.API.CONSUMER.MSG.NEXT."+s.Stream.EventsStream+"."+name)
	cfg := pbtest.WorkerConfig()
	cfg.AckWait = time.Minute // the held event is not redelivered by its ack wait in this test
	w := startObserved(t, s, cfg, nil)
	pbtest.Eventually(t, waitFor, "every event but the held one applied", func() bool {
		return w.deliveries(t, "skipcall", "applied") == before+after-1
	})
	// The narrowed consumer's fetcher goes on: a pull that found nothing
	// is followed by another while the held event is in the stream.
	n0 := pulls.Load()
	pbtest.Eventually(t, waitFor, "the narrowed consumer pulled again after an empty pull", func() bool { return pulls.Load() >= n0+2 })
	if consumerGone(t, s, name) {
		t.Fatal("the narrowed consumer was removed while an event it delivered was not acknowledged")
	}
	if err := heldMsg.Nak(); err != nil { // the old worker hands it back
		t.Fatal(err)
	}
	pbtest.Eventually(t, waitFor, "the held event applied", func() bool {
		return w.deliveries(t, "skipcall", "applied") == before+after
	})
	pbtest.Eventually(t, waitFor, "the drained consumer removed", func() bool { return consumerGone(t, s, name) })
	for i := range before {
		if n := s.Skipcall.PatchCount(id("50505050", i)); n != 1 {
			t.Errorf("contact %d stored before: %d requests, want 1", i, n)
		}
	}
	for i := range after {
		if n := s.Skipcall.PatchCount(id("60606060", i)); n != 1 {
			t.Errorf("contact %d stored after: %d requests, want 1", i, n)
		}
	}
	if _, err := s.JS.CreateOrUpdateConsumer(ctx, old.EventsStream, old.TargetConsumerConfig("skipcall", time.Minute, 1000)); err == nil {
		t.Fatal("a worker of the previous version declared its consumer over every subject form")
	}
	if info, err := processor.ConsumerLag(ctx, s.JS, s.Stream.EventsStream, name); err != nil || info.NumPending+uint64(info.NumAckPending) != 0 {
		t.Fatalf("lag without the target consumer: %+v, %v", info, err)
	}
}

// TestNoShortFormConsumerWithoutShortFormEvents: on a stream created
// partitioned the worker declares no target consumer, and on one
// partitioned in place whose narrowed consumer has nothing left it removes
// that consumer at start; the events are delivered either way.
func TestNoShortFormConsumerWithoutShortFormEvents(t *testing.T) {
	t.Parallel()
	for _, inPlace := range []bool{false, true} {
		t.Run(fmt.Sprintf("in place %v", inPlace), func(t *testing.T) {
			t.Parallel()
			s := pbtest.Start(t, pbtest.Options{})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if inPlace {
				if _, err := s.JS.CreateOrUpdateConsumer(ctx, s.Stream.EventsStream, s.Stream.TargetConsumerConfig("skipcall", time.Minute, 1000)); err != nil {
					t.Fatal(err)
				}
				partitionStream(t, s, 4)
			} else {
				if err := s.JS.DeleteStream(ctx, s.Stream.EventsStream); err != nil {
					t.Fatal(err)
				}
				partitionStream(t, s, 4)
			}
			name := s.Stream.TargetConsumer("skipcall")
			if inPlace == consumerGone(t, s, name) {
				t.Fatalf("before the worker: target consumer there: %v", !consumerGone(t, s, name))
			}
			w := startObserved(t, s, pbtest.WorkerConfig(), nil)
			for i := range 8 {
				id := fmt.Sprintf("80808080-2222-4333-8444-%012d", i)
				s.Skipcall.PutContact(id, map[string]any{"firstName": "A", "lastName": "B"})
				s.PostEvent(skipEvent(fmt.Sprintf("np-%d", i), id, map[string]any{"city": "X"}))
			}
			pbtest.Eventually(t, waitFor, "every event applied", func() bool { return w.deliveries(t, "skipcall", "applied") == 8 })
			if !consumerGone(t, s, name) {
				t.Error("the worker keeps a target consumer with no short-form event to deliver")
			}
			if !consumerGone(t, s, s.Stream.TargetConsumer("revyops")) {
				t.Error("the worker declared a target consumer for revyops")
			}
		})
	}
}
