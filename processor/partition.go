package processor

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/stream"
)

// Partition ownership
//
// With a partitioned events stream (stream.Config.Partitions) each target
// has one consumer per partition, pinned by JetStream to one pull client at
// a time (pinned_client priority policy). Every worker runs a fetcher per
// partition; the fetcher of a partition the worker owns pulls as usual, the
// others stand by with a pull of one message, which JetStream answers only
// when no client is pinned: then the standby is pinned and owns the
// partition. A worker owns at most its share, ⌈partitions ÷ members⌉, the
// members being the target's lease group (its member keys in the LEASES
// bucket): at its share it stops standing by, and above it (it joined
// first, or another worker left and came back) it gives partitions away:
// it stops pulling them, hands their queued events back to JetStream and
// unpins the consumer, so a standby of a worker under its share is pinned
// and receives them, redeliveries first. A partition whose owner died is
// unpinned by JetStream once it has not pulled for the pinned TTL (the ack
// wait): a worker at its share checks such partitions (no pin, messages
// waiting) and stands by for them too, so none is left without a worker.
//
// Ownership only decides where a contact's events meet; the per-contact
// lease (or the solo lease) still guards every delivery, so two workers
// briefly owning a partition during a handover never send to one contact
// at once.

// partitionState is the ownership state of one partition fetcher.
type partitionState struct {
	n     int
	owned atomic.Bool
	// quiet is the end (unix nanoseconds) of the pause after giving the
	// partition away: no pull before, so that another worker's standby is
	// pinned rather than ours again.
	quiet atomic.Int64
	// orphan is set by the rebalancer when JetStream shows the partition
	// unpinned with messages waiting: stand by for it even at our share.
	orphan atomic.Bool

	mu     sync.Mutex
	cancel context.CancelFunc // of the pull request out, if any
}

// setCancel records the cancel func of the pull request going out.
func (p *partitionState) setCancel(c context.CancelFunc) {
	p.mu.Lock()
	p.cancel = c
	p.mu.Unlock()
}

// observe updates ownership after a pull request ended with got messages
// and err: any message of a pinned consumer means this client is pinned;
// a pin id refused means it is not (any more).
func (p *partitionState) observe(got int, err error, now time.Time) {
	switch {
	case errors.Is(err, jetstream.ErrPinIDMismatch):
		p.owned.Store(false)
	case got > 0 && now.UnixNano() >= p.quiet.Load():
		p.owned.Store(true)
		p.orphan.Store(false)
	}
}

// partitionSet is one lane's partition fetchers' shared state.
type partitionSet struct {
	parts   []*partitionState
	members func() int // the target's lease group members; 0: not known
}

// share is the most partitions this worker should own.
func (s *partitionSet) share() int {
	m := max(s.members(), 1)
	return (len(s.parts) + m - 1) / m
}

// owned counts the partitions this worker owns.
func (s *partitionSet) owned() int {
	n := 0
	for _, p := range s.parts {
		if p.owned.Load() {
			n++
		}
	}
	return n
}

// mayPull says whether p's fetcher may send a pull request now, and if so
// whether it is a standby pull (one message, to be pinned).
func (s *partitionSet) mayPull(p *partitionState, now time.Time) (ok, standby bool) {
	if now.UnixNano() < p.quiet.Load() {
		return false, false
	}
	if p.owned.Load() {
		return true, false
	}
	if p.orphan.Load() || s.owned() < s.share() {
		return true, true
	}
	return false, false
}

// partitionRecheck is how often a fetcher that may not pull asks again.
const partitionRecheck = 250 * time.Millisecond

// rebalanceEvery is the period of the partition rebalancer.
const rebalanceEvery = 2 * time.Second

// yieldQuiet is how long a fetcher does not pull a partition it gave away.
const yieldQuiet = 3 * time.Second

// rebalancer is the loop that keeps one lane's partitions at its share.
type rebalancer struct {
	set      *partitionSet
	fetchers []*fetcher // by partition
	str      func(ctx context.Context) (jetstream.Stream, error)
	consumer func(p int) string
	handBack func(ctx context.Context, p int) // the lane hands p's queued events back
	log      *slog.Logger
}

// orphanCheckEvery is how many rebalance periods pass between two checks
// for partitions without a pin: a fallback (a member that left is seen in
// the member count first), so it costs a consumer info request per
// unowned partition every 10 s, not every 2 s.
const orphanCheckEvery = 5

// run rebalances every rebalanceEvery until ctx ends.
func (r *rebalancer) run(ctx context.Context) {
	t := time.NewTicker(rebalanceEvery)
	defer t.Stop()
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.step(ctx, i%orphanCheckEvery == 0)
	}
}

