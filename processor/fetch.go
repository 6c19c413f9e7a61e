package processor

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/stream"
)

// fetchExpiry is how long one pull request waits at the server for messages.
// Messages stream to the worker as they arrive, so it only bounds how long an
// idle fetcher holds an outstanding request, and how long a pull request lost
// in a reconnect goes unnoticed. A stopping fetcher cancels its request at
// once (FetchContext): nats.go unsubscribes its inbox, and the server drops a
// waiting pull request whose reply subject has no interest left.
const fetchExpiry = 5 * time.Second

// fetcher pulls a consumer's messages with explicit pull requests sized by
// the room the worker has, and hands them to out. It pulls while the
// target is paused or its rate window is used up too: the backlog is read
// ahead into the worker, up to its room (Config.ReadAhead), kept alive
// there with InProgress and merged per contact, so that when the window
// opens each request carries everything pending for its contact instead
// of the few events fetched in the moment.
//
// Why not Consumer.Messages or Consume: their pull accounting lives in
// nats.go (pullSubscription.checkPending, v1.55.0). checkPending decides
// whether to send the next pull request only when the reader asks for the
// next message, and skips it while the previous request is still being
// published (fetchInProgress). A reader that drains the buffer faster than
// that publish completes (patchbay's reader hands messages to a channel in
// microseconds) can take the last buffered message during the skip; nothing
// re-checks afterwards, no request is outstanding at the server, and the
// iterator waits for the missing-heartbeat timer (2 × 15 s) to reset its
// counters: a 30 s stall with messages pending, 0 waiting pulls and
// "nats: no heartbeat received" (issue 8: 22 such stalls in six runs of
// 100k events; upstream nats-io/nats.go#1621 and #1622, open at v1.55.0).
// NextMaxWait would only shorten each stall to its timeout. Here every
// request is issued by this loop from its own count of free room, so no
// request can be skipped: when a batch ends (full, expired or failed) the
// next one is sent as soon as there is room.
type fetcher struct {
	cons jetstream.Consumer
	room chan struct{} // one token per message the worker may still hold
	// extra is the room beyond room that only reading ahead may use: taken
	// while readAhead says so (a rate-limited or paused target), given
	// back after room is full again. nil: none.
	extra     chan struct{}
	readAhead func() bool
	maxBatch  int
	log       *slog.Logger
	// redeclare, if set, declares the consumer again; the fetcher calls it
	// when a pull request expired empty and the consumer is found gone
	// (deleted by an operator, or lost with a restored stream), instead of
	// pulling from nothing until restarted.
	redeclare func(ctx context.Context) (jetstream.Consumer, error)
	// drained, if set, is asked after an empty pull whether the consumer
	// has nothing left to deliver, ever (the narrowed target consumer of
	// a partitioned stream: see Worker.declareTarget); if so, the fetcher
	// stops.
	drained func(ctx context.Context) bool
	// part and set, for the fetcher of a partition consumer, say when it
	// may pull and track whether this worker owns the partition (see
	// Partition ownership); nil for a consumer shared by every worker.
	part      *partitionState
	set       *partitionSet
	lastCheck time.Time // of the consumer, by a standby fetcher (see mayCheck)
	idle      bool      // the last pull found nothing: the next asks for one message
	// gate, shared by a lane's fetchers when it has more than one, lets
	// one of them at a time take room for its next pull request (see
	// gather).
	gate *sync.Mutex
	// want, if not 0, is how much room gather waits for before a pull;
	// 0: a quarter of maxBatch.
	want int
	// wait, if not 0, is how long gather waits for it; 0: gatherWait.
	wait time.Duration
	// pinnedTTL, for a partition fetcher, is its consumer's pinned TTL:
	// its pulls expire in half of it at most, so a live owner never loses
	// its pin between two pulls (see expiry).
	pinnedTTL time.Duration
}

// expiry is how long one pull request of f waits at the server.
func (f *fetcher) expiry() time.Duration {
	if f.pinnedTTL > 0 {
		return min(fetchExpiry, f.pinnedTTL/2)
	}
	return fetchExpiry
}

