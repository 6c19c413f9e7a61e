package processor_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/pbtest"
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
	pbtest.Eventually(t, waitFor, "the worker's consumers declared", func() bool {
		_, err := tryConsumerInfo(s, "skipcall")
		return err == nil
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
