package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/history"
	"github.com/patchbay/patchbay/processor/lease"
	"github.com/patchbay/patchbay/processor/lww"
	"github.com/patchbay/patchbay/processor/ratelimit"
	"github.com/patchbay/patchbay/stream"
)

// Config configures the worker (environment prefix PATCHBAY_WORKER_).
type Config struct {
	Concurrency       int           `envconfig:"CONCURRENCY" default:"256" desc:"deliveries in flight at once per target (events of one contact are never in flight twice)"`
	AckWait           time.Duration `envconfig:"ACK_WAIT" default:"30s" desc:"JetStream ack wait; a delivery not acknowledged in this time is redelivered (held and long calls send InProgress)"`
	MaxAttempts       int           `envconfig:"MAX_ATTEMPTS" default:"12" desc:"provider calls before a transiently failing event is dead-lettered (counted in NATS, across replicas and restarts)"`
	MaxRetryAge       time.Duration `envconfig:"MAX_RETRY_AGE" default:"24h" desc:"age after which a transiently failing event is dead-lettered"`
	BackoffInitial    time.Duration `envconfig:"BACKOFF_INITIAL" default:"1s" desc:"first retry delay"`
	BackoffMax        time.Duration `envconfig:"BACKOFF_MAX" default:"10m" desc:"longest retry delay"`
	CredentialsPause  time.Duration `envconfig:"CREDENTIALS_PAUSE" default:"1m" desc:"pause of a target, for every replica, after a bad-key or plan answer; then one replica probes with one request, the pause doubling up to 16x while probes fail"`
	HoldLimit         time.Duration `envconfig:"HOLD_LIMIT" default:"5s" desc:"longest wait for the rate limit that a delivery spends in a worker goroutine; longer ones put the contact's events back in the worker's queue"`
	DrainTimeout      time.Duration `envconfig:"DRAIN_TIMEOUT" default:"20s" desc:"on shutdown, how long in-flight deliveries may finish before they are abandoned for redelivery"`
	Coalesce          int           `envconfig:"COALESCE" default:"1000" desc:"most queued events of one contact merged into one PATCH (1: never merge); a merged PATCH carries one value per field however many events it merges, so the limit only bounds one delivery's decoding and merging"`
	ReadAhead         int           `envconfig:"READ_AHEAD" default:"10240" desc:"most events of one target a worker holds (being delivered, waiting for their contact, or read ahead while the target is paused or its rate window used up, to be merged per contact); about 2.3 KiB of memory each for a 1 KiB event"`
	LeaseTTL          time.Duration `envconfig:"LEASE_TTL" default:"30s" desc:"lease across worker replicas, per contact or, for a lone worker, per target: the longest a dead or stopped worker blocks what it held; a PATCH must finish within four fifths of it (whole seconds)"`
	AlwaysLease       bool          `envconfig:"ALWAYS_LEASE" default:"false" desc:"take a per-contact lease for every delivery, even when the worker is alone on its target; by default a lone worker holds one solo lease for the target instead (two KV writes fewer per delivery), and if it crashes its replacement waits up to LEASE_TTL for the whole target, not only for the contacts it had in flight"`
	StateTTL          time.Duration `envconfig:"STATE_TTL" default:"768h" desc:"how long the per-field clocks of a contact are kept after its last change (keep it longer than EVENTS_MAX_AGE and DLQ_MAX_AGE: an older event that arrives after its field's clock is forgotten wins again)"`
	HistoryMaxAge     time.Duration `envconfig:"HISTORY_MAX_AGE" default:"168h" desc:"how long a contact's delivery history (patchbay contacts history: event ids, clocks, outcomes, no values) is kept; 0: no history"`
	HistoryPerContact int           `envconfig:"HISTORY_PER_CONTACT" default:"50" desc:"most delivery records kept per contact in the history, the newest"`
}

// Defaults of the fields a zero Config value leaves to the worker.
const (
	DefaultLeaseTTL = 30 * time.Second
	DefaultStateTTL = 768 * time.Hour
)

func (c *Config) setDefaults() {
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.StateTTL == 0 {
		c.StateTTL = DefaultStateTTL
	}
}

