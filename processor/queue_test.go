package processor

import (
	"container/heap"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fakeMsg is a jetstream.Msg that only knows its subject and sequence: the
// queues never settle messages, so nothing else is called.
type fakeMsg struct {
	jetstream.Msg
	subject string
	seq     uint64
}

func (m fakeMsg) Subject() string                           { return m.subject }
func (m fakeMsg) Headers() nats.Header                      { return nil }
func (m fakeMsg) Data() []byte                              { return nil }
func (m fakeMsg) String() string                            { return fmt.Sprintf("%s#%d", m.subject, m.seq) }
func (m fakeMsg) Metadata() (*jetstream.MsgMetadata, error) { return m.md(), nil }
func (m fakeMsg) md() *jetstream.MsgMetadata {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.seq}, NumDelivered: 1}
}

func pend(subject string, seq uint64) pending {
	m := fakeMsg{subject: subject, seq: seq}
	return pending{msg: m, md: m.md(), seq: seq}
}

func seqs(j job) []uint64 {
	var out []uint64
	for _, p := range j.msgs {
		out = append(out, p.seq)
	}
	return out
}

func TestQueuesOneJobPerContactInStreamOrder(t *testing.T) {
	now := time.Unix(1000, 0)
	q := newQueues(3)
	// Deliveries arrive out of stream order (redeliveries, two fetches).
	for _, s := range []uint64{5, 2, 9, 7, 1} {
		q.add(pend("c.a", s), now)
	}
	q.add(pend("c.b", 3), now)

	j, ok := q.peek()
	if !ok || j.key != "c.a" || !slices.Equal(seqs(j), []uint64{1, 2, 5}) {
		t.Fatalf("first job %v %v, want c.a [1 2 5] (stream order, at most coalesce)", j.key, seqs(j))
	}
	q.take()
	j2 := q.take()
	if j2.key != "c.b" {
		t.Fatalf("second job for %s, want c.b", j2.key)
	}
	if _, ok := q.peek(); ok {
		t.Fatal("a second job of c.a was handed out while its first runs")
	}
	// A message of a running contact waits behind it.
	q.add(pend("c.a", 4), now)
	if _, ok := q.peek(); ok {
		t.Fatal("c.a handed out while running")
	}
	q.finish("c.a", 3, nil, time.Time{}, now)
	j3 := q.take()
	if j3.key != "c.a" || !slices.Equal(seqs(j3), []uint64{4, 7, 9}) {
		t.Fatalf("after finish: %s %v, want c.a [4 7 9]", j3.key, seqs(j3))
	}
	if q.held != 4 { // c.b's 3, and c.a's 4, 7, 9 running
		t.Fatalf("held = %d, want 4", q.held)
	}
}

func TestQueuesHoldBackAndWake(t *testing.T) {
	now := time.Unix(1000, 0)
	q := newQueues(10)
	q.add(pend("c.a", 1), now)
	q.add(pend("c.a", 2), now)
	j := q.take()
	q.add(pend("c.a", 3), now)
	// The job is held (pause): its messages go back in front, in order.
	until := now.Add(time.Second)
	q.finish(j.key, 0, j.msgs, until, now)
	if _, ok := q.peek(); ok {
		t.Fatal("held contact handed out before its hold ends")
	}
	if next := q.wake(now.Add(500 * time.Millisecond)); !next.Equal(until) {
		t.Fatalf("wake returned %v, want %v", next, until)
	}
	if next := q.wake(until); !next.IsZero() {
		t.Fatalf("wake after the hold returned %v, want zero", next)
	}
	j, ok := q.peek()
	if !ok || !slices.Equal(seqs(j), []uint64{1, 2, 3}) {
		t.Fatalf("after the hold: %v, want [1 2 3]", seqs(j))
	}
	if q.held != 3 {
		t.Fatalf("held = %d, want 3", q.held)
	}
}

func TestQueuesRedeliveryReplacesHeldCopy(t *testing.T) {
	now := time.Unix(1000, 0)
	q := newQueues(10)
	if q.add(pend("c.a", 1), now) {
		t.Fatal("first add reported a replacement")
	}
	if !q.add(pend("c.a", 1), now) {
		t.Fatal("a second delivery of seq 1 was queued twice")
	}
	if q.held != 1 {
		t.Fatalf("held = %d, want 1", q.held)
	}
}

func TestQueuesSettledContactIsForgotten(t *testing.T) {
	now := time.Unix(1000, 0)
	q := newQueues(10)
	for s := range uint64(100) {
		q.add(pend(fmt.Sprintf("c.%d", s), s), now)
	}
	for range 100 {
		j := q.take()
		q.finish(j.key, len(j.msgs), nil, time.Time{}, now)
	}
	if len(q.byKey) != 0 || q.held != 0 || len(q.ready) != 0 {
		t.Fatalf("bookkeeping left after every message settled: %d contacts, %d held, %d ready", len(q.byKey), q.held, len(q.ready))
	}
}

func TestQueuesClearReturnsOnlyWaiting(t *testing.T) {
	now := time.Unix(1000, 0)
	q := newQueues(1)
	q.add(pend("c.a", 1), now)
	q.add(pend("c.a", 2), now)
	q.add(pend("c.b", 3), now)
	q.take() // c.a #1 runs
	got := q.clear()
	var s []uint64
	for _, p := range got {
		s = append(s, p.seq)
	}
	slices.Sort(s)
	if !slices.Equal(s, []uint64{2, 3}) {
		t.Fatalf("clear returned %v, want the waiting [2 3]", s)
	}
	if q.held != 1 {
		t.Fatalf("held = %d, want the running 1", q.held)
	}
}