// step gives away what is above the share and, with orphans, marks
// partitions without a pin but with messages waiting as orphans to stand
// by for.
func (r *rebalancer) step(ctx context.Context, orphans bool) {
	share, owned := r.set.share(), r.set.owned()
	if owned > share {
		// The highest-numbered owned partitions go: any choice works,
		// and a fixed one keeps two workers from swapping the same ones.
		for i := len(r.set.parts) - 1; i >= 0 && owned > share; i-- {
			if p := r.set.parts[i]; p.owned.Load() {
				r.yield(ctx, p)
				owned--
			}
		}
		return
	}
	if owned < share || !orphans {
		return // every standby pulls already, or not the time to look
	}
	for i, p := range r.set.parts {
		if p.owned.Load() || time.Now().UnixNano() < p.quiet.Load() {
			continue
		}
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := r.fetchers[i].cons.Info(ictx)
		cancel()
		if err != nil {
			continue
		}
		pinned := false
		for _, g := range info.PriorityGroups {
			if g.Group == stream.PartitionGroup && g.PinnedClientID != "" {
				pinned = true
			}
		}
		p.orphan.Store(!pinned && info.NumPending+uint64(info.NumAckPending) > 0)
	}
}

// yield gives p away: no pull for yieldQuiet, its pull request out
// cancelled, its queued events handed back, and the consumer unpinned.
func (r *rebalancer) yield(ctx context.Context, p *partitionState) {
	p.quiet.Store(time.Now().Add(yieldQuiet).UnixNano())
	p.owned.Store(false)
	p.orphan.Store(false)
	p.mu.Lock()
	if p.cancel != nil {
		p.cancel()
	}
	p.mu.Unlock()
	r.handBack(ctx, p.n)
	uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.unpin(uctx, p.n); err != nil {
		r.log.Warn("could not unpin a partition given away; JetStream unpins it after the pinned TTL", "partition", p.n, "err", err)
		return
	}
	r.log.Info("gave a partition away to balance the workers", "partition", p.n, "share", r.set.share())
}

// unpin unpins partition p's consumer.
func (r *rebalancer) unpin(ctx context.Context, p int) error {
	s, err := r.str(ctx)
	if err != nil {
		return err
	}
	return s.UnpinConsumer(ctx, r.consumer(p), stream.PartitionGroup)
}

// releaseAll unpins every partition this worker owns, at shutdown, after
// its events were handed back: another worker takes them over at once
// instead of after the pinned TTL.
func (r *rebalancer) releaseAll(ctx context.Context) {
	for _, p := range r.set.parts {
		if !p.owned.Load() {
			continue
		}
		p.owned.Store(false)
		if err := r.unpin(ctx, p.n); err != nil && ctx.Err() == nil {
			r.log.Warn("could not unpin a partition at shutdown; JetStream unpins it after the pinned TTL", "partition", p.n, "err", err)
		}
	}
}

// members counts the members of one lease group from the LEASES bucket's
// member keys (_group.<group>.member.<id>, kept alive by each member with a
// per-key TTL and deleted by the server's marker when they lapse). It
// watches until ctx ends, watching again if the watch closes; the count is
// 0 while it is not known.
type members struct {
	n atomic.Int64
}

// watchMembers starts counting group's members in kv.
func watchMembers(ctx context.Context, kv func(ctx context.Context) (jetstream.KeyValue, error), group string, log *slog.Logger) *members {
	m := &members{}
	go func() {
		prefix := "_group." + group + ".member."
		for ctx.Err() == nil {
			m.watch(ctx, kv, prefix, log)
			m.n.Store(0)
			_ = Wait(ctx, time.Second)
		}
	}()
	return m
}

func (m *members) watch(ctx context.Context, kv func(ctx context.Context) (jetstream.KeyValue, error), prefix string, log *slog.Logger) {
	b, err := kv(ctx)
	if err != nil {
		return
	}
	w, err := b.Watch(ctx, prefix+">")
	if err != nil {
		log.Debug("cannot watch the lease group's members", "err", err)
		return
	}
	defer func() { _ = w.Stop() }()
	ids := map[string]bool{}
	synced := false
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				synced = true
			} else if id := strings.TrimPrefix(e.Key(), prefix); e.Operation() == jetstream.KeyValuePut {
				ids[id] = true
			} else {
				delete(ids, id)
			}
			if synced {
				m.n.Store(int64(len(ids)))
			}
		}
	}
}

