package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/history"
	"github.com/patchbay/patchbay/processor/lease"
	"github.com/patchbay/patchbay/processor/lww"
	"github.com/patchbay/patchbay/processor/ratelimit"
)

// deliver applies j's messages as one PATCH and settles each of them: acked
// when applied or superseded, handed back with a delay for a retry,
// dead-lettered, or held in the worker (result.back) when the target is
// paused or another replica holds the contact.
func (l *lane) deliver(ctx context.Context, j job) result {
	r := result{job: j}
	msgs, evs := l.decodeAll(ctx, j.msgs)
	if len(msgs) == 0 {
		return r
	}
	// The lane's loop keeps msgs alive (InProgress) while the job runs:
	// a slow call or a wait for the rate budget is not redelivered to
	// another worker in parallel.
	log := l.log

	// No other replica delivers this contact while the lease is held.
	key, err := lww.Key(l.target, evs[0].ContactID)
	if err != nil { // cannot happen for a valid event: its subject is the key
		for i, p := range msgs {
			l.deadLetter(ctx, p, &evs[i], dlq.ReasonInvalid, err, 0, time.Time{})
		}
		return r
	}
	var tk lease.Ticket
	if l.group != nil {
		var ok bool
		if tk, ok = l.group.Enter(); !ok {
			// Joining the target's lease group, or another replica hands
			// its solo lease over: a moment's wait.
			return l.hold(r, msgs, l.w.now().Add(leaseRetry), "lease_group")
		}
		defer tk.Done()
	}
	if tk.Solo {
		// The only replica delivering this target: no per-contact lease;
		// everything is sent before the solo lease can pass on.
		lctx, cancel := fenced(ctx, tk.Fence)
		defer cancel()
		r := l.apply(lctx, j, msgs, evs, time.Time{})
		if !r.settle.IsZero() {
			l.settleSolo(ctx, key, r.settle, log)
		}
		return r
	}
	ls, err := l.w.leases.Acquire(ctx, key)
	switch {
	case errors.Is(err, lease.ErrHeld):
		return l.hold(r, msgs, l.w.now().Add(leaseRetry), "contact_busy")
	case err != nil:
		if ctx.Err() != nil {
			return l.abandon(r, msgs)
		}
		log.Warn("contact lease unavailable; holding the events", "err", err)
		return l.hold(r, msgs, l.w.now().Add(time.Second), "state_unavailable")
	}
	keep := false // an outcome is unknown: the lease is kept until it expires
	defer func() {
		if keep {
			return
		}
		if err := ls.Release(context.WithoutCancel(ctx)); err != nil && !errors.Is(err, lease.ErrLost) {
			log.Warn("contact lease release failed; it expires by itself", "err", err)
		}
	}()
	// Everything sent under the lease is sent before it can pass on, and
	// while this worker's member key still covers its per-contact leases.
	lctx, cancel := context.WithDeadline(ctx, ls.Deadline())
	defer cancel()
	if l.group != nil {
		deadline := ls.Deadline()
		lctx, cancel = fenced(lctx, func() time.Time { return minTime(deadline, tk.Fence()) })
		defer cancel()
	}
	// A request starts only while the lease, kept from the moment its
	// outcome is unknown, covers its settle horizon even if this worker
	// dies before: its key lives until the expiry at least.
	res := l.apply(lctx, j, msgs, evs, ls.Expiry().Add(-l.horizon))
	if !res.settle.IsZero() {
		keep = true
		res = l.keepLease(ctx, res, ls, log)
	}
	return res
}

// keepLease keeps the contact's lease ls, which a request whose outcome is
// unknown was sent under, for a fresh TTL (past the request's settle
// horizon: the horizon is at most two thirds of it) and leaves it to
// expire: no replica sends for the contact before. r's held events wait
// until it has expired.
func (l *lane) keepLease(ctx context.Context, r result, ls *lease.Lease, log *slog.Logger) result {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	kept, err := ls.Keep(kctx)
	cancel()
	expiry := ls.Expiry()
	if err != nil {
		log.Warn("could not keep the contact's lease after an unknown outcome; it expires by itself, possibly before the settle horizon", "err", err,
			"settle_until", r.settle, "lease_expiry", expiry)
	} else {
		expiry = kept.Expiry()
	}
	if len(r.back) > 0 {
		r.holdUntil = maxTime(r.holdUntil, expiry)
	}
	return r
}