// Validate reports the first problem with c; a zero LeaseTTL or StateTTL
// stands for its default.
func (c Config) Validate() error {
	c.setDefaults()
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
	case c.Coalesce < 0:
		return fmt.Errorf("processor: coalesce %d must not be negative", c.Coalesce)
	case c.ReadAhead < 0 || c.ReadAhead > maxReadAhead:
		return fmt.Errorf("processor: read-ahead %d out of range 0..%d", c.ReadAhead, maxReadAhead)
	case c.LeaseTTL < 2*time.Second || c.LeaseTTL%time.Second != 0:
		return fmt.Errorf("processor: lease TTL %s must be whole seconds, at least 2s", c.LeaseTTL)
	case c.StateTTL < 0:
		return fmt.Errorf("processor: state TTL must not be negative")
	case c.HistoryMaxAge < 0 || c.HistoryPerContact < 0:
		return fmt.Errorf("processor: history max age and per-contact cap must not be negative")
	}
	return nil
}

// Room is how many messages of one target a worker holds at most: running,
// queued behind their contact's running job, held during a pause, or read
// ahead while the target is paused or its window used up (ReadAhead). It
// is at least minRoom, so that pull requests stay large however few
// deliveries run at once (nats.go's Fetch subscribes an inbox per
// request), and more queued events of one contact merge into one PATCH.
// It is also each consumer's MaxAckPending.
func (c Config) Room() int { return max(c.baseRoom(), c.ReadAhead) }

// baseRoom is the room a target's deliveries need: 4 × Concurrency, at
// least minRoom. The rest of Room is for reading ahead (see
// lane.readingAhead).
func (c Config) baseRoom() int { return max(4*c.Concurrency, minRoom) }

// minRoom is the least room of a target: 512 events of a few hundred bytes.
const minRoom = 512

// maxReadAhead bounds ReadAhead: a worker holding this many events of each
// target stays well under a gigabyte.
const maxReadAhead = 262144

// maxFetch is the largest pull request: half the room, at most 512.
func (c Config) maxFetch() int { return min(c.Room()/2, 512) }

// Target wires one provider into the worker.
type Target struct {
	Provider Provider
	// Budget is the provider key's request budget, shared by every replica
	// (see NewBudget). The provider's HTTP client should send through
	// Budget.Transport, so every response's rate-limit headers are observed
	// and a request whose slot a pause overtook is not written.
	Budget *ratelimit.Budget
	// SettleHorizon is how long after the start of a request whose outcome
	// is unknown (written, no answer read in full) the provider may still
	// apply it: until then no other request for the contact is sent, by any
	// replica; then the contact's newest values are sent again. At most
	// Config.MaxSettleHorizon; 0 means that. The provider configs default
	// it to twice their request timeout.
	SettleHorizon time.Duration
}

// MaxSettleHorizon is the longest settle horizon the lease covers: two
// thirds of LeaseTTL. A contact's lease is kept for a fresh TTL once an
// outcome is unknown, and a request starts only while its lease covers the
// horizon from its start; under the solo lease, the keys of a worker that
// dies expire no sooner than two thirds of the TTL after its last send
// (they are renewed every third).
func (c Config) MaxSettleHorizon() time.Duration {
	c.setDefaults()
	return c.LeaseTTL * 2 / 3
}

// BudgetConfig is the ratelimit configuration of one target's budget, kept
// beside the events stream of sc: perMinute requests per window (0: no
// limit of ours; the provider's 429s and rate-limit headers still pause
// every replica), key the provider API key (only a hash of it reaches
// NATS), window the provider's window (0: a minute). Credential probes
// start after CredentialsPause and back off to 16 times it.
func (c Config) BudgetConfig(sc stream.Config, target events.Target, key string, perMinute int, window time.Duration) ratelimit.Config {
	if perMinute <= 0 {
		perMinute = ratelimit.Unlimited
	}
	if window <= 0 {
		window = time.Minute
	}
	return ratelimit.Config{
		Name: string(target), Key: key, Limit: perMinute, Window: window, Replicas: sc.Replicas,
		ResetMargin:  min(time.Second, window/8),
		ProbeInitial: c.CredentialsPause, ProbeMax: 16 * c.CredentialsPause,
		Bucket: sc.KVBucket("RATE"), CounterStream: sc.EventsStream + "_RATE_COUNTERS", CounterSubject: sc.SubjectPrefix + ".rate",
	}
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
	// TracerProvider, if not nil, traces every delivery attempt as a
	// span in the trace its events were ingested in.
	TracerProvider trace.TracerProvider
}

