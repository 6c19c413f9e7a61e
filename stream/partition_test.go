package stream

import (
	"fmt"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/natstest"
)

func TestSplitSubject(t *testing.T) {
	for subject, want := range map[string]struct {
		target, contact string
		p               int
		ok              bool
	}{
		"contacts.patch.skipcall.c-1":      {"skipcall", "c-1", -1, true},
		"contacts.patch.skipcall.7.c-1":    {"skipcall", "c-1", 7, true},
		"contacts.patch.skipcall.07.c-1":   {ok: false},
		"contacts.patch.skipcall.x.c-1":    {ok: false},
		"contacts.patch.skipcall.1.c.d":    {ok: false},
		"contacts.patch.skipcall":          {ok: false},
		"contacts.patch.skipcall.":         {ok: false},
		"contacts.patch..c-1":              {ok: false},
		"other.patch.skipcall.c-1":         {ok: false},
		"contacts.dlq.skipcall.c-1":        {ok: false},
		"contacts.patch.skipcall.-1.c-1":   {ok: false},
		"contacts.patch.revyops.255.c-9-z": {"revyops", "c-9-z", 255, true},
	} {
		target, p, contact, ok := SplitSubject("contacts", subject)
		if ok != want.ok || ok && (target != want.target || p != want.p || contact != want.contact) {
			t.Errorf("SplitSubject(%q) = %q %d %q %v, want %+v", subject, target, p, contact, ok, want)
		}
	}
	if got := CanonicalSubject("contacts", "contacts.patch.skipcall.3.c-1"); got != "contacts.patch.skipcall.c-1" {
		t.Errorf("CanonicalSubject of a partitioned subject = %q", got)
	}
	for _, s := range []string{"contacts.patch.skipcall.c-1", "contacts.patch.skipcall.x.c-1", "elsewhere"} {
		if got := CanonicalSubject("contacts", s); got != s {
			t.Errorf("CanonicalSubject(%q) = %q, want it unchanged", s, got)
		}
	}
}

func TestShortFilter(t *testing.T) {
	c := Config{SubjectPrefix: "a.b"}
	for in, want := range map[string]string{
		"a.b.patch.>":          "a.b.patch.*.*",
		"a.b.patch.skipcall.>": "a.b.patch.skipcall.*",
		"a.b.patch.skipcall.*": "a.b.patch.skipcall.*",
		"a.b.patch.x.1.*":      "a.b.patch.x.1.*",
		"a.b.patch.x.y.>":      "a.b.patch.x.y.>",
		"a.b.dlq.>":            "a.b.dlq.>",
	} {
		if got := c.shortFilter(in); got != want {
			t.Errorf("shortFilter(%q) = %q, want %q", in, got, want)
		}
	}
}

// partitionTestConfig is a stream configuration as b50f17e declared it
// (no partitions) with a prefix of two tokens.
func partitionTestConfig() Config {
	return Config{SubjectPrefix: "pb.contacts", EventsStream: "EV", DLQStream: "DLQ", Replicas: 1,
		DedupWindow: time.Hour, Consumer: "workers", MaxBytes: -1}
}

