package processor

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/stream"
)

// TestPartitionShareAndStandby: a worker stands by for unowned partitions
// only below its share (⌈partitions ÷ members⌉), or for an orphan, and
// not during the quiet time after giving one away.
func TestPartitionShareAndStandby(t *testing.T) {
	members := 3
	set := &partitionSet{members: func() int { return members }}
	for p := range 8 {
		set.parts = append(set.parts, &partitionState{n: p})
	}
	now := time.Now()
	if got := set.share(); got != 3 {
		t.Fatalf("share of 8 partitions over 3 members: %d, want 3", got)
	}
	for _, p := range set.parts[:3] {
		p.owned.Store(true)
	}
	if ok, standby := set.mayPull(set.parts[0], now); !ok || standby {
		t.Fatal("an owned partition is not pulled in full")
	}
	if ok, _ := set.mayPull(set.parts[5], now); ok {
		t.Fatal("standing by at the share")
	}
	set.parts[5].orphan.Store(true)
	if ok, standby := set.mayPull(set.parts[5], now); !ok || !standby {
		t.Fatal("not standing by for an orphan")
	}
	members = 0 // not known: one member, every partition
	if ok, standby := set.mayPull(set.parts[6], now); !ok || !standby {
		t.Fatal("not standing by with the member count unknown")
	}
	set.parts[6].quiet.Store(now.Add(time.Second).UnixNano())
	if ok, _ := set.mayPull(set.parts[6], now); ok {
		t.Fatal("pulling a partition given away moments ago")
	}
	// A pin refused ends ownership; messages after the quiet time start it.
	p := set.parts[7]
	p.observe(3, nil, now)
	if !p.owned.Load() {
		t.Fatal("messages of a pinned consumer did not make the partition owned")
	}
	p.observe(0, jetstream.ErrPinIDMismatch, now)
	if p.owned.Load() {
		t.Fatal("a refused pin left the partition owned")
	}
	p.quiet.Store(now.Add(time.Second).UnixNano())
	p.observe(3, nil, now)
	if p.owned.Load() {
		t.Fatal("messages still arriving after giving the partition away made it owned again")
	}
}

// TestRebalancerGivesAwayAboveTheShare: with 2 members and 4 partitions,
// a worker owning 3 gives the highest-numbered away: quiet, handed back,
// unpinned.
func TestRebalancerGivesAwayAboveTheShare(t *testing.T) {
	set := &partitionSet{members: func() int { return 2 }}
	for p := range 4 {
		ps := &partitionState{n: p}
		ps.owned.Store(p != 1)
		set.parts = append(set.parts, ps)
	}
	var handed []int
	var unpinned []string
	r := &rebalancer{set: set, log: slog.New(slog.DiscardHandler),
		str: func(context.Context) (jetstream.Stream, error) {
			unpinned = append(unpinned, "asked")
			return nil, errors.New("no NATS in this test")
		},
		consumer: func(p int) string { return "c-" + string(rune('0'+p)) },
		handBack: func(_ context.Context, p int) { handed = append(handed, p) },
	}
	r.step(context.Background(), false)
	if set.owned() != 2 || set.parts[3].owned.Load() || !set.parts[0].owned.Load() || !set.parts[2].owned.Load() {
		t.Fatalf("owned after the step: %v %v %v %v", set.parts[0].owned.Load(), set.parts[1].owned.Load(), set.parts[2].owned.Load(), set.parts[3].owned.Load())
	}
	if !slices.Equal(handed, []int{3}) || len(unpinned) != 1 {
		t.Fatalf("handed back %v, unpin asked %d times; want [3] and once", handed, len(unpinned))
	}
	if time.Now().UnixNano() >= set.parts[3].quiet.Load() {
		t.Fatal("no quiet time after giving the partition away")
	}
}

// TestContactKeyJoinsBothSubjectForms: an event stored before the stream
// was partitioned has the key of its contact's partitioned events.
func TestContactKeyJoinsBothSubjectForms(t *testing.T) {
	w := &Worker{}
	w.scfg.SubjectPrefix = "contacts"
	l := &lane{w: w, parts: make([]jetstream.Consumer, 16)}
	p := stream.PartitionOf("c-1", 16)
	part := "contacts.patch.skipcall." + strconv.Itoa(p) + ".c-1"
	if got := l.contactKey("contacts.patch.skipcall.c-1"); got != part {
		t.Fatalf("short form keyed %q, want %q", got, part)
	}
	if got := l.contactKey(part); got != part {
		t.Fatalf("partitioned form keyed %q", got)
	}
}
