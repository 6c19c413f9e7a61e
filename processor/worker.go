package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/stream"
)

// Config configures the worker (environment prefix PATCHBAY_WORKER_).
type Config struct {
	Concurrency      int           `envconfig:"CONCURRENCY" default:"32" desc:"deliveries in flight at once (events of one contact are always applied one at a time, in order)"`
	AckWait          time.Duration `envconfig:"ACK_WAIT" default:"30s" desc:"JetStream ack wait; a delivery not acknowledged in this time is redelivered (long calls send InProgress)"`
	MaxAttempts      int           `envconfig:"MAX_ATTEMPTS" default:"12" desc:"delivery attempts before a transiently failing event is dead-lettered"`
	MaxRetryAge      time.Duration `envconfig:"MAX_RETRY_AGE" default:"24h" desc:"age after which a transiently failing event is dead-lettered"`
	BackoffInitial   time.Duration `envconfig:"BACKOFF_INITIAL" default:"1s" desc:"first retry delay"`
	BackoffMax       time.Duration `envconfig:"BACKOFF_MAX" default:"10m" desc:"longest retry delay"`
	CredentialsPause time.Duration `envconfig:"CREDENTIALS_PAUSE" default:"1m" desc:"how long a target pauses after a bad-key or plan answer before trying again"`
	HoldLimit        time.Duration `envconfig:"HOLD_LIMIT" default:"5s" desc:"waits up to this long are held in the worker; longer ones go back to JetStream with a delay"`
	DrainTimeout     time.Duration `envconfig:"DRAIN_TIMEOUT" default:"20s" desc:"on shutdown, how long in-flight deliveries may finish before they are abandoned for redelivery"`
	Coalesce         int           `envconfig:"COALESCE" default:"50" desc:"most queued events of one contact merged into one PATCH (0 or 1: never merge)"`
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case c.Concurrency < 1 || c.Concurrency > 4096:
		return fmt.Errorf("processor: concurrency %d out of range 1..4096", c.Concurrency)
	case c.AckWait < time.Second:
		return fmt.Errorf("processor: ack wait %s below 1s", c.AckWait)
	case c.MaxAttempts < 1:
		return fmt.Errorf("processor: max attempts must be at least 1")
	case c.MaxRetryAge <= 0 || c.BackoffInitial <= 0 || c.BackoffMax < c.BackoffInitial:
		return fmt.Errorf("processor: retry age and backoff bounds must be positive, max ≥ initial")
	case c.CredentialsPause <= 0 || c.HoldLimit < 0 || c.DrainTimeout < 0:
		return fmt.Errorf("processor: pauses and timeouts must not be negative")
	}
	return nil
}

// Target wires one provider into the worker.
type Target struct {
	Provider Provider
	// RatePerMinute is the client-side request limit (0: none).
	RatePerMinute int
}

// Deps are the worker's collaborators.
type Deps struct {
	JS      jetstream.JetStream
	Conn    *nats.Conn // for the MAX_DELIVERIES advisory; may be nil
	Stream  stream.Config
	Targets map[events.Target]Target
	Logger  *slog.Logger
	// Registerer receives the worker's metrics; nil means not registered.
	Registerer prometheus.Registerer
}

// Worker consumes the events stream and delivers each event.
type Worker struct {
	cfg     Config
	js      jetstream.JetStream
	nc      *nats.Conn
	scfg    stream.Config
	targets map[events.Target]Target
	gates   map[events.Target]*Gate
	dlq     *dlq.Publisher
	log     *slog.Logger
	m       *metrics
	now     func() time.Time
}

// New returns a Worker; it validates cfg and needs a provider for every
// known target.
func New(cfg Config, d Deps) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := d.Stream.Validate(); err != nil {
		return nil, err
	}
	if d.JS == nil {
		return nil, errors.New("processor: no JetStream context")
	}
	w := &Worker{
		cfg:     cfg,
		js:      d.JS,
		nc:      d.Conn,
		scfg:    d.Stream,
		targets: d.Targets,
		gates:   map[events.Target]*Gate{},
		dlq:     dlq.NewPublisher(d.JS, d.Stream.SubjectPrefix),
		log:     d.Logger,
		m:       newMetrics(d.Registerer),
		now:     time.Now,
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	for _, t := range events.Targets() {
		tg, ok := d.Targets[t]
		if !ok || tg.Provider == nil {
			return nil, fmt.Errorf("processor: no provider for target %s", t)
		}
		w.gates[t] = NewGate(tg.RatePerMinute)
		w.m.paused.WithLabelValues(string(t)).Set(0)
	}
	return w, nil
}