// newFetcher returns a fetcher allowing room messages in the worker at once,
// fetched at most maxBatch per pull request.
func newFetcher(cons jetstream.Consumer, room, maxBatch int, log *slog.Logger) *fetcher {
	return newSharedFetcher(cons, newRoom(room), maxBatch, log)
}

// newRoom returns room for n messages, for fetchers to share.
func newRoom(n int) chan struct{} {
	room := make(chan struct{}, n)
	for range n {
		room <- struct{}{}
	}
	return room
}

// newSharedFetcher returns a fetcher taking its room from room, which
// other fetchers of the lane (one per partition) share.
func newSharedFetcher(cons jetstream.Consumer, room chan struct{}, maxBatch int, log *slog.Logger) *fetcher {
	return &fetcher{cons: cons, room: room, maxBatch: max(1, min(maxBatch, cap(room))), log: log}
}

// release returns n messages' worth of room: the worker has acknowledged,
// terminated or handed back n messages. It never blocks.
func (f *fetcher) release(n int) {
	for range n {
		select {
		case f.room <- struct{}{}:
		default:
			select {
			case f.extra <- struct{}{}:
			default: // more releases than takes: a bookkeeping bug, never a block
			}
		}
	}
}

// extraRoom is the read-ahead room the fetcher may take from now: extra
// while reading ahead, nil (never ready) otherwise.
func (f *fetcher) extraRoom() chan struct{} {
	if f.extra != nil && f.readAhead != nil && f.readAhead() {
		return f.extra
	}
	return nil
}

// readAheadRecheck is how often a fetcher out of room asks again whether
// it may read ahead (the target may have become paused or limited).
const readAheadRecheck = 250 * time.Millisecond

// takeOne waits for room for one message; false once ctx is done.
func (f *fetcher) takeOne(ctx context.Context) bool {
	if f.extra == nil {
		select {
		case <-ctx.Done():
			return false
		case <-f.room:
			return true
		}
	}
	t := time.NewTicker(readAheadRecheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-f.room:
			return true
		case <-f.extraRoom():
			return true
		case <-t.C:
		}
	}
}

// gatherWait bounds how long the fetcher waits for room to free up for a
// larger pull request once it has room for one message.
const gatherWait = 10 * time.Millisecond

// gather takes the free room beyond the one message run has room for: all
// of it that is free now, and, while that is less than a quarter of the
// largest batch (or want), what frees up in the next gatherWait. Under a backlog,
// room frees one delivery at a time; a pull request per message would cost
// a subscription and a request each (nats.go's Fetch subscribes a fresh
// inbox), on the worker and on the server. The worker still holds the
// messages it fetched before, so the short wait leaves no delivery idle.
func (f *fetcher) gather(ctx context.Context) int {
	n := 1
	want := min(f.want, f.maxBatch)
	if want <= 0 {
		want = max(1, f.maxBatch/4)
	}
	extra := f.extraRoom()
	var timeout <-chan time.Time
	for n < f.maxBatch {
		select {
		case <-f.room:
			n++
			continue
		case <-extra:
			n++
			continue
		default:
		}
		if n >= want {
			break
		}
		if timeout == nil {
			t := time.NewTimer(cmp.Or(f.wait, gatherWait))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-f.room:
			n++
			continue
		case <-extra:
			n++
			continue
		case <-timeout:
		case <-ctx.Done():
		}
		break
	}
	return n - 1
}

// take waits for room for one message and, unless one is all the pull
// asks for, gathers more (see gather); false once ctx is done. The lane's
// fetchers take room one at a time (gate): room frees a delivery at a
// time under a backlog, and fetchers gathering at once would split it
// between them, each sending a small pull request in turn (four partitions
// sent nearly three times the pull requests of one consumer for the same
// messages); one at a time, each request carries what freed up since the
// previous one, and the fetchers, queued on the gate, take turns.
func (f *fetcher) take(ctx context.Context, one bool) (int, bool) {
	if f.gate != nil {
		f.gate.Lock()
		defer f.gate.Unlock()
	}
	if !f.takeOne(ctx) {
		return 0, false
	}
	if one {
		return 1, true
	}
	return 1 + f.gather(ctx), true
}