// TestPartitionedStreamStoresByContact: the server's partition is
// PartitionOf's, and a subject already partitioned is stored as it is.
func TestPartitionedStreamStoresByContact(t *testing.T) {
	js := natstest.JetStream(t)
	ctx := natstest.Context(t)
	c := partitionTestConfig()
	c.Partitions = 8
	if err := Ensure(ctx, js, c); err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for i := range 64 {
		contact := fmt.Sprintf("c-%d", i)
		ack, err := js.Publish(ctx, "pb.contacts.patch.skipcall."+contact, []byte("{}"))
		if err != nil {
			t.Fatal(err)
		}
		s, _ := js.Stream(ctx, c.EventsStream)
		raw, err := s.GetMsg(ctx, ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("pb.contacts.patch.skipcall.%d.%s", PartitionOf(contact, 8), contact)
		if raw.Subject != want {
			t.Fatalf("stored as %s, want %s", raw.Subject, want)
		}
		seen[PartitionOf(contact, 8)] = true
	}
	if len(seen) < 6 {
		t.Errorf("64 contacts fell in %d of 8 partitions", len(seen))
	}
	ack, err := js.Publish(ctx, "pb.contacts.patch.skipcall.5.c-x", []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, c.EventsStream)
	if raw, err := s.GetMsg(ctx, ack.Sequence); err != nil || raw.Subject != "pb.contacts.patch.skipcall.5.c-x" {
		t.Fatalf("a partitioned subject was stored as %v (%v)", raw, err)
	}
}

// TestEnsurePartitionsInPlace upgrades a stream as b50f17e left it: the
// events stored before drain through the old per-target consumer (its
// unacknowledged ones included), every later event through a partition
// consumer, none through both; a worker of the previous version cannot
// widen its consumer back; and the count stays fixed.
func TestEnsurePartitionsInPlace(t *testing.T) {
	js := natstest.JetStream(t)
	ctx := natstest.Context(t)
	old := partitionTestConfig()
	if err := Ensure(ctx, js, old); err != nil {
		t.Fatal(err)
	}
	legacy, err := js.CreateOrUpdateConsumer(ctx, old.EventsStream, old.TargetConsumerConfig("skipcall", time.Minute, 1000))
	if err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if _, err := js.Publish(ctx, fmt.Sprintf("pb.contacts.patch.skipcall.c-%d", i%10), fmt.Appendf(nil, "%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(0, 20)
	// An old worker holds 5 of them, unacknowledged, across the upgrade.
	held, err := legacy.Fetch(5, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var inFlight []jetstream.Msg
	for m := range held.Messages() {
		inFlight = append(inFlight, m)
	}
	if len(inFlight) != 5 {
		t.Fatalf("held %d, want 5", len(inFlight))
	}

	c := old
	c.Partitions = 4
	if err := Ensure(ctx, js, c); err != nil {
		t.Fatal(err)
	}
	if err := Ensure(ctx, js, c); err != nil { // a second replica starting
		t.Fatal(err)
	}
	info, err := legacy.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f := info.Config.FilterSubject; f != "pb.contacts.patch.skipcall.*" {
		t.Fatalf("old consumer filters %s after the upgrade", f)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, old.EventsStream, old.TargetConsumerConfig("skipcall", time.Minute, 1000)); err == nil {
		t.Fatal("a worker of the previous version widened its consumer back over the partitioned subjects")
	}
	publish(20, 40)

	got := map[string]int{} // payload → deliveries
	for _, m := range inFlight {
		got[string(m.Data())]++
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	drain := func(cons jetstream.Consumer, opts ...jetstream.FetchOpt) []jetstream.Msg {
		t.Helper()
		var out []jetstream.Msg
		for {
			b, err := cons.Fetch(100, append(opts, jetstream.FetchMaxWait(500*time.Millisecond))...)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for m := range b.Messages() {
				n++
				out = append(out, m)
				if err := m.Ack(); err != nil {
					t.Fatal(err)
				}
			}
			if n == 0 {
				return out
			}
		}
	}
	for _, m := range drain(legacy) {
		if _, p, _, _ := SplitSubject("pb.contacts", m.Subject()); p != -1 {
			t.Errorf("old consumer delivered partitioned %s", m.Subject())
		}
		got[string(m.Data())]++
	}
	// A worker of this version declares the legacy consumer with the
	// partitioned stream's filter: the same as Ensure's.
	if _, err := js.CreateOrUpdateConsumer(ctx, c.EventsStream, c.TargetConsumerConfig("skipcall", time.Minute, 1000)); err != nil {
		t.Fatalf("declaring the narrowed consumer: %v", err)
	}
	for p := range 4 {
		cons, err := js.Consumer(ctx, c.EventsStream, c.PartitionConsumer("skipcall", p))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range drain(cons, jetstream.FetchPriorityGroup(PartitionGroup)) {
			_, mp, contact, ok := SplitSubject("pb.contacts", m.Subject())
			if !ok || mp != p || PartitionOf(contact, 4) != p {
				t.Errorf("partition %d delivered %s", p, m.Subject())
			}
			got[string(m.Data())]++
		}
	}
	for i := range 40 {
		if n := got[fmt.Sprint(i)]; n != 1 {
			t.Errorf("event %d delivered %d times", i, n)
		}
	}
	if len(got) != 40 {
		t.Errorf("delivered %d distinct events, want 40", len(got))
	}

	// The count is the stream's once set.
	c.Partitions = 9
	if err := Ensure(ctx, js, c); err != nil {
		t.Fatal(err)
	}
	if n, err := EventsPartitions(ctx, js, c); err != nil || n != 4 {
		t.Fatalf("partitions after asking for 9: %d (%v), want 4", n, err)
	}
	c.Partitions = 0
	if err := Ensure(ctx, js, c); err != nil {
		t.Fatal(err)
	}
	if n, _ := EventsPartitions(ctx, js, c); n != 4 {
		t.Fatalf("partitions after asking for none: %d, want 4", n)
	}
}

// TestPartitionConsumerPinsOneClient: two clients pull one partition; all
// of it goes to the first one pinned while it keeps pulling, and to the
// other once it is unpinned.
func TestPartitionConsumerPinsOneClient(t *testing.T) {
	emb := natstest.Server(t)
	jsA, jsB := natstest.Connect(t, emb, "a"), natstest.Connect(t, emb, "b")
	ctx := natstest.Context(t)
	c := partitionTestConfig()
	c.Partitions = 1
	if err := Ensure(ctx, jsA, c); err != nil {
		t.Fatal(err)
	}
	name := c.PartitionConsumer("skipcall", 0)
	a, err := jsA.CreateOrUpdateConsumer(ctx, c.EventsStream, c.PartitionConsumerConfig("skipcall", 0, time.Minute, time.Minute, 100))
	if err != nil {
		t.Fatal(err)
	}
	b, err := jsB.Consumer(ctx, c.EventsStream, name)
	if err != nil {
		t.Fatal(err)
	}
	pull := func(cons jetstream.Consumer, wait time.Duration) int {
		bt, err := cons.Fetch(10, jetstream.FetchPriorityGroup(PartitionGroup), jetstream.FetchMaxWait(wait))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range bt.Messages() {
			n++
			_ = m.Ack()
		}
		return n
	}
	for i := range 10 {
		if _, err := jsA.Publish(ctx, "pb.contacts.patch.skipcall.c-"+fmt.Sprint(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := pull(a, 2*time.Second); n != 10 {
		t.Fatalf("a got %d, want 10", n)
	}
	for i := range 5 {
		if _, err := jsA.Publish(ctx, "pb.contacts.patch.skipcall.d-"+fmt.Sprint(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := pull(b, 300*time.Millisecond); n != 0 {
		t.Fatalf("b, not pinned, got %d", n)
	}
	s, _ := jsA.Stream(ctx, c.EventsStream)
	if err := s.UnpinConsumer(ctx, name, PartitionGroup); err != nil {
		t.Fatal(err)
	}
	if n := pull(b, 2*time.Second); n != 5 {
		t.Fatalf("b after the unpin got %d, want 5", n)
	}
}

// TestDefaultPartitionsIsTheEnvironmentDefault: the count a worker gets
// when PATCHBAY_PARTITIONS is unset is the one the code and the bench name.
func TestDefaultPartitionsIsTheEnvironmentDefault(t *testing.T) {
	var c Config
	if err := envconfig.Process("PATCHBAY_TEST_UNSET_PREFIX", &c); err != nil {
		t.Fatal(err)
	}
	if c.Partitions != DefaultPartitions {
		t.Fatalf("PARTITIONS defaults to %d, DefaultPartitions is %d", c.Partitions, DefaultPartitions)
	}
}