// settleSolo keeps every other replica from sending for the contact of key
// before settle, the end of the settle horizon of a request sent under the
// solo lease. It takes the contact's lease, which replicas delivering under
// per-contact leases respect, and leaves it to expire (a TTL from now, past
// settle); the lane gives the solo lease up only after settle (run waits
// for the latest when it stops), so no replica takes the solo lease and
// sends without per-contact leases before. If the contact's lease cannot be
// taken, the delivery keeps its solo ticket until settle instead: the solo
// lease is not handed over meanwhile.
func (l *lane) settleSolo(ctx context.Context, key string, settle time.Time, log *slog.Logger) {
	for {
		old := l.soloSettle.Load()
		if settle.UnixNano() <= old || l.soloSettle.CompareAndSwap(old, settle.UnixNano()) {
			break
		}
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	_, err := l.w.leases.Acquire(actx, key)
	cancel()
	if err == nil {
		return
	}
	log.Warn("could not take the contact's lease after an unknown outcome; keeping the solo lease until the settle horizon", "err", err, "settle_until", settle)
	t := time.NewTimer(time.Until(settle))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// endOf returns when ctx's delivery must stop: the earlier of its deadline
// and its fence as it stands now.
func endOf(ctx context.Context) (time.Time, bool) {
	dl, ok := ctx.Deadline()
	if f := ratelimit.FenceFrom(ctx); f != nil {
		if fd := f(); !ok || fd.Before(dl) {
			return fd, true
		}
	}
	return dl, ok
}

// errLapsed is the cause of a delivery's context ended by its fence.
var errLapsed = errors.New("processor: the lease covering the delivery lapsed")

// fenced returns ctx, carrying fence for the provider's transport (which
// sends nothing once it has passed, ratelimit.WithFence), and cancelled
// once fence has passed. A fence moves on while its lease is renewed: the
// timer re-reads it when it fires, and is set again while it is ahead.
func fenced(ctx context.Context, fence func() time.Time) (context.Context, context.CancelFunc) {
	cctx, cancel := context.WithCancelCause(ratelimit.WithFence(ctx, fence))
	d := time.Until(fence())
	if d <= 0 {
		cancel(errLapsed)
		return cctx, func() {}
	}
	// One allocation holds the timer's state; the timer's func and the
	// returned stop are its methods.
	ft := &fenceTimer{fence: fence, cancel: cancel}
	ft.mu.Lock()
	ft.t = time.AfterFunc(d, ft.fire)
	ft.mu.Unlock()
	return cctx, ft.stop
}

// fenceTimer cancels a delivery's context once its fence has passed (see
// fenced).
type fenceTimer struct {
	mu      sync.Mutex // t is set after AfterFunc returns; a stopped timer stays stopped
	t       *time.Timer
	stopped bool
	fence   func() time.Time
	cancel  context.CancelCauseFunc
}

// fire re-reads the fence: the timer is set again while it is ahead.
func (f *fenceTimer) fire() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	if d := time.Until(f.fence()); d > 0 {
		f.t.Reset(d)
		return
	}
	f.cancel(errLapsed)
}

// stop stops the timer and cancels the context.
func (f *fenceTimer) stop() {
	f.mu.Lock()
	f.stopped = true
	f.t.Stop()
	f.mu.Unlock()
	f.cancel(context.Canceled)
}

// apply sends one PATCH for msgs (one contact, the lease held) and settles
// them. A PATCH is sent only until sendBy (zero: no limit), the last moment
// the lease covers the settle horizon of a request started then.
func (l *lane) apply(ctx context.Context, j job, msgs []pending, evs []events.Event, sendBy time.Time) result {
	r := result{job: j}
	// One PATCH for the contact: per field, the value with the newest
	// occurred_at among the queued events.
	changes := make([]lww.Change, len(evs))
	for i := range evs {
		changes[i] = lww.Change{Patch: evs[i].Patch, Clock: clockOf(&msgs[i], &evs[i]), Valid: true}
	}
	patch, clocks, err := lww.MergeSplit(l.target, changes...)
	if err != nil {
		if len(msgs) > 1 {
			return l.oneByOne(ctx, j, msgs, evs, sendBy)
		}
		l.deadLetter(ctx, msgs[0], &evs[0], dlq.ReasonInvalid, err, 0, time.Time{})
		return r
	}
	merged := evs[len(evs)-1]
	log := &deliveryLog{base: l.log, eventID: merged.ID, seq: msgs[0].seq, coalesced: len(msgs)}

	// Drop every field a newer event already set at the provider.
	st, err := l.w.state.Get(ctx, l.target, merged.ContactID)
	if err != nil {
		log.Warn("contact state unavailable; holding the events", "err", err)
		return l.hold(r, msgs, l.w.now().Add(time.Second), "state_unavailable")
	}
	kept, keptClocks, dropped := patch, clocks, []string(nil)
	if lww.AnyStale(clocks, st) {
		kept, keptClocks, dropped, err = lww.FilterSplit(l.target, patch, clocks, st)
	}
	if err != nil {
		if len(msgs) > 1 {
			return l.oneByOne(ctx, j, msgs, evs, sendBy)
		}
		l.deadLetter(ctx, msgs[0], &evs[0], dlq.ReasonInvalid, err, 0, time.Time{})
		return r
	}
	d := delivery{msgs: msgs, evs: evs, changes: changes, clocks: clocks, sent: keptClocks, dropped: dropped, st: st}
	if len(kept.Patch()) == 0 {
		l.record(&d, history.OutcomeSuperseded, 0)
		for i, p := range msgs {
			log.Debug("superseded: every field is older than the value at the provider", "event_id", evs[i].ID, "dropped", dropped)
			l.ack(ctx, p, "superseded", log)
		}
		return r
	}
	merged.Patch = kept.Patch()

	grant, hold, err := l.pace(ctx)
	switch {
	case err != nil:
		return l.interrupted(r, msgs)
	case hold > 0:
		return l.hold(r, msgs, l.w.now().Add(hold), "rate_limit")
	}
	start := l.w.now()
	if !sendBy.IsZero() && start.After(sendBy) {
		// The lease would not cover the settle horizon of the request if
		// its outcome were unknown: taken again first.
		return l.hold(r, msgs, start.Add(leaseRetry), "lease_expired")
	}
	for _, p := range msgs {
		if p.repair {
			l.w.m.repairs.WithLabelValues(l.name, "unknown_outcome").Inc()
			break
		}
	}
	res, err := l.provider.Patch(ratelimit.WithGrant(l.traced(ctx, msgs), grant), &merged)
	status := res.Status
	var pe *Error
	if err != nil { // errors.As's targets escape: not for every success
		if errors.As(err, &pe) {
			status = pe.Status
		}
		if we := (*ratelimit.WaitError)(nil); errors.As(err, &we) {
			// A pause began after the slot was granted: nothing was sent.
			return l.hold(r, msgs, we.Until, "paused")
		}
	}
	l.requestDuration(status).Observe(l.w.now().Sub(start).Seconds())
	class := ClassOf(err)
	if status != 0 && class != ClassCredentials {
		// The provider took our key: a credentials pause the probe was for
		// ends for every replica.
		if err := l.budget.CredentialsOK(context.WithoutCancel(ctx), grant); err != nil {
			log.Warn("could not clear the credentials pause", "err", err)
		}
	}

	if err == nil {
		// The clocks are stored while the lease still holds, and the events
		// acknowledged only then. Past it, another replica may have sent
		// an older value of these fields after ours without knowing ours:
		// only our events' next delivery puts ours back, so they are held
		// for it instead of acknowledged (the PATCH is sent again; it is
		// idempotent). A shutdown does not cut the commit short.
		cctx, cancel := commitContext(ctx)
		ow, err := l.w.state.CommitSplit(cctx, l.target, merged.ContactID, st, kept, keptClocks)
		cancel()
		if err != nil {
			l.record(&d, "commit_failed", res.Status)
			log.Warn("applied, but the field clocks could not be stored while the contact's lease held; delivering the events again", "err", err)
			if l.stopping.Load() {
				return l.abandon(r, msgs)
			}
			return l.hold(r, msgs, l.w.now().Add(leaseRetry), "commit_failed")
		}
		l.record(&d, history.OutcomeApplied, res.Status)
		if len(ow.Unknown) > 0 {
			l.w.m.repairs.WithLabelValues(l.name, "no_value").Inc()
			log.Warn("the PATCH overwrote a newer value at the provider that cannot be sent again (stored by an older version, without its value); it stays until the field's next change", "fields", ow.Unknown)
		}
		if len(ow.Fields) > 0 {
			// The commit marked the newer values pending in the state: the
			// events are delivered again at once, under the same lease and
			// budget, and Filter sends the pending values (their own are
			// superseded now). Until that PATCH commits, the events are not
			// acknowledged, and the marks stay for any later delivery.
			l.w.m.repairs.WithLabelValues(l.name, "newer_clock").Inc()
			log.Info("the PATCH overwrote a newer value at the provider; sending it again", "fields", ow.Fields)
			return l.apply(ctx, j, msgs, evs, sendBy)
		}
		for i, p := range msgs {
			outcome := "applied"
			if !appliedAny(keptClocks, changes[i].Clock) {
				outcome = "superseded"
				log.Debug("superseded: every field lost to a newer event", "event_id", evs[i].ID)
			}
			l.ack(ctx, p, outcome, log)
		}
		l.coalesced.Add(float64(len(msgs) - 1))
		log.Debug("applied", "status", res.Status)
		return r
	}
	if class != ClassNotSent {
		l.record(&d, class.String(), status)
	}
	switch class {
	case ClassUnknown:
		return l.unknown(ctx, r, msgs, evs, start, err, log)
	case ClassNotSent:
		return l.notSent(ctx, r, msgs, evs, err, log)
	}
	if l.notSentRun.Load() != 0 {
		l.notSentRun.Store(0)
	}
	if ctx.Err() != nil {
		return l.interrupted(r, msgs)
	}
	switch class {
	case ClassRateLimited:
		var until time.Time
		if pe != nil {
			until = pe.RetryAt
		}
		if err := l.budget.Pause(context.WithoutCancel(ctx), until, "rate limited (429)"); err != nil {
			log.Warn("could not share the 429 pause", "err", err)
		}
		log.Warn("provider answered 429; target paused for every replica", "until", until)
		return l.hold(r, msgs, l.blockedUntil(time.Second), "rate_limited")
	case ClassCredentials:
		reason := "credentials rejected"
		if pe != nil {
			reason = fmt.Sprintf("credentials rejected: HTTP %d %s %s", pe.Status, pe.Code, pe.Message)
		}
		if err := l.budget.CredentialsFailed(context.WithoutCancel(ctx), grant, reason); err != nil {
			log.Warn("could not share the credentials pause", "err", err)
		}
		log.Error("PROVIDER REJECTED OUR CREDENTIALS: deliveries to this target are paused for every replica; fix the API key or plan",
			"status", status, "err", err)
		// The events wait in the worker: never dead-lettered for a bad key.
		return l.hold(r, msgs, l.blockedUntil(time.Second), "credentials")
	case ClassPermanent:
		if len(msgs) > 1 {
			log.Info("coalesced delivery rejected; delivering one by one to find the bad event", "err", err)
			return l.oneByOne(ctx, j, msgs, evs, sendBy)
		}
		log.Warn("provider rejected the event; dead-lettering", "status", status, "err", err)
		l.deadLetter(ctx, msgs[0], &evs[0], dlq.ReasonRejected, err, 0, time.Time{})
		return r
	}
	for i, p := range msgs {
		l.retry(ctx, p, &evs[i], err, log)
	}
	return r
}

// commitContext is ctx without its cancellation (a shutdown lets a commit
// finish) but with a deadline: the earlier of ctx's and the fence (the end
// of the lease the delivery runs under) as it stands now, or 5 seconds
// without either.
func commitContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := endOf(ctx)
	if !ok {
		dl = time.Now().Add(5 * time.Second)
	}
	return context.WithDeadline(context.WithoutCancel(ctx), dl)
}

