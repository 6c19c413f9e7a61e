package processor

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/lease"
	"github.com/patchbay/patchbay/processor/ratelimit"
)

// lane delivers one target's events: the target's durable consumer, a
// fetcher that reads ahead into the backlog up to the room (paused or
// not), the per-contact queues, and Concurrency delivery goroutines.
type lane struct {
	w        *Worker
	target   events.Target
	name     string       // string(target), for labels and logs
	log      *slog.Logger // the worker's, with the provider's name
	provider Provider
	budget   *ratelimit.Budget
	horizon  time.Duration        // the target's settle horizon (Target.SettleHorizon)
	cons     jetstream.Consumer   // the target's consumer: every event, or those stored before the stream was partitioned
	parts    []jetstream.Consumer // the target's partition consumers, by partition (none without partitions)
	fetching *fetching            // the lane's fetchers, set by run
	catch    catchUp              // how far behind the stream the fetchers are; the lane's loop owns it
	group    *lease.Solo          // the target's lease group: solo while no other replica delivers it; nil with Config.AlwaysLease
	stopping atomic.Bool          // the delivery goroutines' context is cancelled: shutdown past the drain timeout

	// soloSettle is the latest end (unix nanoseconds) of the settle
	// horizon of a request sent under the solo lease whose outcome is
	// unknown: the solo lease is not given up before (see settleSolo).
	soloSettle atomic.Int64
	// notSentRun counts the target's requests in a row of which nothing
	// was written (a dial failing): the backoff of the next hold.
	notSentRun atomic.Int32

	coalesced prometheus.Counter // looked up once: every applied delivery adds to it

	// The series every delivery touches, looked up on first use (so they
	// appear when they first count, as WithLabelValues' do) instead of on
	// every event.
	applied, superseded series[prometheus.Counter]
	requests2xx         series[prometheus.Observer]
}

// series is a metric series of a vector, looked up once, on first use.
// It is safe for concurrent use.
type series[M any] struct {
	m atomic.Pointer[M]
}

// get returns the series, looking it up with lookup the first time.
func (s *series[M]) get(lookup func() M) M {
	if m := s.m.Load(); m != nil {
		return *m
	}
	m := lookup()
	s.m.Store(&m)
	return m
}

// delivered returns the deliveries counter of outcome.
func (l *lane) delivered(outcome string) prometheus.Counter {
	vec := l.w.m.deliveries
	switch outcome {
	case "applied":
		return l.applied.get(func() prometheus.Counter { return vec.WithLabelValues(l.name, outcome) })
	case "superseded":
		return l.superseded.get(func() prometheus.Counter { return vec.WithLabelValues(l.name, outcome) })
	}
	return vec.WithLabelValues(l.name, outcome)
}

// requestDuration returns the provider request histogram of status's class.
func (l *lane) requestDuration(status int) prometheus.Observer {
	class := StatusClass(status)
	if class == "2xx" {
		return l.requests2xx.get(func() prometheus.Observer { return l.w.m.requests.WithLabelValues(l.name, class) })
	}
	return l.w.m.requests.WithLabelValues(l.name, class)
}

func newLane(w *Worker, t events.Target, tg Target) *lane {
	l := &lane{w: w, target: t, name: string(t), log: w.log.With("provider", string(t)), provider: tg.Provider, budget: tg.Budget,
		horizon: tg.SettleHorizon, coalesced: w.m.coalesced.WithLabelValues(string(t))}
	w.m.paused.WithLabelValues(l.name).Set(0)
	return l
}

// result is what a job did with its messages. Every message of the job that
// is not in back has been acknowledged, terminated or handed back to
// JetStream.
type result struct {
	job       job
	back      []pending // held: queued again in the worker, not settled
	holdUntil time.Time // back's contact waits until then
	settle    time.Time // a request's outcome is unknown: the end of its settle horizon (zero: none)
}