// TestQueuesWakeInHoldOrder: many contacts held until different times wake
// in the order their holds end, each exactly when its hold ends; a hold
// that was extended does not wake at its first end.
func TestQueuesWakeInHoldOrder(t *testing.T) {
	now := time.Unix(1000, 0)
	q := newQueues(10)
	const n = 50
	for i := range n {
		key := fmt.Sprintf("c.%02d", i)
		q.add(pend(key, uint64(i+1)), now)
	}
	// Hold contact i until now + (n-i) seconds: the last added ends first.
	for range n {
		j := q.take()
		var i int
		fmt.Sscanf(j.key, "c.%d", &i)
		q.finish(j.key, 0, j.msgs, now.Add(time.Duration(n-i)*time.Second), now)
	}
	q.add(pend("c.49", 100), now)
	if next := q.wake(now); !next.Equal(now.Add(time.Second)) {
		t.Fatalf("first hold ends at %v, want +1s", next.Sub(now))
	}
	// Its hold is moved to +100s behind the queue's back: the +1s entry
	// is stale and must be skipped.
	c := q.byKey["c.49"]
	c.notBefore = now.Add(100 * time.Second)
	heap.Push(&q.holds, holdEntry{at: c.notBefore, c: c})
	var order []string
	for s := 1; s <= 100; s++ {
		at := now.Add(time.Duration(s) * time.Second)
		q.wake(at)
		for {
			j, ok := q.peek()
			if !ok {
				break
			}
			q.take()
			order = append(order, fmt.Sprintf("%s@%d", j.key, s))
			q.finish(j.key, len(j.msgs), nil, time.Time{}, at)
		}
	}
	if len(order) != n {
		t.Fatalf("%d contacts woke, want %d: %v", len(order), n, order)
	}
	for k, got := range order[:n-1] {
		i := n - 2 - k // contact 48 first (at +2s), then 47 ...
		if want := fmt.Sprintf("c.%02d@%d", i, n-i); got != want {
			t.Fatalf("wake %d: %s, want %s (all: %v)", k, got, want, order)
		}
	}
	if got := order[n-1]; got != "c.49@100" {
		t.Fatalf("the extended hold woke as %s, want c.49@100", got)
	}
}

// TestQueuesKeepAliveCoversWaitingAndRunning: between them, waiting and
// running list every message the worker holds, each once: the queued ones
// and those of running jobs, which the lane's keep-alive covers; a
// finished job's settled messages leave the lists, its held ones come back
// as waiting.
func TestQueuesKeepAliveCoversWaitingAndRunning(t *testing.T) {
	now := time.Unix(1000, 0)
	q := newQueues(2)
	for _, s := range []uint64{1, 2, 3} {
		q.add(pend("c.a", s), now)
	}
	q.add(pend("c.b", 4), now)
	listed := func() (waiting, running []uint64) {
		q.waiting(func(p pending) { waiting = append(waiting, p.seq) })
		q.running(func(p pending) { running = append(running, p.seq) })
		slices.Sort(waiting)
		slices.Sort(running)
		return waiting, running
	}
	ja := q.take() // c.a: 1, 2
	jb := q.take() // c.b: 4
	if w, r := listed(); !slices.Equal(w, []uint64{3}) || !slices.Equal(r, []uint64{1, 2, 4}) {
		t.Fatalf("waiting %v, running %v; want [3] and [1 2 4]", w, r)
	}
	q.finish(jb.key, 1, nil, time.Time{}, now)
	q.finish(ja.key, 1, ja.msgs[1:], now.Add(time.Second), now) // 2 held
	if w, r := listed(); !slices.Equal(w, []uint64{2, 3}) || len(r) != 0 {
		t.Fatalf("waiting %v, running %v; want [2 3] and none", w, r)
	}
}

// TestQueuesOldestPendingChangeFirst: jobs go out by their contact's
// oldest queued message, also after a hold: a contact held back (its window
// used up) goes before the contacts that became ready during its hold.
func TestQueuesOldestPendingChangeFirst(t *testing.T) {
	now := time.Unix(1000, 0)
	q := newQueues(100)
	q.add(pend("c.a", 10), now)
	q.add(pend("c.b", 4), now)
	q.add(pend("c.c", 7), now)
	q.add(pend("c.a", 2), now) // a redelivery older than c.a's first: c.a moves up
	var order []string
	for {
		j, ok := q.peek()
		if !ok {
			break
		}
		order = append(order, j.key)
		q.take()
	}
	if !slices.Equal(order, []string{"c.a", "c.b", "c.c"}) {
		t.Fatalf("jobs in order %v, want c.a c.b c.c (oldest pending change first)", order)
	}
	// c.b is held back until later; meanwhile c.d and c.e become ready.
	ja := q.byKey["c.a"].inflight
	q.finish("c.a", len(ja), nil, time.Time{}, now)
	jb := q.byKey["c.b"].inflight
	q.finish("c.b", 0, jb, now.Add(time.Second), now)
	q.finish("c.c", 1, nil, time.Time{}, now)
	q.add(pend("c.d", 20), now)
	q.add(pend("c.e", 21), now)
	q.add(pend("c.b", 22), now) // c.b's newer event joins its held ones
	later := now.Add(2 * time.Second)
	q.wake(later)
	j, _ := q.peek()
	if j.key != "c.b" || !slices.Equal(seqs(j), []uint64{4, 22}) {
		t.Fatalf("after the hold the first job is %s %v, want c.b [4 22]", j.key, seqs(j))
	}
}