// WithBudget returns hc, or a new client for timeout and conns when hc is
// nil, sending through b's Transport: every response's rate-limit headers
// reach the shared budget, and a request whose slot was overtaken by a pause
// is not written.
func WithBudget(hc *http.Client, b *ratelimit.Budget, timeout time.Duration, conns int) *http.Client {
	if hc == nil {
		hc = NewHTTPClient(timeout, conns)
	}
	c := *hc
	c.Transport = b.Transport(hc.Transport)
	return &c
}

// Worker consumes the events stream and delivers each event. Each target
// runs as its own lane (consumer, fetcher, queues and goroutines), so a
// paused or slow provider never holds up the other.
type Worker struct {
	cfg      Config
	js       jetstream.JetStream
	nc       *nats.Conn
	scfg     stream.Config
	lanes    []*lane
	disabled []events.Target // targets without a lane (see New)
	dlq      *dlq.Publisher
	attempts *attempts
	state    *lww.Store
	pub      *stream.Publisher // clock commits, set by Run
	history  *history.Recorder // nil: no history kept
	leases   *lease.Leases
	log      *slog.Logger
	m        *metrics
	now      func() time.Time
	tracer   trace.Tracer // nil: tracing off
	// partitions is the events stream's partition count, read from the
	// stream by setup (the stream's, not the configuration's).
	partitions atomic.Int32
}

// New returns a Worker; it validates cfg. A target missing from d.Targets
// is disabled: this worker runs no consumer for it, so its events stay
// queued in the stream (neither delivered nor dead-lettered) for a worker
// that has it, and patchbay_worker_target_enabled is 0 for it. An error is
// returned when no target is enabled, or one is given without a provider or
// a budget.
func New(cfg Config, d Deps) (*Worker, error) {
	cfg.setDefaults()
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
		cfg:  cfg,
		js:   d.JS,
		nc:   d.Conn,
		scfg: d.Stream,
		dlq:  dlq.NewPublisher(d.JS, d.Stream.SubjectPrefix),
		log:  d.Logger,
		m:    newMetrics(d.Registerer),
		now:  time.Now,
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if d.TracerProvider != nil {
		w.tracer = d.TracerProvider.Tracer("github.com/patchbay/patchbay/processor")
	}
	for _, t := range events.Targets() {
		tg, ok := d.Targets[t]
		if !ok {
			w.m.enabled.WithLabelValues(string(t)).Set(0)
			w.disabled = append(w.disabled, t)
			continue
		}
		if tg.Provider == nil || tg.Budget == nil {
			return nil, fmt.Errorf("processor: no provider or no budget for target %s", t)
		}
		if tg.SettleHorizon == 0 {
			tg.SettleHorizon = cfg.MaxSettleHorizon()
		}
		if tg.SettleHorizon < 0 || tg.SettleHorizon > cfg.MaxSettleHorizon() {
			return nil, fmt.Errorf("processor: settle horizon %s of target %s must be positive and at most two thirds of the lease TTL (%s)", tg.SettleHorizon, t, cfg.MaxSettleHorizon())
		}
		w.m.enabled.WithLabelValues(string(t)).Set(1)
		if w.tracer != nil {
			tg.Provider = tracedProvider{next: tg.Provider, tracer: w.tracer, target: string(t)}
		}
		w.lanes = append(w.lanes, newLane(w, t, tg))
	}
	if len(w.lanes) == 0 {
		return nil, errors.New("processor: no target enabled")
	}
	if d.Registerer != nil {
		if err := d.Registerer.Register(newLagCollector(w)); err != nil {
			return nil, fmt.Errorf("processor: lag metrics: %w", err)
		}
	}
	return w, nil
}

