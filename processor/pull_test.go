package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/lease"
)

// pullRequests records the batch sizes of the pull requests sent to a
// target's consumer, as the server receives them.
type pullRequests struct {
	mu      sync.Mutex
	batches []int
	at      []time.Time // when each arrived
}

// watchPulls subscribes to target's pull requests on the stack's NATS.
func watchPulls(t *testing.T, s *pbtest.Stack, target string) *pullRequests {
	t.Helper()
	p := &pullRequests{}
	subj := "$JS.API.CONSUMER.MSG.NEXT." + s.Stream.EventsStream + "." + s.Stream.TargetConsumer(target)
	sub, err := s.NC.Subscribe(subj, func(m *nats.Msg) {
		var req struct {
			Batch int `json:"batch"`
		}
		if err := json.Unmarshal(m.Data, &req); err != nil {
			req.Batch = -1 // not a JSON request: counted, never a size the test wants
		}
		p.mu.Lock()
		p.batches = append(p.batches, req.Batch)
		p.at = append(p.at, time.Now())
		p.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := s.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	return p
}

// sizes returns the batch sizes seen so far.
func (p *pullRequests) sizes() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.batches...)
}

// TestPullRequestsUnderABacklogAreLarge guards "pull requests stay large
// under a backlog" (Config.Room, fetcher.gather): a backlog of more than
// the room is fetched with a first pull request of the largest batch (half
// the room) and far fewer requests than messages, not one per message.
func TestPullRequestsUnderABacklogAreLarge(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	cfg := pbtest.WorkerConfig()
	maxBatch := min(cfg.Room()/2, 512)
	backlog := cfg.Room() + 100
	for i := range backlog {
		uuid := fmt.Sprintf("b0b0b0b0-2222-4333-8444-%012d", i)
		s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
		s.PostEvent(skipEvent(fmt.Sprintf("pull-%d", i), uuid, map[string]any{"city": "Ghent"}))
	}
	pulls := watchPulls(t, s, "skipcall")
	s.StartWorker(cfg)
	pbtest.Eventually(t, time.Minute, "the backlog applied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
	got := pulls.sizes()
	if len(got) == 0 || got[0] != maxBatch {
		t.Fatalf("pull requests %v: the first of a backlog of %d should ask for %d messages", got[:min(len(got), 20)], backlog, maxBatch)
	}
	if len(got) > backlog/2 {
		t.Fatalf("%d pull requests for a backlog of %d events (first ones %v): the fetcher asks message by message", len(got), backlog, got[:20])
	}
	t.Logf("%d pull requests for %d events; first ones: %v", len(got), backlog, got[:min(len(got), 10)])
}

// TestNearlyFullWorkerStillFetches guards "a contact whose events are held
// does not stop the others", down to the last free room: another replica
// holds contact A's lease and the worker holds all but a few of its room
// with A's events. The fetcher asks for exactly the room left (a short
// wait for more room that held events never free must end), and an event
// of contact B posted then is applied while A's lease is still held.
func TestNearlyFullWorkerStillFetches(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	cfg := pbtest.WorkerConfig()
	// Per-contact leases: the lease held here stands for another replica's
	// (a lone worker under its solo lease takes none).
	cfg.AlwaysLease = true
	const free = 12
	held := cfg.Room() - free
	a, b := "a3a3a3a3-2222-4333-8444-555555555555", "b3b3b3b3-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(a, map[string]any{"firstName": "A", "lastName": "B"})
	s.Skipcall.PutContact(b, map[string]any{"firstName": "A", "lastName": "B"})
	for i := range held {
		s.PostEvent(skipEvent(fmt.Sprintf("full-a-%04d", i), a, map[string]any{"city": "Metz"}))
	}
	// The other replica's lease is taken once the events are posted (which
	// takes a while on a busy machine): it must outlast the rest of the
	// test, and it is not renewed.
	leases, err := lease.New(context.Background(), s.JS, lease.Config{Bucket: s.Stream.KVBucket("LEASES"), TTL: processor.DefaultLeaseTTL})
	if err != nil {
		t.Fatal(err)
	}
	other, err := leases.Acquire(context.Background(), "skipcall."+a)
	if err != nil {
		t.Fatalf("the other replica's lease: %v", err)
	}
	defer func() { _ = other.Release(context.Background()) }()
	pulls := watchPulls(t, s, "skipcall")
	w := startObserved(t, s, cfg, nil)
	// The pull request that A's events did not fill expires (fetchExpiry);
	// then the fetcher must ask for the room left.
	pbtest.Eventually(t, waitFor, fmt.Sprintf("a pull request for the %d messages of room left beside %d held ones", free, held), func() bool {
		got := pulls.sizes()
		return len(got) > 0 && got[len(got)-1] == free && w.deliveries(t, "skipcall", "held") > 0
	})
	s.PostEvent(skipEvent("full-b-1", b, map[string]any{"city": "Nancy"}))
	pbtest.Eventually(t, waitFor, "contact B applied while A's events fill the worker", func() bool {
		c, _ := s.Skipcall.Contact(b)
		return c["city"] == "Nancy"
	})
	if c, _ := s.Skipcall.Contact(a); c["city"] == "Metz" {
		t.Fatalf("contact A was applied while another replica held its lease")
	}
}