// run fetches until ctx is done, sending every message to out. A message
// that arrives after ctx is done is handed back (Nak) at once. run returns
// once its last pull request has ended.
func (f *fetcher) run(ctx context.Context, out chan<- jetstream.Msg) {
	for {
		standby := false
		if f.part != nil {
			var ok bool
			if ok, standby = f.set.mayPull(f.part, time.Now()); !ok {
				if Wait(ctx, partitionRecheck) != nil {
					return
				}
				continue
			}
		}
		// Wait for room for at least one message, then take what else is
		// free (a standby pull asks for one message: it is answered only
		// once this worker is pinned).
		n, ok := f.take(ctx, standby || f.idle)
		if !ok {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, f.expiry())
		opts := []jetstream.FetchOpt{jetstream.FetchContext(rctx)}
		if f.part != nil {
			f.part.setCancel(cancel)
			opts = append(opts, jetstream.FetchPriorityGroup(stream.PartitionGroup))
		}
		batch, err := f.cons.Fetch(n, opts...)
		if err != nil {
			cancel()
			f.release(n)
			if ctx.Err() != nil {
				return
			}
			f.log.Warn("fetch", "err", err)
			_ = Wait(ctx, 250*time.Millisecond) // NATS unreachable: the next request retries
			continue
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if ctx.Err() != nil {
				_ = m.Nak()
				f.release(1)
				continue
			}
			select {
			case out <- m:
			case <-ctx.Done():
				_ = m.Nak()
				f.release(1)
			}
		}
		f.release(n - got)
		// A pull that found nothing makes the next one ask for a single
		// message: an idle consumer's request, waiting at the server,
		// holds no room the lane's other fetchers could use.
		f.idle = got == 0
		err = batch.Error()
		if f.part != nil {
			f.part.observe(got, err, time.Now())
			f.part.setCancel(nil)
		}
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrPinIDMismatch) && ctx.Err() == nil {
			f.log.Warn("fetch", "err", err)
		}
		cancel()
		if got == 0 && ctx.Err() == nil && f.drained != nil && f.drained(ctx) {
			f.log.Info("stopped fetching the consumer of events stored before the stream was partitioned: none is left")
			return
		}
		if got == 0 && ctx.Err() == nil && f.mayCheck(time.Now()) {
			f.checkConsumer(ctx)
		}
	}
}

// standbyCheckEvery is how often a fetcher standing by for a partition
// another worker owns asks whether the consumer is still there: its empty
// pulls are the rule, not a sign of a deleted consumer.
const standbyCheckEvery = 30 * time.Second

// mayCheck reports whether an empty pull should ask whether the consumer
// is gone: always for a consumer this worker owns or shares, at most every
// standbyCheckEvery for a partition it stands by for.
func (f *fetcher) mayCheck(now time.Time) bool {
	if f.part == nil || f.part.owned.Load() {
		return true
	}
	if now.Sub(f.lastCheck) < standbyCheckEvery {
		return false
	}
	f.lastCheck = now
	return true
}

// checkConsumer declares the consumer again if it is gone. A pull request
// to a deleted consumer is not answered: it only expires, like one with
// nothing to deliver, so an empty pull is the moment to ask.
func (f *fetcher) checkConsumer(ctx context.Context) {
	if f.redeclare == nil {
		return
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := f.cons.Info(ictx); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return // there, or NATS cannot tell now: the next pull asks again
	}
	cons, err := f.redeclare(ictx)
	if err != nil {
		f.log.Warn("the consumer is gone and could not be declared again; retrying", "consumer", f.cons.CachedInfo().Name, "err", err)
		return
	}
	f.cons = cons
	f.log.Warn(logConsumerDeclaredAgain, "consumer", cons.CachedInfo().Name)
}

// logConsumerDeclaredAgain is the warning of a consumer found deleted.
const logConsumerDeclaredAgain = "the consumer was deleted; declared it again, its events are delivered from the stream"

// Wait blocks until d has passed or ctx is done.
func Wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