// Run consumes until ctx is cancelled, then stops taking messages, lets
// in-flight deliveries finish for up to DrainTimeout, hands everything else
// back to JetStream, and returns. It returns an error only if it cannot
// subscribe on its connection (to PubAcks or MAX_DELIVERIES advisories);
// declaring its consumers and buckets is retried until NATS answers.
func (w *Worker) Run(ctx context.Context) error {
	if w.nc != nil {
		pub, err := stream.NewPublisher(w.nc)
		if err != nil {
			return fmt.Errorf("processor: %w", err)
		}
		defer func() { _ = pub.Close() }()
		w.pub = pub
	}
	// NATS may be unreachable or electing leaders while the worker starts:
	// declaring the consumers and buckets is retried until it succeeds.
	for try := 0; ; try++ {
		err := w.setup(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil // stopped before it started: nothing was taken
		}
		w.log.Warn("could not declare the consumers and buckets; retrying", "err", err, "try", try+1)
		if Wait(ctx, min(time.Duration(try+1)*500*time.Millisecond, 5*time.Second)) != nil {
			return nil
		}
	}
	if w.nc != nil {
		sub, err := w.watchMaxDeliveries(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	var wg sync.WaitGroup
	for _, l := range w.lanes {
		wg.Go(func() { l.run(ctx) })
	}
	wg.Wait()
	return nil
}

// setup declares what the worker needs in NATS: per target, its durable
// consumer (without partitions), or its partition consumers and, while
// events stored before the stream was partitioned remain, its narrowed
// consumer (see declareTarget); and the buckets. A consumer over every
// target left by an earlier version is removed first: a work-queue stream
// refuses overlapping consumers, and its unacknowledged messages stay in
// the stream for the per-target consumers.
func (w *Worker) setup(ctx context.Context) error {
	if err := w.js.DeleteConsumer(ctx, w.scfg.EventsStream, w.scfg.Consumer); err == nil {
		w.log.Info("removed the consumer of an earlier version; its pending events are delivered by the per-target consumers", "consumer", w.scfg.Consumer)
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("processor: remove legacy consumer %s: %w", w.scfg.Consumer, err)
	}
	// The partition count is the stream's, whatever this replica's
	// configuration says: every replica consumes the same partitions.
	s, err := w.js.Stream(ctx, w.scfg.EventsStream)
	if err != nil {
		return fmt.Errorf("processor: %s: %w", w.scfg.EventsStream, err)
	}
	n := stream.PartitionsOf(s.CachedInfo().Config)
	w.partitions.Store(int32(n))
	for _, l := range w.lanes {
		if err := w.declareTarget(ctx, s, l, n); err != nil {
			return err
		}
	}
	a, err := newAttempts(ctx, w.js, w.scfg.KVBucket("ATTEMPTS"), w.scfg.Replicas, w.cfg.MaxRetryAge+time.Hour)
	if err != nil {
		return err
	}
	w.attempts = a
	if w.state, err = lww.NewStore(ctx, w.js, lww.StoreConfig{Bucket: w.scfg.KVBucket("STATE"), Replicas: w.scfg.Replicas, TTL: w.cfg.StateTTL, Publisher: w.pub}); err != nil {
		return fmt.Errorf("processor: %w", err)
	}
	if hc := w.historyConfig(); hc.Enabled() && w.nc != nil {
		if err := history.Ensure(ctx, w.js, w.scfg, hc); err != nil {
			return fmt.Errorf("processor: %w", err)
		}
		w.history = history.NewRecorder(w.nc, w.scfg.SubjectPrefix)
	}
	holder, _ := os.Hostname()
	holder = fmt.Sprintf("%s/%d", holder, os.Getpid())
	if w.leases, err = lease.New(ctx, w.js, lease.Config{Bucket: w.scfg.KVBucket("LEASES"), Replicas: w.scfg.Replicas, TTL: w.cfg.LeaseTTL, Holder: holder}); err != nil {
		return fmt.Errorf("processor: %w", err)
	}
	return nil
}

// declareTarget declares l's consumers on the events stream s with n
// partitions. Without partitions it is the target consumer over every
// event. With partitions it is one consumer per partition, and the target
// consumer, narrowed to the short form, only while the stream still holds
// short-form events of the target (a stream partitioned in place): on a
// stream created partitioned none is ever stored, and a drained one stays
// drained (stream.ShortFormLeft), so the consumer would only cost
// nats-server a consumer to check on every acknowledgement and a pull to
// serve. A drained target consumer that exists is narrowed first, as
// before, so the partition consumers never overlap it, and deleted once
// they exist: a worker of the previous version is then refused at the
// creation of its consumer, as it was at widening the narrowed one.
func (w *Worker) declareTarget(ctx context.Context, s jetstream.Stream, l *lane, n int) error {
	l.cons, l.parts = nil, l.parts[:0]
	left := n == 0
	if n > 0 {
		var err error
		if left, err = stream.ShortFormLeft(ctx, s, w.scfg, l.name); err != nil {
			return fmt.Errorf("processor: %w", err)
		}
	}
	cc := w.targetConsumerConfig(l.name)
	drained := false
	if left {
		cons, err := w.js.CreateOrUpdateConsumer(ctx, w.scfg.EventsStream, cc)
		if err != nil {
			return fmt.Errorf("processor: consumer %s: %w", cc.Durable, err)
		}
		l.cons = cons
	} else {
		_, err := w.js.UpdateConsumer(ctx, w.scfg.EventsStream, cc)
		switch {
		case err == nil:
			drained = true
		case !errors.Is(err, jetstream.ErrConsumerDoesNotExist) && !errors.Is(err, jetstream.ErrConsumerNotFound):
			return fmt.Errorf("processor: consumer %s: %w", cc.Durable, err)
		}
	}
	for p := range n {
		pc := w.partitionConsumerConfig(l.name, p)
		cons, err := w.js.CreateOrUpdateConsumer(ctx, w.scfg.EventsStream, pc)
		if err != nil {
			return fmt.Errorf("processor: consumer %s: %w", pc.Durable, err)
		}
		l.parts = append(l.parts, cons)
	}
	if drained {
		return w.removeDrained(ctx, l.name)
	}
	return nil
}

// removeDrained deletes target's narrowed consumer, which has no event
// left to deliver (stream.ShortFormLeft), if it is still there.
func (w *Worker) removeDrained(ctx context.Context, target string) error {
	name := w.scfg.TargetConsumer(target)
	err := w.js.DeleteConsumer(ctx, w.scfg.EventsStream, name)
	switch {
	case err == nil:
		w.log.Info("every event stored before the stream was partitioned is delivered; removed their consumer", "provider", target, "consumer", name)
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return fmt.Errorf("processor: remove drained consumer %s: %w", name, err)
	}
	return nil
}

// historyConfig is the contact history's configuration.
func (w *Worker) historyConfig() history.Config {
	return history.Config{MaxAge: w.cfg.HistoryMaxAge, PerContact: w.cfg.HistoryPerContact, Replicas: w.scfg.Replicas}
}

// targetConsumerConfig is the configuration the worker declares for
// target's consumer: over every event, or, once the stream is partitioned,
// over those stored before.
func (w *Worker) targetConsumerConfig(target string) jetstream.ConsumerConfig {
	c := w.scfg // w.scfg is never written after New: setup and scrapes read it at once
	c.Partitions = int(w.partitions.Load())
	return c.TargetConsumerConfig(target, w.cfg.AckWait, w.cfg.Room())
}

// TargetState is one target's delivery state, for readiness endpoints and
// operators.
type TargetState struct {
	ratelimit.State
	// Consumer is the target's durable consumer.
	Consumer string `json:"consumer"`
	// Disabled is true for a target this worker does not deliver to (see
	// New); its events wait in the stream.
	Disabled bool `json:"disabled,omitempty"`
}

// States returns every target's state as this replica sees it: paused or
// not, why and until when (rate limit, refused credentials and the next
// probe), from local memory only.
func (w *Worker) States() []TargetState {
	out := make([]TargetState, 0, len(w.lanes)+len(w.disabled))
	for _, l := range w.lanes {
		out = append(out, TargetState{State: l.budget.State(), Consumer: w.scfg.TargetConsumer(l.name)})
	}
	for _, t := range w.disabled {
		out = append(out, TargetState{State: ratelimit.State{Target: string(t)}, Consumer: w.scfg.TargetConsumer(string(t)), Disabled: true})
	}
	return out
}