// outcome is what handling one delivery did with the message.
type outcome int

const (
	resolved  outcome = iota // acked, or dead-lettered and terminated
	retried                  // NakWithDelay after a failed attempt
	deferred                 // NakWithDelay without an attempt (pause, ordering, DLQ unavailable)
	abandoned                // shutdown: left for redelivery
)

type job struct {
	msg       jetstream.Msg
	key       string
	seq       uint64
	md        *jetstream.MsgMetadata
	deferrals int
	first     time.Time
	rest      []job // later messages of the same contact, coalesced with this one
}

// head returns j without the messages coalesced with it.
func (j job) head() job {
	j.rest = nil
	return j
}

type result struct {
	job   job // the message whose outcome decides the contact's fence
	out   outcome
	delay time.Duration
	// settledSeqs and deferredSeqs list every message the job acknowledged
	// or terminated, and every one it handed back without an attempt.
	settledSeqs  []uint64
	deferredSeqs []uint64
}

// Run consumes until ctx is cancelled, then stops taking messages, lets
// in-flight deliveries finish for up to DrainTimeout, hands everything else
// back to JetStream, and returns. It returns an error only if it could not
// start.
func (w *Worker) Run(ctx context.Context) error {
	maxAckPending := w.cfg.Concurrency * 4
	cons, err := w.js.CreateOrUpdateConsumer(ctx, w.scfg.EventsStream, w.scfg.ConsumerConfig(w.cfg.AckWait, maxAckPending))
	if err != nil {
		return fmt.Errorf("processor: consumer %s: %w", w.scfg.Consumer, err)
	}
	if w.nc != nil {
		sub, err := w.watchMaxDeliveries(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	room := maxAckPending
	f := newFetcher(cons, room, 2*w.cfg.Concurrency, w.log)
	fetchCtx, stopFetching := context.WithCancel(ctx)
	defer stopFetching()
	incoming := make(chan jetstream.Msg)
	fetcherDone := make(chan struct{})
	go func() {
		defer close(fetcherDone)
		defer close(incoming)
		f.run(fetchCtx, incoming)
	}()

	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	jobs := make(chan job)
	results := make(chan result, w.cfg.Concurrency)
	var wg sync.WaitGroup
	for range w.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				w.m.inflight.Inc()
				r := w.handle(workCtx, j)
				w.m.inflight.Dec()
				f.release(1 + len(j.rest)) // every message of j is settled or handed back
				results <- r
			}
		}()
	}

	d := newDispatcher(w, f.release)
	tick := time.NewTicker(w.cfg.AckWait / 3)
	defer tick.Stop()
	stopping := false
	done := ctx.Done()
	var drainTimer <-chan time.Time
	busy := 0
	for {
		var send chan job
		var next job
		if len(d.ready) > 0 && !stopping {
			send, next = jobs, d.ready[0]
		}
		if stopping && busy == 0 && incoming == nil {
			break
		}
		select {
		case m, ok := <-incoming:
			if !ok {
				incoming = nil
				continue
			}
			if stopping {
				_ = m.Nak()
				f.release(1)
				continue
			}
			d.admit(m)
		case send <- next:
			d.ready = d.ready[1:]
			busy++
		case r := <-results:
			busy--
			d.done(r)
		case <-tick.C:
			d.keepAlive()
		case <-done:
			stopping, done = true, nil
			stopFetching()
			drainTimer = time.After(w.cfg.DrainTimeout)
		case <-drainTimer:
			cancelWork() // in-flight calls see cancellation and leave their messages
		}
	}
	close(jobs)
	wg.Wait()
	<-fetcherDone
	d.release()
	return nil
}

// handle delivers a job: one message, or a backlog of one contact's
// messages coalesced into a single PATCH.
func (w *Worker) handle(ctx context.Context, j job) result {
	if len(j.rest) == 0 {
		return w.handleOne(ctx, j)
	}
	return w.handleGroup(ctx, j)
}