// leaseRetry is how long a contact's events wait in the worker when another
// replica holds the contact's lease.
const leaseRetry = 200 * time.Millisecond

// appliedAny reports whether any field of the PATCH carries clock c: the
// event contributed at least one value.
func appliedAny(clocks map[string]lww.Clock, c lww.Clock) bool {
	for _, k := range clocks {
		if k.Equal(c) {
			return true
		}
	}
	return false
}

// oneByOne applies msgs one at a time in stream order, under the lease
// deliver holds, after a merged PATCH was rejected or could not be built,
// so a bad event is dead-lettered alone. Once one is held (the target
// paused), the rest are held with it.
func (l *lane) oneByOne(ctx context.Context, j job, msgs []pending, evs []events.Event, sendBy time.Time) result {
	r := result{job: j}
	for i := range msgs {
		one := l.apply(ctx, job{key: j.key, msgs: msgs[i : i+1]}, msgs[i:i+1], evs[i:i+1], sendBy)
		r.settle = maxTime(r.settle, one.settle)
		if len(one.back) > 0 {
			r.back = append(one.back, msgs[i+1:]...)
			r.holdUntil = one.holdUntil
			return r
		}
	}
	return r
}

// decodeAll decodes msgs' events; a message that is not a valid event is
// dead-lettered as invalid at once and left out.
func (l *lane) decodeAll(ctx context.Context, msgs []pending) ([]pending, []events.Event) {
	ok := make([]pending, 0, len(msgs))
	evs := make([]events.Event, 0, len(msgs))
	for _, p := range msgs {
		// The message's data is its own (the NATS client copies every
		// message it reads) and never changed: the event may share it.
		ev, err := events.DecodeShared(p.msg.Data())
		if err == nil && !isSubjectOf(p.msg.Subject(), l.w.scfg.SubjectPrefix, &ev) {
			err = fmt.Errorf("%w: subject %s does not match the event's %s", events.ErrInvalid, p.msg.Subject(), ev.Subject(l.w.scfg.SubjectPrefix))
		}
		if err != nil {
			l.deadLetter(ctx, p, nil, dlq.ReasonInvalid, err, 0, time.Time{})
			continue
		}
		ok = append(ok, p)
		evs = append(evs, ev)
	}
	return ok, evs
}