// get returns the member count, 0 while not known.
func (m *members) get() int { return int(m.n.Load()) }

// handBackReq asks the lane's loop to hand partition p's queued events
// back to JetStream; done is closed once it has.
type handBackReq struct {
	p    int
	done chan struct{}
}

// fetching is what a lane's fetchers share: the room, a fetcher through
// which every delivery gives its room back (any of the lane's: they share
// the room), and, with partitions, their rebalancer and its hand-back
// requests.
type fetching struct {
	f        *fetcher
	done     chan struct{} // closed once every fetcher has stopped and incoming is closed
	handBack chan handBackReq
	rb       *rebalancer
}

// startFetching starts the lane's fetchers, sending to incoming until ctx
// ends: the target consumer's, if the lane has one (every event without
// partitions; with partitions, those stored before the stream was, until
// none is left: see Worker.declareTarget), and one per partition
// consumer, all taking from one room.
func (l *lane) startFetching(ctx context.Context, incoming chan<- jetstream.Msg) *fetching {
	w := l.w
	log := w.log.With("provider", l.name)
	room, extra := newRoom(w.cfg.baseRoom()), newRoom(w.cfg.Room()-w.cfg.baseRoom())
	// With partitions, one fetcher's pull takes at most a quarter of the
	// room, so that the others' pulls are not kept waiting for it; it
	// still gathers as much room as a lone fetcher does before it pulls
	// (want), so the pull requests are as few as without partitions.
	maxFetch, want := w.cfg.maxFetch(), 0
	if len(l.parts) > 0 {
		want = max(1, maxFetch/4)
		maxFetch = min(maxFetch, max(cap(room)/4, 1))
	}
	share := func(f *fetcher) *fetcher {
		f.want = want
		if cap(extra) > 0 {
			f.extra, f.readAhead = extra, l.readingAhead
		}
		return f
	}
	var all []*fetcher
	if l.cons != nil {
		f := share(newSharedFetcher(l.cons, room, maxFetch, log))
		f.redeclare = func(ctx context.Context) (jetstream.Consumer, error) {
			return w.js.CreateOrUpdateConsumer(ctx, w.scfg.EventsStream, w.targetConsumerConfig(l.name))
		}
		if len(l.parts) > 0 {
			f.drained = l.shortFormDrained
		}
		all = append(all, f)
	}
	fs := &fetching{done: make(chan struct{}), handBack: make(chan handBackReq)}
	if len(l.parts) > 0 {
		m := watchMembers(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
			return w.js.KeyValue(ctx, w.scfg.KVBucket("LEASES"))
		}, l.name, log)
		set := &partitionSet{members: m.get}
		rb := &rebalancer{set: set, log: log,
			str:      func(ctx context.Context) (jetstream.Stream, error) { return w.js.Stream(ctx, w.scfg.EventsStream) },
			consumer: func(p int) string { return w.scfg.PartitionConsumer(l.name, p) },
		}
		rb.handBack = func(ctx context.Context, p int) {
			req := handBackReq{p: p, done: make(chan struct{})}
			select {
			case fs.handBack <- req:
			case <-ctx.Done():
				return
			}
			select {
			case <-req.done:
			case <-ctx.Done():
			}
		}
		for p, cons := range l.parts {
			ps := &partitionState{n: p}
			set.parts = append(set.parts, ps)
			pf := share(newSharedFetcher(cons, room, maxFetch, log.With("partition", p)))
			pf.part, pf.set, pf.pinnedTTL = ps, set, w.pinnedTTL()
			pf.redeclare = func(ctx context.Context) (jetstream.Consumer, error) {
				return w.js.CreateOrUpdateConsumer(ctx, w.scfg.EventsStream, w.partitionConsumerConfig(l.name, p))
			}
			all = append(all, pf)
			rb.fetchers = append(rb.fetchers, pf)
		}
		fs.rb = rb
	}
	fs.f = all[0] // the lane has a target consumer, partitions, or both (declareTarget)
	if len(all) > 1 {
		// One at a time, each fetcher gathers for as long as all of them
		// would once each: the lane then pulls about as often as a lone
		// fetcher, not once per gatherWait. gather waits only while most
		// of the room is taken, that is while the worker holds events for
		// every delivery, so no delivery waits for the longer gather.
		gate := new(sync.Mutex)
		for _, x := range all {
			x.gate, x.wait = gate, time.Duration(len(all))*gatherWait
		}
	}
	go func() {
		defer close(fs.done)
		defer close(incoming)
		l.awaitGroup(ctx)
		var wg sync.WaitGroup
		for _, x := range all {
			wg.Go(func() { x.run(ctx, incoming) })
		}
		if fs.rb != nil {
			wg.Go(func() { fs.rb.run(ctx) })
		}
		wg.Wait()
	}()
	return fs
}