// decode reads and checks the event in j's message.
func (w *Worker) decode(j job) (events.Event, error) {
	ev, err := events.Decode(j.msg.Data())
	if err == nil && ev.Subject(w.scfg.SubjectPrefix) != j.msg.Subject() {
		err = fmt.Errorf("%w: subject %s does not match the event's %s", events.ErrInvalid, j.msg.Subject(), ev.Subject(w.scfg.SubjectPrefix))
	}
	return ev, err
}

// call sends ev through its target's gate and provider. Rate limits are
// waited out in the worker up to HoldLimit; a longer wait returns pause > 0
// and nothing was sent. A cancelled ctx returns ctx's error.
func (w *Worker) call(ctx context.Context, ev *events.Event, log *slog.Logger) (r Result, pause time.Duration, err error) {
	target := string(ev.Target)
	gate := w.gates[ev.Target]
	for try := 0; ; try++ {
		now := w.now()
		wait, res := gate.Reserve(now)
		if wait > w.cfg.HoldLimit || try >= 3 {
			if res != nil {
				res.Cancel()
			}
			return Result{}, max(wait, w.cfg.BackoffInitial), nil
		}
		if err := Wait(ctx, wait); err != nil {
			if res != nil {
				res.Cancel()
			}
			return Result{}, 0, err
		}
		start := w.now()
		r, err := w.targets[ev.Target].Provider.Patch(ctx, ev)
		status := r.Status
		var pe *Error
		if errors.As(err, &pe) {
			status = pe.Status
		}
		w.m.requests.WithLabelValues(target, StatusClass(status)).Observe(w.now().Sub(start).Seconds())
		if err == nil && !r.PauseUntil.IsZero() && gate.PauseUntil(r.PauseUntil, "rate limit window used up") {
			w.m.paused.WithLabelValues(target).Set(1)
			log.Info("rate limit window used up; pausing target", "until", r.PauseUntil)
		}
		if err == nil || ctx.Err() != nil || ClassOf(err) != ClassRateLimited {
			if ctx.Err() != nil && err != nil {
				return r, 0, ctx.Err()
			}
			return r, 0, err
		}
		now = w.now()
		until := now.Add(w.cfg.BackoffInitial)
		if pe != nil && pe.RetryAt.After(now) {
			until = pe.RetryAt
		}
		if gate.PauseUntil(until, "rate limited (429)") {
			w.m.paused.WithLabelValues(target).Set(1)
			log.Warn("provider answered 429; pausing target", "until", until)
		}
		// Loop: wait for the window without using up an attempt.
	}
}

// handleOne delivers one message and settles it with JetStream.
func (w *Worker) handleOne(ctx context.Context, j job) result {
	msg, md := j.msg, j.md
	attempt := max(int(md.NumDelivered)-j.deferrals, 1)
	ev, err := w.decode(j)
	if err != nil {
		return w.deadLetter(ctx, j, "", dlq.Letter{Reason: dlq.ReasonInvalid, Detail: err.Error(), Attempts: attempt, FirstAttempt: j.first, LastAttempt: w.now()})
	}
	target := string(ev.Target)
	log := w.log.With("event_id", ev.ID, "provider", target, "attempt", attempt, "seq", j.seq)

	stopHeartbeat := w.heartbeat(msg)
	defer stopHeartbeat()

	r, pause, err := w.call(ctx, &ev, log)
	switch {
	case ctx.Err() != nil:
		return w.abandon(j, target)
	case pause > 0:
		return w.nak(j, deferred, pause, target, "paused")
	case err == nil:
		if err := msg.Ack(); err != nil {
			log.Warn("ack failed; the event will be redelivered and re-applied", "err", err)
		}
		w.m.deliveries.WithLabelValues(target, "applied").Inc()
		log.Debug("applied", "status", r.Status)
		return result{job: j, out: resolved, settledSeqs: []uint64{j.seq}}
	}
	return w.failed(ctx, j, &ev, attempt, err, log)
}

