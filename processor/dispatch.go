package processor

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// fenceSlack is added to an ordering deferral so the earlier event is
// redelivered before the later one that waits for it.
const fenceSlack = 100 * time.Millisecond

// fence holds back later events of one contact while an earlier one waits
// for its retry: events of a contact are applied in stream order.
type fence struct {
	seq   uint64
	until time.Time
}

// tracked is what the worker remembers of a message between deliveries.
type tracked struct {
	deferrals int       // deliveries that were not attempts
	first     time.Time // first time this worker saw it
}

// dispatcher runs in the worker's Run goroutine only: it hands messages to
// the pool so that at most one event per contact (subject) is in flight and
// later events of a contact wait behind earlier ones.
type dispatcher struct {
	w       *Worker
	left    func(n int) // n messages left the worker without a job (room for the fetcher)
	ready   []job
	running map[string][]job // subject -> events queued behind the one in flight
	fences  map[string]fence
	seen    map[uint64]*tracked
}

func newDispatcher(w *Worker, left func(n int)) *dispatcher {
	return &dispatcher{
		w:       w,
		left:    left,
		running: map[string][]job{},
		fences:  map[string]fence{},
		seen:    map[uint64]*tracked{},
	}
}

func (d *dispatcher) admit(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		d.w.log.Error("message without JetStream metadata; leaving it", "subject", m.Subject(), "err", err)
		d.left(1)
		return
	}
	seq := md.Sequence.Stream
	now := d.w.now()
	t := d.seen[seq]
	if t == nil {
		t = &tracked{first: now}
		d.seen[seq] = t
	}
	j := job{msg: m, key: m.Subject(), seq: seq, md: md, deferrals: t.deferrals, first: t.first}
	if d.held(j, now) {
		return
	}
	if q, busy := d.running[j.key]; busy {
		d.running[j.key] = append(q, j)
		return
	}
	d.running[j.key] = nil
	d.ready = append(d.ready, j)
}

// held defers j if an earlier event of the same contact is waiting for a
// retry, and reports whether it did.
func (d *dispatcher) held(j job, now time.Time) bool {
	f, ok := d.fences[j.key]
	if !ok || j.seq <= f.seq {
		return false
	}
	if now.After(f.until.Add(2 * d.w.cfg.AckWait)) {
		// The earlier event went to another worker or away: stop waiting.
		delete(d.fences, j.key)
		return false
	}
	delay := max(f.until.Sub(now), 0) + fenceSlack
	if err := j.msg.NakWithDelay(delay); err != nil {
		d.w.log.Warn("nak failed", "err", err, "seq", j.seq)
	}
	d.left(1)
	if t := d.seen[j.seq]; t != nil {
		t.deferrals++
	}
	d.w.m.deliveries.WithLabelValues(targetOf(d.w.scfg.SubjectPrefix, j.key), "deferred").Inc()
	return true
}

func (d *dispatcher) done(r result) {
	j := r.job
	now := d.w.now()
	for _, seq := range r.settledSeqs {
		delete(d.seen, seq)
		if f, ok := d.fences[j.key]; ok && f.seq == seq {
			delete(d.fences, j.key)
		}
	}
	for _, seq := range r.deferredSeqs {
		if t := d.seen[seq]; t != nil {
			t.deferrals++
		}
	}
	if r.out == retried || r.out == deferred {
		if f, ok := d.fences[j.key]; !ok || f.seq >= j.seq || now.After(f.until) {
			d.fences[j.key] = fence{seq: j.seq, until: now.Add(r.delay)}
		}
	}
	q := d.running[j.key]
	delete(d.running, j.key)
	for len(q) > 0 {
		next := q[0]
		q = q[1:]
		if d.held(next, now) {
			continue
		}
		// Coalesce the backlog behind it: no fence is up for this contact.
		n := min(len(q), d.w.cfg.Coalesce-1)
		if n > 0 {
			next.rest = append([]job(nil), q[:n]...)
			q = q[n:]
		}
		d.running[j.key] = q
		d.ready = append(d.ready, next)
		return
	}
}

// keepAlive sends InProgress for messages waiting in the worker, so queued
// events are not redelivered elsewhere while they wait their turn; it also
// forgets stale bookkeeping.
func (d *dispatcher) keepAlive() {
	for _, j := range d.ready {
		_ = j.msg.InProgress()
		for _, r := range j.rest {
			_ = r.msg.InProgress()
		}
	}
	for _, q := range d.running {
		for _, j := range q {
			_ = j.msg.InProgress()
		}
	}
	now := d.w.now()
	horizon := d.w.cfg.MaxRetryAge + time.Hour
	for seq, t := range d.seen {
		if now.Sub(t.first) > horizon {
			delete(d.seen, seq)
		}
	}
	for k, f := range d.fences {
		if now.After(f.until.Add(2 * d.w.cfg.AckWait)) {
			delete(d.fences, k)
		}
	}
}

// release hands every message still waiting in the worker back to JetStream.
func (d *dispatcher) release() {
	for _, j := range d.ready {
		_ = j.msg.Nak()
		for _, r := range j.rest {
			_ = r.msg.Nak()
		}
	}
	d.ready = nil
	for k, q := range d.running {
		for _, j := range q {
			_ = j.msg.Nak()
		}
		delete(d.running, k)
	}
}