// isSubjectOf reports whether subject is ev.Subject(prefix), or that
// subject as a partitioned stream stores it (a partition number before the
// contact id, see stream.SplitSubject), without building a string for
// every message.
func isSubjectOf(subject, prefix string, ev *events.Event) bool {
	for _, part := range [...]string{prefix, ".patch.", string(ev.Target), "."} {
		if !strings.HasPrefix(subject, part) {
			return false
		}
		subject = subject[len(part):]
	}
	if subject == ev.ContactID {
		return true
	}
	p, contact, ok := strings.Cut(subject, ".")
	return ok && contact == ev.ContactID && isPartitionToken(p)
}

// isPartitionToken reports whether s is a partition number as nats-server
// writes it: decimal digits without a leading zero.
func isPartitionToken(s string) bool {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// pace takes one request slot from the target's shared budget, waiting up
// to HoldLimit for it. It returns the hold (> 0) when the wait would be
// longer: the target is paused or its window is used up. When the budget
// cannot be reached (NATS down) nothing is sent: it fails closed and holds.
func (l *lane) pace(ctx context.Context) (ratelimit.Grant, time.Duration, error) {
	for {
		g, err := l.budget.TryTake(ctx)
		if err == nil {
			return g, 0, nil
		}
		if ctx.Err() != nil {
			return g, 0, ctx.Err()
		}
		var we *ratelimit.WaitError
		if !errors.As(err, &we) {
			l.w.log.Warn("rate budget unavailable; holding", "provider", l.name, "err", err)
			return g, time.Second, nil
		}
		d := we.Until.Sub(l.w.now())
		if dl, ok := endOf(ctx); d > l.w.cfg.HoldLimit || ok && we.Until.After(dl) {
			// Too long to wait here, or past the contact lease: the events
			// wait in the worker's queue instead.
			return g, d, nil
		}
		changed := l.budget.Changed()
		t := time.NewTimer(max(d, time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return g, 0, ctx.Err()
		case <-t.C:
		case <-changed:
			t.Stop()
		}
	}
}

// blockedUntil is when the target's pause or used-up window ends, at least
// min from now.
func (l *lane) blockedUntil(min time.Duration) time.Time {
	now := l.w.now()
	until, _ := l.budget.Blocked()
	return maxTime(until, now.Add(min))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// hold puts msgs back in the worker's queue until until: the target is
// paused, or out of budget. Holding is not an attempt and costs JetStream
// nothing: the messages stay delivered to this worker (kept alive with
// InProgress) instead of being handed back to come round again.
func (l *lane) hold(r result, msgs []pending, until time.Time, why string) result {
	r.back, r.holdUntil = msgs, until
	l.w.m.deliveries.WithLabelValues(l.name, "held").Add(float64(len(msgs)))
	l.w.m.retryDelay.WithLabelValues(l.name, why).Observe(max(until.Sub(l.w.now()), 0).Seconds())
	return r
}

// unknown settles msgs after a request whose outcome is unknown (written,
// then a timeout, a reset, an answer cut off): the provider may have
// applied it, or may apply it later. It is an attempt for each event (those
// whose attempts or age are used up are dead-lettered); the others wait in
// the worker, not acknowledged, until the settle horizon from the request's
// start has passed (r.settle, for deliver to keep the contact's lease) and
// their backoff with it, and are then delivered again merged with what is
// queued for the contact: the contact's newest values of every field the
// request carried are sent again, after any late apply of it.
func (l *lane) unknown(ctx context.Context, r result, msgs []pending, evs []events.Event, start time.Time, cause error, log *deliveryLog) result {
	now := l.w.now()
	r.settle = start.Add(l.horizon)
	l.w.m.unknown.WithLabelValues(l.name).Inc()
	l.delivered("unknown").Add(float64(len(msgs)))
	log.Warn("outcome unknown: the provider may apply the request late; the contact waits out the settle horizon, then its newest values are sent again",
		"err", cause, "settle_until", r.settle)
	back := make([]pending, 0, len(msgs))
	most := 0
	for i, p := range msgs {
		n, first, err := l.w.attempts.add(context.WithoutCancel(ctx), p.seq, now)
		if err != nil {
			n, first = int(p.md.NumDelivered), p.md.Timestamp
			log.Warn("attempt count unavailable; using the delivery count", "err", err, "seq", p.seq)
		}
		if age := now.Sub(p.md.Timestamp); n >= l.w.cfg.MaxAttempts || age >= l.w.cfg.MaxRetryAge {
			log.Warn("retries exhausted; dead-lettering", "err", cause, "attempt", n, "age", age, "seq", p.seq)
			l.deadLetter(ctx, p, &evs[i], dlq.ReasonExhausted,
				fmt.Errorf("gave up after %d attempts over %s: %w", n, age.Round(time.Millisecond), cause), n, first)
			continue
		}
		most = max(most, n)
		p.repair = true
		back = append(back, p)
	}
	if len(back) == 0 {
		return r
	}
	wait := max(r.settle.Sub(now), l.w.backoff(most))
	l.w.m.retryDelay.WithLabelValues(l.name, ClassUnknown.String()).Observe(wait.Seconds())
	if l.stopping.Load() {
		// Handed back, not before the horizon: the lease kept covers it
		// for the other replicas, the delay for this one's successor.
		for _, p := range back {
			_ = p.msg.NakWithDelay(wait)
		}
		l.w.m.deliveries.WithLabelValues(l.name, "abandoned").Add(float64(len(back)))
		return r
	}
	r.back, r.holdUntil = back, now.Add(wait)
	return r
}

// notSent settles msgs after a request of which nothing was written: its
// lease's fence or its deadline passed before it was (held for the lease to
// be taken again), or the connection could not be made. Not an attempt:
// the events wait in the worker, backing off while the target's requests
// keep failing so, and are dead-lettered only once older than the retry
// age.
func (l *lane) notSent(ctx context.Context, r result, msgs []pending, evs []events.Event, cause error, log *deliveryLog) result {
	if errors.Is(cause, ratelimit.ErrFenced) || ctx.Err() != nil {
		log.Debug("the lease or deadline of the delivery passed before the request was written; holding", "err", cause)
		return l.interrupted(r, msgs)
	}
	k := l.notSentRun.Add(1)
	now := l.w.now()
	keep := msgs[:0:0]
	for i, p := range msgs {
		if age := now.Sub(p.md.Timestamp); age >= l.w.cfg.MaxRetryAge {
			l.deadLetter(ctx, p, &evs[i], dlq.ReasonExhausted, fmt.Errorf("not sent for %s: %w", age.Round(time.Millisecond), cause), 0, time.Time{})
			continue
		}
		keep = append(keep, p)
	}
	if len(keep) == 0 {
		return r
	}
	delay := l.w.backoff(int(min(k, 64)))
	log.Info("request not sent (nothing written); holding, not an attempt", "err", cause, "delay", delay)
	return l.hold(r, keep, now.Add(delay), ClassNotSent.String())
}

// interrupted settles msgs after their delivery's context ended: handed
// back to JetStream when the worker is stopping, held in the worker for a
// new try when only the contact's lease ran out.
func (l *lane) interrupted(r result, msgs []pending) result {
	if l.stopping.Load() {
		return l.abandon(r, msgs)
	}
	return l.hold(r, msgs, l.w.now().Add(leaseRetry), "lease_expired")
}

// abandon hands msgs back to JetStream for redelivery at once: the worker is
// shutting down.
func (l *lane) abandon(r result, msgs []pending) result {
	for _, p := range msgs {
		_ = p.msg.Nak()
	}
	l.w.m.deliveries.WithLabelValues(l.name, "abandoned").Add(float64(len(msgs)))
	return r
}

// ack settles p as done with outcome (applied, superseded).
func (l *lane) ack(ctx context.Context, p pending, outcome string, log *deliveryLog) {
	if err := p.msg.Ack(); err != nil {
		log.Warn("ack failed; the event will be redelivered and re-applied", "err", err, "seq", p.seq)
	}
	l.delivered(outcome).Inc()
	if p.md.NumDelivered > 1 {
		l.w.attempts.forget(ctx, p.seq)
	}
}

// retry hands p back to JetStream with a backoff delay after a transient
// failure, or dead-letters it once its attempts or age are used up.
// Attempts are provider calls counted in NATS, so every replica and every
// restart sees the same count; a hold during a pause is not an attempt.
func (l *lane) retry(ctx context.Context, p pending, ev *events.Event, cause error, log *deliveryLog) {
	now := l.w.now()
	n, first, err := l.w.attempts.add(ctx, p.seq, now)
	if err != nil {
		// The count is unavailable: JetStream's delivery count is an upper
		// bound of the attempts, so the event is never retried forever.
		n, first = int(p.md.NumDelivered), p.md.Timestamp
		log.Warn("attempt count unavailable; using the delivery count", "err", err, "seq", p.seq)
	}
	age := now.Sub(p.md.Timestamp)
	if n >= l.w.cfg.MaxAttempts || age >= l.w.cfg.MaxRetryAge {
		log.Warn("retries exhausted; dead-lettering", "err", cause, "attempt", n, "age", age, "seq", p.seq)
		l.deadLetter(ctx, p, ev, dlq.ReasonExhausted,
			fmt.Errorf("gave up after %d attempts over %s: %w", n, age.Round(time.Millisecond), cause), n, first)
		return
	}
	delay := l.w.backoff(n)
	log.Info("transient failure; retrying", "err", cause, "attempt", n, "delay", delay, "seq", p.seq)
	l.w.m.retryDelay.WithLabelValues(l.name, ClassTransient.String()).Observe(delay.Seconds())
	if err := p.msg.NakWithDelay(delay); err != nil {
		log.Warn("nak failed; the event will be redelivered after the ack wait", "err", err, "seq", p.seq)
	}
	l.w.m.deliveries.WithLabelValues(l.name, "retry").Inc()
}

// deliveryLog is the logger of one delivery: the lane's, with the
// delivery's event id, first stream sequence and count of coalesced events.
// slog's With formats its attributes at once, a cost on every delivery
// though most never log at the level set; deliveryLog calls it on the first
// record that is logged. Records are the ones Logger.With's logger writes,
// with the caller's source position.
type deliveryLog struct {
	base      *slog.Logger
	eventID   string
	seq       uint64
	coalesced int
	with      *slog.Logger // base with the delivery's attributes, once built
}

func (d *deliveryLog) Debug(msg string, args ...any) { d.log(slog.LevelDebug, msg, args...) }
func (d *deliveryLog) Info(msg string, args ...any)  { d.log(slog.LevelInfo, msg, args...) }
func (d *deliveryLog) Warn(msg string, args ...any)  { d.log(slog.LevelWarn, msg, args...) }
func (d *deliveryLog) Error(msg string, args ...any) { d.log(slog.LevelError, msg, args...) }

// log is slog.Logger.log on the delivery's logger: it must be called from
// the level methods above, so the record's PC is their caller's.
func (d *deliveryLog) log(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if !d.base.Enabled(ctx, level) {
		return
	}
	if d.with == nil {
		d.with = d.base.With("event_id", d.eventID, "seq", d.seq, "coalesced", d.coalesced)
	}
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:]) // runtime.Callers, log, the level method
	r := slog.NewRecord(time.Now(), level, msg, pcs[0])
	r.Add(args...)
	_ = d.with.Handler().Handle(ctx, r)
}