// failed settles a message whose delivery failed with err (not a rate limit).
func (w *Worker) failed(ctx context.Context, j job, ev *events.Event, attempt int, err error, log *slog.Logger) result {
	target := string(ev.Target)
	now := w.now()
	letter := dlq.Letter{
		Attempts: attempt, FirstAttempt: j.first, LastAttempt: now, EventID: ev.ID, Target: target,
		Detail: err.Error(),
	}
	var pe *Error
	if errors.As(err, &pe) {
		letter.Status, letter.ErrorCode, letter.ErrorMessage, letter.Excerpt = pe.Status, pe.Code, pe.Message, pe.Excerpt
	}
	switch ClassOf(err) {
	case ClassCredentials:
		if w.gates[ev.Target].PauseUntil(now.Add(w.cfg.CredentialsPause), "credentials rejected") {
			w.m.paused.WithLabelValues(target).Set(1)
			log.Error("PROVIDER REJECTED OUR CREDENTIALS: deliveries to this target are paused; fix the API key or plan",
				"status", letter.Status, "code", letter.ErrorCode, "message", letter.ErrorMessage, "retry_in", w.cfg.CredentialsPause)
		}
		return w.nak(j, deferred, w.cfg.CredentialsPause, target, "credentials")
	case ClassPermanent:
		log.Warn("provider rejected the event; dead-lettering", "status", letter.Status, "err", err)
		letter.Reason = dlq.ReasonRejected
		return w.deadLetter(ctx, j, target, letter)
	}
	age := now.Sub(j.md.Timestamp)
	if attempt >= w.cfg.MaxAttempts || age >= w.cfg.MaxRetryAge {
		log.Warn("retries exhausted; dead-lettering", "status", letter.Status, "err", err, "age", age)
		letter.Reason = dlq.ReasonExhausted
		letter.Detail = fmt.Sprintf("gave up after %d attempts over %s: %v", attempt, age.Round(time.Millisecond), err)
		return w.deadLetter(ctx, j, target, letter)
	}
	delay := w.backoff(attempt)
	log.Info("transient failure; retrying", "status", letter.Status, "err", err, "delay", delay)
	w.m.retryDelay.WithLabelValues(target, ClassTransient.String()).Observe(delay.Seconds())
	return w.nak(j, retried, delay, target, "retry")
}

// handleGroup applies a backlog of one contact's events, in stream order,
// as one merged PATCH. If the merged request fails for any reason but a
// pause, the events are delivered one by one instead, so that a bad event
// is found and dead-lettered alone and attempts are counted per event.
func (w *Worker) handleGroup(ctx context.Context, j job) result {
	all := append([]job{j.head()}, j.rest...)
	evs := make([]events.Event, len(all))
	patches := make([]json.RawMessage, len(all))
	for i, m := range all {
		ev, err := w.decode(m)
		if err != nil {
			return w.sequential(ctx, all)
		}
		evs[i], patches[i] = ev, ev.Patch
	}
	merged := evs[len(evs)-1]
	patch, err := events.Merge(merged.Target, patches...)
	if err != nil {
		return w.sequential(ctx, all)
	}
	merged.Patch = patch
	target := string(merged.Target)
	log := w.log.With("event_id", merged.ID, "provider", target, "coalesced", len(all), "seq", j.seq)

	stops := make([]func(), len(all))
	for i, m := range all {
		stops[i] = w.heartbeat(m.msg)
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()

	_, pause, err := w.call(ctx, &merged, log)
	switch {
	case ctx.Err() != nil:
		for _, m := range all {
			w.abandon(m, target)
		}
		return result{job: j.head(), out: abandoned}
	case pause > 0:
		r := result{job: j.head(), out: deferred, delay: pause}
		for _, m := range all {
			r.deferredSeqs = append(r.deferredSeqs, w.nak(m, deferred, pause, target, "paused").deferredSeqs...)
		}
		return r
	case err == nil:
		for _, m := range all {
			if err := m.msg.Ack(); err != nil {
				log.Warn("ack failed; the event will be redelivered and re-applied", "err", err)
			}
			w.m.deliveries.WithLabelValues(target, "applied").Inc()
		}
		w.m.coalesced.WithLabelValues(target).Add(float64(len(all) - 1))
		r := result{job: j.head(), out: resolved}
		for _, m := range all {
			r.settledSeqs = append(r.settledSeqs, m.seq)
		}
		return r
	}
	log.Info("coalesced delivery failed; delivering one by one", "err", err)
	return w.sequential(ctx, all)
}

// sequential delivers jobs one by one in order. At the first that is not
// settled, the rest are deferred behind it, and its result is returned.
func (w *Worker) sequential(ctx context.Context, all []job) result {
	var settled []uint64
	for i, m := range all {
		r := w.handleOne(ctx, m)
		settled = append(settled, r.settledSeqs...)
		if r.out == resolved {
			continue
		}
		for _, later := range all[i+1:] {
			if r.out == abandoned {
				_ = later.msg.Nak()
				continue
			}
			r.deferredSeqs = append(r.deferredSeqs, w.nak(later, deferred, r.delay+fenceSlack, targetOf(w.scfg.SubjectPrefix, later.key), "ordering").deferredSeqs...)
		}
		r.settledSeqs = settled
		return r
	}
	return result{job: all[0], out: resolved, settledSeqs: settled}
}

// backoff is the delay after the given failed attempt: exponential with
// jitter, from the delivery count, so the schedule survives restarts.
func (w *Worker) backoff(attempt int) time.Duration {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(w.cfg.BackoffInitial),
		backoff.WithMaxInterval(w.cfg.BackoffMax),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.3),
		backoff.WithMaxElapsedTime(0),
	)
	d := b.NextBackOff()
	for i := 1; i < attempt && i < 64; i++ {
		d = b.NextBackOff()
	}
	return d
}