// run is the lane's loop: it owns the queues, hands jobs to the delivery
// goroutines, and on shutdown drains them (see Worker.Run).
func (l *lane) run(ctx context.Context) {
	w := l.w
	if !w.cfg.AlwaysLease {
		group, err := w.leases.Join(l.name, w.log.With("provider", l.name))
		if err != nil { // cannot happen: a target's name is a key token
			w.log.Error("cannot join the target's lease group", "provider", l.name, "err", err)
			return
		}
		l.group = group
		defer func() {
			l.awaitSoloSettle()
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			group.Close(cctx)
		}()
	}
	fetchCtx, stopFetching := context.WithCancel(ctx)
	defer stopFetching()
	// A few messages may wait in the channel: the fetcher hands a pull's
	// messages over without a wait for the loop each, and the loop takes
	// what has arrived at once (receive) instead of one select each.
	incoming := make(chan jetstream.Msg, incomingBuffer)
	fs := l.startFetching(fetchCtx, incoming)
	l.fetching = fs
	f, fetcherDone := fs.f, fs.done

	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	jobs := make(chan job)
	results := make(chan result, w.cfg.Concurrency)
	var wg sync.WaitGroup
	for range w.cfg.Concurrency {
		wg.Go(func() {
			// Each delivery goroutine's contexts hang off a child of
			// workCtx of its own, cancelled with it: registering and
			// removing a delivery's context then takes no lock that
			// the other deliveries contend for.
			gctx, cancel := context.WithCancel(workCtx)
			defer cancel()
			for j := range jobs {
				w.m.inflight.Inc()
				r := l.deliver(gctx, j)
				w.m.inflight.Dec()
				f.release(len(j.msgs) - len(r.back))
				results <- r
			}
		})
	}

	q := newQueues(w.cfg.Coalesce)
	if len(l.parts) > 0 {
		q.keyOf = l.contactKey
	}
	tick := time.NewTicker(w.cfg.AckWait / 3)
	defer tick.Stop()
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	stopping := false
	done := ctx.Done()
	var drainTimer <-chan time.Time
	busy := 0
	for {
		if stopping && busy == 0 && incoming == nil {
			break
		}
		now := w.now()
		next := q.wake(now)
		var send chan job
		var j job
		if !stopping {
			if pause := l.pausedFor(now); pause > 0 {
				next = now.Add(pause)
			} else if cand, ok := q.peek(); ok {
				wait, until := l.catch.holding(now, q.held < w.cfg.Room(), l.limited)
				if !wait {
					wait, until = l.lingering(cand.msgs[0].md.Timestamp, now)
				}
				if wait {
					// The backlog is being read ahead (catchUp), or a
					// burst is still arriving (lingering).
					if next.IsZero() || until.Before(next) {
						next = until
					}
				} else {
					send, j = jobs, cand
				}
			}
		}
		if send != nil {
			// A delivery goroutine that waits takes the job without the
			// full select (a send nobody waits for fails at once).
			select {
			case send <- j:
				q.take()
				busy++
				continue
			default:
			}
		}
		if !next.IsZero() {
			wake.Reset(max(next.Sub(now), time.Millisecond))
		}
		select {
		case m, ok := <-incoming:
			if !ok {
				incoming = nil
				continue
			}
			l.receive(q, f, m, stopping, now)
			// What else the fetcher has handed over already, in this
			// iteration (a pull's messages arrive together): at most a
			// buffer's worth, so the other cases are not kept waiting.
			for more, n := true, 1; more && n < incomingBuffer; n++ {
				select {
				case m, ok := <-incoming:
					if !ok {
						incoming, more = nil, false
						break
					}
					l.receive(q, f, m, stopping, now)
				default:
					more = false
				}
			}
		case send <- j:
			q.take()
			busy++
		case r := <-results:
			busy--
			q.finish(r.job.key, len(r.job.msgs)-len(r.back), r.back, r.holdUntil, w.now())
			// And the results already in (at most one per goroutine).
			for more := true; more; {
				select {
				case r := <-results:
					busy--
					q.finish(r.job.key, len(r.job.msgs)-len(r.back), r.back, r.holdUntil, w.now())
				default:
					more = false
				}
			}
		case req := <-fs.handBack:
			l.handBackPartition(q, f, req.p)
			close(req.done)
		case <-wake.C:
			l.showPaused()
		case <-tick.C:
			l.keepAlive(q)
		case <-done:
			stopping, done = true, nil
			stopFetching()
			drainTimer = time.After(w.cfg.DrainTimeout)
		case <-drainTimer:
			l.stopping.Store(true)
			cancelWork() // in-flight calls see cancellation and leave their messages
		}
	}
	close(jobs)
	wg.Wait()
	<-fetcherDone
	for _, p := range q.clear() {
		_ = p.msg.Nak()
	}
	fs.release(ctx)
	w.m.paused.WithLabelValues(l.name).Set(0)
}

// awaitSoloSettle waits, before the lane gives the solo lease up, until the
// settle horizon of every request sent under it whose outcome is unknown
// has passed: a replica taking the solo lease over sends without
// per-contact leases. The wait is at most the target's settle horizon.
func (l *lane) awaitSoloSettle() {
	d := time.Until(time.Unix(0, l.soloSettle.Load()))
	if d <= 0 {
		return
	}
	l.log.Info("waiting for the settle horizon of a request whose outcome is unknown before giving the solo lease up", "wait", d.Round(time.Millisecond))
	t := time.NewTimer(d)
	<-t.C
}

// incomingBuffer is how many fetched messages may wait for the lane's
// loop in its channel.
const incomingBuffer = 64

// receive queues m, a message the fetcher handed over, or hands it back to
// JetStream when the lane is stopping.
func (l *lane) receive(q *queues, f *fetcher, m jetstream.Msg, stopping bool, now time.Time) {
	if stopping || l.fetching.givenAway(l.w.scfg.SubjectPrefix, m.Subject(), now) {
		_ = m.Nak()
		f.release(1)
		return
	}
	md, err := m.Metadata()
	if err != nil {
		l.w.log.Error("message without JetStream metadata; leaving it for redelivery", "subject", m.Subject(), "err", err)
		f.release(1)
		return
	}
	l.catch.note(md.Consumer, md.NumPending, now)
	if q.add(pending{msg: m, md: md, seq: md.Sequence.Stream}, now) {
		f.release(1)
	}
}

// pausedFor returns how long nothing may be sent to the target after now:
// a pause (429, bad credentials until the next probe is due) or a shared
// window used up, as every replica sees it.
func (l *lane) pausedFor(now time.Time) time.Duration {
	until, _ := l.budget.Blocked()
	return max(until.Sub(now), 0)
}

// keepAlive tells JetStream that the messages in the worker are still
// being worked on, so they are not redelivered to another worker while
// they wait for their contact's running job or for a pause to end, or
// while their own job runs (a slow call, a wait for the rate budget).
// It runs every third of the ack wait. A message its job settled in the
// meantime is left alone: InProgress after its ack sends nothing.
func (l *lane) keepAlive(q *queues) {
	inProgress := func(p pending) { _ = p.msg.InProgress() }
	q.waiting(inProgress)
	q.running(inProgress)
	l.showPaused()
}

// showPaused sets the paused gauge from the target's state: 1 while paused,
// back to 0 when the pause ends.
func (l *lane) showPaused() {
	paused := 0.0
	if l.pausedFor(l.w.now()) > 0 {
		paused = 1
	}
	l.w.m.paused.WithLabelValues(l.name).Set(paused)
}