// groupWait bounds how long the fetchers wait for the lane's lease group
// before their first pull.
const groupWait = 2 * time.Second

// awaitGroup waits, before the lane's first pull, until the worker has
// joined the target's lease group (lease.Solo.Ready), at most groupWait.
// A delivery that starts before is refused a ticket and held for a retry
// (leaseRetry, 200 ms): at start the first messages of a backlog, the
// ones each consumer's ack floor waits for, arrived within milliseconds,
// before the few KV requests of joining were answered, and no floor moved
// for the first 200 ms (the bench's startup stall). Joining takes a few
// requests; if it takes longer, fetching starts anyway, as before.
func (l *lane) awaitGroup(ctx context.Context) {
	if l.group == nil {
		return
	}
	t := time.NewTimer(groupWait)
	defer t.Stop()
	select {
	case <-l.group.Ready():
	case <-t.C:
		l.log.Debug("the lease group is not joined yet; fetching anyway")
	case <-ctx.Done():
	}
}

// shortFormDrained reports whether the lane's target consumer, narrowed
// to the events stored before the stream was partitioned, has none left to
// deliver; if so it deletes it (another worker may have already), and its
// fetcher stops. It is asked after an empty pull: false while NATS cannot
// tell, so the fetcher pulls on.
func (l *lane) shortFormDrained(ctx context.Context) bool {
	w := l.w
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := w.js.Stream(cctx, w.scfg.EventsStream)
	if err != nil {
		return false
	}
	left, err := stream.ShortFormLeft(cctx, s, w.scfg, l.name)
	if err != nil || left {
		return false
	}
	if err := w.removeDrained(cctx, l.name); err != nil {
		l.log.Warn("could not remove the drained consumer of events stored before the stream was partitioned; its fetcher stops, the next worker start removes it", "err", err)
	}
	return true
}

// handBackPartition hands partition p's queued events (not those of a
// running job) back to JetStream, for the worker it is given to.
func (l *lane) handBackPartition(q *queues, f *fetcher, p int) {
	msgs := q.dropPartition(func(subject string) bool {
		_, sp, _, _ := stream.SplitSubject(l.w.scfg.SubjectPrefix, subject)
		return sp == p
	})
	for _, m := range msgs {
		_ = m.msg.Nak()
	}
	f.release(len(msgs))
}

// givenAway reports whether subject is of a partition this worker gave
// away moments ago: a message its last pull request delivered after the
// hand-back, to be handed back too so the partition's new worker holds all
// of each contact's events.
func (fs *fetching) givenAway(prefix, subject string, now time.Time) bool {
	if fs.rb == nil {
		return false
	}
	_, p, _, ok := stream.SplitSubject(prefix, subject)
	if !ok || p < 0 || p >= len(fs.rb.set.parts) {
		return false
	}
	return now.UnixNano() < fs.rb.set.parts[p].quiet.Load()
}

// release unpins the partitions this worker owns, at shutdown.
func (fs *fetching) release(ctx context.Context) {
	if fs.rb == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	fs.rb.releaseAll(cctx)
}

// partitionConsumerConfig is the configuration the worker declares for
// partition p of target: pinned for as long as the ack wait, so a
// partition whose worker died passes on when its events are redelivered.
// The owner pulls at least twice in that time (fetcher.expiry).
func (w *Worker) partitionConsumerConfig(target string, p int) jetstream.ConsumerConfig {
	return w.scfg.PartitionConsumerConfig(target, p, w.cfg.AckWait, w.pinnedTTL(), w.cfg.Room())
}

// pinnedTTL is the pinned TTL of the partition consumers: the ack wait.
func (w *Worker) pinnedTTL() time.Duration { return w.cfg.AckWait }

// contactKey is the queue key of a message of a partitioned stream: its
// subject, or, for an event stored before the stream was partitioned, the
// subject it would have now, so that a contact's events of both kinds
// share a queue (and never run as two jobs at once). Only those older
// events cost a new string.
func (l *lane) contactKey(subject string) string {
	prefix := l.w.scfg.SubjectPrefix
	target, p, contact, ok := stream.SplitSubject(prefix, subject)
	if !ok || p >= 0 {
		return subject
	}
	return prefix + ".patch." + target + "." + strconv.Itoa(stream.PartitionOf(contact, len(l.parts))) + "." + contact
}