func (w *Worker) nak(j job, out outcome, delay time.Duration, target, why string) result {
	if err := j.msg.NakWithDelay(delay); err != nil {
		w.log.Warn("nak failed; the event will be redelivered after the ack wait", "err", err, "seq", j.seq)
	}
	if out == deferred {
		w.m.retryDelay.WithLabelValues(target, why).Observe(delay.Seconds())
		w.m.deliveries.WithLabelValues(target, "deferred").Inc()
	} else {
		w.m.deliveries.WithLabelValues(target, "retry").Inc()
	}
	r := result{job: j, out: out, delay: delay}
	if out == deferred {
		r.deferredSeqs = []uint64{j.seq}
	}
	return r
}

func (w *Worker) abandon(j job, target string) result {
	_ = j.msg.Nak()
	w.m.deliveries.WithLabelValues(target, "abandoned").Inc()
	return result{job: j, out: abandoned}
}

// deadLetter publishes l with the original message, waits for the DLQ's
// acknowledgement, and only then terminates the original. If the DLQ cannot
// be written the original is handed back for a later try: never dropped.
func (w *Worker) deadLetter(ctx context.Context, j job, target string, l dlq.Letter) result {
	l.Data = j.msg.Data()
	l.Stream, l.StreamSeq, l.Subject = j.md.Stream, j.seq, j.msg.Subject()
	if l.EventID == "" {
		l.EventID = j.msg.Headers().Get(jetstream.MsgIDHeader)
	}
	if target == "" { // invalid event: the subject still names the target
		target = targetOf(w.scfg.SubjectPrefix, j.msg.Subject())
		if target != "unknown" {
			l.Target = target
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.dlq.Publish(pctx, l); err != nil {
		w.log.Error("dead-letter publish failed; keeping the event for a later try", "err", err, "seq", j.seq)
		return w.nak(j, deferred, 5*time.Second, target, "dlq_unavailable")
	}
	if err := j.msg.Term(); err != nil {
		w.log.Warn("term after dead-lettering failed; a redelivery will be dead-lettered again (deduplicated)", "err", err, "seq", j.seq)
	}
	w.m.deadLetters.WithLabelValues(target, string(l.Reason)).Inc()
	w.m.deliveries.WithLabelValues(target, "dead_lettered").Inc()
	return result{job: j, out: resolved, settledSeqs: []uint64{j.seq}}
}

// heartbeat tells JetStream the message is still being worked on every third
// of the ack wait, so a slow call or a held wait is not redelivered to
// another worker in parallel. The returned func stops it.
func (w *Worker) heartbeat(msg jetstream.Msg) (stop func()) {
	every := w.cfg.AckWait / 3
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		_ = msg.InProgress()
		t.Reset(every)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}
