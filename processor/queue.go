package processor

import (
	"container/heap"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pending is one message the worker holds: fetched, not yet settled.
type pending struct {
	msg    jetstream.Msg
	md     *jetstream.MsgMetadata
	seq    uint64 // stream sequence
	repair bool   // was in a request whose outcome is unknown: its next delivery is a repair
}

// job is what one delivery works on: one contact's messages, in stream
// order, sent as one PATCH when there are several (coalescing).
type job struct {
	key  string // the contact: the message subject
	msgs []pending
}

// contactQueue is one contact's messages waiting in the worker, in stream
// order.
type contactQueue struct {
	key       string
	msgs      []pending
	running   bool      // a job of this contact is being delivered
	inflight  []pending // the running job's messages
	ready     bool      // in queues.ready
	idx       int       // its index in queues.ready while ready
	notBefore time.Time // held back until then (lease held elsewhere, hold after a pause)
}

// queues is the worker's per-contact bookkeeping for one target. It hands
// out jobs so that at most one job per contact runs at a time, and a job
// takes up to coalesce of the contact's queued messages at once. It holds
// only fetched messages, so its size is bounded by the fetcher's room
// (MaxAckPending of the target's consumer): it never grows with the backlog
// in the stream, however long a target is paused.
//
// Jobs go out oldest pending change first: the contact whose first queued
// message has the lowest stream sequence (see readyHeap).
//
// queues is not safe for concurrent use: one lane's loop owns it.
type queues struct {
	coalesce int
	byKey    map[string]*contactQueue
	ready    readyHeap // contacts with a job to hand out, oldest pending change first
	held     int       // messages held, running or queued
	holds    holdHeap  // contacts held back, by the end of their hold
	// keyOf, if set, maps a message's subject to its contact's key: the
	// short form of a partitioned subject, so that a contact's events
	// stored before and after the stream was partitioned share a queue
	// (and never run as two jobs at once).
	keyOf func(subject string) string
}

// holdHeap is a min-heap of held-back contacts by the end of their hold, so
// wake looks only at holds that ended, not at every queued contact. An
// entry whose contact left the queues or whose hold moved is stale and
// skipped when it comes up.
type holdHeap []holdEntry

type holdEntry struct {
	at time.Time
	c  *contactQueue
}

func (h holdHeap) Len() int           { return len(h) }
func (h holdHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h holdHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *holdHeap) Push(x any)        { *h = append(*h, x.(holdEntry)) }
func (h *holdHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func newQueues(coalesce int) *queues {
	return &queues{coalesce: max(coalesce, 1), byKey: map[string]*contactQueue{}}
}

// add queues p behind its contact's other messages, in stream order. If the
// worker already held the same stream message (a redelivery that overtook a
// slow keep-alive), the newer delivery replaces it and add returns true: the
// caller has one message fewer to account for.
func (q *queues) add(p pending, now time.Time) (replaced bool) {
	key := p.msg.Subject()
	if q.keyOf != nil {
		key = q.keyOf(key)
	}
	c := q.byKey[key]
	if c == nil {
		c = &contactQueue{key: key}
		q.byKey[key] = c
	}
	i, found := slices.BinarySearchFunc(c.msgs, p.seq, func(e pending, seq uint64) int {
		switch {
		case e.seq < seq:
			return -1
		case e.seq > seq:
			return 1
		}
		return 0
	})
	if found {
		c.msgs[i] = p
		return true
	}
	c.msgs = slices.Insert(c.msgs, i, p)
	q.held++
	if c.ready && i == 0 {
		heap.Fix(&q.ready, c.idx) // an older message than its first: it moves up
	}
	q.promote(c, now)
	return false
}

// promote puts c on the ready list if it has a job to hand out now.
func (q *queues) promote(c *contactQueue, now time.Time) {
	if c.running || c.ready || len(c.msgs) == 0 || now.Before(c.notBefore) {
		return
	}
	c.ready = true
	heap.Push(&q.ready, c)
}

// peek returns the next job without taking it.
func (q *queues) peek() (job, bool) {
	if len(q.ready) == 0 {
		return job{}, false
	}
	c := q.ready[0]
	n := min(len(c.msgs), q.coalesce)
	return job{key: c.key, msgs: c.msgs[:n:n]}, true
}

// take marks the job peek returned as running.
func (q *queues) take() job {
	j, _ := q.peek()
	c := heap.Pop(&q.ready).(*contactQueue)
	c.ready, c.running, c.inflight = false, true, j.msgs
	c.msgs = slices.Clone(c.msgs[len(j.msgs):])
	return j
}

// finish ends the running job of key. back are the job's messages that were
// not settled (held for a later try, in any order); they are queued again,
// and the contact's next job is not handed out before notBefore.
func (q *queues) finish(key string, settled int, back []pending, notBefore, now time.Time) {
	q.held -= settled
	c := q.byKey[key]
	if c == nil { // cannot happen: a running contact stays in byKey
		return
	}
	c.running, c.inflight = false, nil
	if len(back) > 0 {
		c.msgs = append(slices.Clone(back), c.msgs...)
		slices.SortFunc(c.msgs, func(a, b pending) int {
			switch {
			case a.seq < b.seq:
				return -1
			case a.seq > b.seq:
				return 1
			}
			return 0
		})
		if notBefore.After(c.notBefore) {
			c.notBefore = notBefore
			if notBefore.After(now) {
				heap.Push(&q.holds, holdEntry{at: notBefore, c: c})
			}
		}
	}
	if len(c.msgs) == 0 {
		delete(q.byKey, key)
		return
	}
	q.promote(c, now)
}

// wake promotes every contact whose hold has ended and returns the earliest
// hold still running (zero if none). It costs nothing while no contact is
// held back, and a heap operation per hold otherwise.
func (q *queues) wake(now time.Time) time.Time {
	for len(q.holds) > 0 {
		e := q.holds[0]
		if q.byKey[e.c.key] != e.c || !e.at.Equal(e.c.notBefore) {
			heap.Pop(&q.holds) // stale: the contact left, or its hold moved
			continue
		}
		if now.Before(e.at) {
			return e.at
		}
		heap.Pop(&q.holds)
		q.promote(e.c, now)
	}
	return time.Time{}
}

// readyHeap is a min-heap of the contacts with a job to hand out, by the
// stream sequence of their first queued message: the contact whose oldest
// pending change is oldest goes first. That is the order a user expects
// (first changed, first right), it bounds how long any contact waits, and
// when a rate-limited window opens it favours the contacts most likely to
// have all their events read already (their first event is the oldest), so
// the fewest get a second request for events still arriving. A list in
// the order contacts became ready would put a contact held back (window
// used up, lease busy) behind every contact that arrived during its hold.
type readyHeap []*contactQueue

func (h readyHeap) Len() int           { return len(h) }
func (h readyHeap) Less(i, j int) bool { return h[i].msgs[0].seq < h[j].msgs[0].seq }
func (h readyHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *readyHeap) Push(x any) {
	c := x.(*contactQueue)
	c.idx = len(*h)
	*h = append(*h, c)
}
func (h *readyHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	c.idx = -1
	return c
}

// waiting calls fn for every queued message that is not part of a running job.
func (q *queues) waiting(fn func(pending)) {
	for _, c := range q.byKey {
		for _, p := range c.msgs {
			fn(p)
		}
	}
}

// running calls fn for every message of a running job.
func (q *queues) running(fn func(pending)) {
	for _, c := range q.byKey {
		for _, p := range c.inflight {
			fn(p)
		}
	}
}

// clear forgets every queued message (not the running ones) and returns them.
func (q *queues) clear() []pending {
	var out []pending
	for k, c := range q.byKey {
		out = append(out, c.msgs...)
		q.held -= len(c.msgs)
		c.msgs = nil
		if !c.running {
			delete(q.byKey, k)
		}
	}
	q.ready, q.holds = nil, nil
	return out
}

// dropPartition forgets and returns every queued message (not the running
// ones) whose subject in reports true.
func (q *queues) dropPartition(in func(subject string) bool) []pending {
	var out []pending
	for k, c := range q.byKey {
		kept := c.msgs[:0:0]
		for _, p := range c.msgs {
			if in(p.msg.Subject()) {
				out = append(out, p)
			} else {
				kept = append(kept, p)
			}
		}
		if len(kept) == len(c.msgs) {
			continue
		}
		q.held -= len(c.msgs) - len(kept)
		c.msgs = kept
		if c.ready {
			if len(kept) == 0 {
				heap.Remove(&q.ready, c.idx)
				c.ready = false
			} else {
				heap.Fix(&q.ready, c.idx)
			}
		}
		if len(kept) == 0 && !c.running {
			delete(q.byKey, k)
		}
	}
	return out
}
