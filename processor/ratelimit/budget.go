package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures one Budget.
type Config struct {
	// Name is the target the budget belongs to ("skipcall", "revyops"); it
	// labels logs, metrics and State. Required.
	Name string
	// Key is the provider API key. Only a hash of Name and Key appears in
	// NATS, so replicas with the same key share a budget and nothing in the
	// bucket or the stream reveals the key. Required.
	Key string
	// Limit is the plan's requests per Window (Skipcall: 100 or 1000 per
	// minute). It holds until the provider's first X-RateLimit-Limit.
	// Required, positive; Unlimited for a provider without a plan limit,
	// whose slots are then not counted (no round trip per request) until a
	// response names a limit.
	Limit int
	// Window is the provider's window length. Default 1 minute.
	Window time.Duration
	// ResetMargin is how long after the provider's reset a new window (or
	// the end of a pause) begins, and how long before a window's planned
	// end its slots stop being granted: the provider's reset is a whole
	// second, its clock is not ours, and a request takes time to arrive.
	// Must be below Window/2. Default 1 second.
	ResetMargin time.Duration
	// ProbeInitial and ProbeMax bound the backoff between credential probes
	// (exponential, jittered): after n consecutive credential failures the
	// next probe is sent about ProbeInitial·2^(n-1) later, at most ProbeMax.
	// Defaults 5 seconds and 5 minutes.
	ProbeInitial, ProbeMax time.Duration
	// Replicas of the bucket and the counter stream. Default 1.
	Replicas int
	// Bucket, CounterStream and CounterSubject name the NATS parts; the
	// defaults are DefaultBucket, DefaultCounterStream and
	// DefaultCounterSubject.
	Bucket, CounterStream, CounterSubject string
	// Registerer, if not nil, receives the budget's gauges and counters
	// (labelled target=Name).
	Registerer prometheus.Registerer
}

// LogValue redacts the API key, so a Config can be logged.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", c.Name), slog.String("key", "[redacted]"), slog.Int("limit", c.Limit),
		slog.Duration("window", c.Window), slog.Duration("reset_margin", c.ResetMargin),
	)
}

func (c *Config) setDefaults() {
	if c.Window == 0 {
		c.Window = time.Minute
	}
	if c.ResetMargin == 0 {
		c.ResetMargin = time.Second
	}
	if c.ProbeInitial == 0 {
		c.ProbeInitial = 5 * time.Second
	}
	if c.ProbeMax == 0 {
		c.ProbeMax = 5 * time.Minute
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.CounterStream == "" {
		c.CounterStream = DefaultCounterStream
	}
	if c.CounterSubject == "" {
		c.CounterSubject = DefaultCounterSubject
	}
}

// Validate reports a missing or out-of-range setting, wrapping ErrConfig.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("%w: Name is required", ErrConfig)
	case c.Key == "":
		return fmt.Errorf("%w: Key is required", ErrConfig)
	case c.Limit <= 0:
		return fmt.Errorf("%w: Limit must be positive, got %d", ErrConfig, c.Limit)
	case c.Window < time.Millisecond:
		return fmt.Errorf("%w: Window must be at least 1ms, got %s", ErrConfig, c.Window)
	case c.ResetMargin < 0 || 2*c.ResetMargin >= c.Window:
		return fmt.Errorf("%w: ResetMargin must be in [0, Window/2), got %s", ErrConfig, c.ResetMargin)
	case c.ProbeInitial <= 0 || c.ProbeMax < c.ProbeInitial:
		return fmt.Errorf("%w: need 0 < ProbeInitial <= ProbeMax", ErrConfig)
	case c.Replicas < 1:
		return fmt.Errorf("%w: Replicas must be at least 1", ErrConfig)
	}
	return nil
}

// Unlimited as Config.Limit means no limit of ours: a slot costs no round
// trip until the provider's X-RateLimit-Limit sets one. Pauses (429,
// credentials) still hold for every replica.
const Unlimited = math.MaxInt32

// Budget is one provider API key's request budget, shared by every worker
// replica through NATS. Use New; a Budget is safe for concurrent use.
type Budget struct {
	cfg   Config
	id    string
	st    *store
	log   *slog.Logger
	m     *metrics
	now   func() time.Time
	stop  context.CancelFunc
	done  chan struct{}
	watch jetstream.KeyWatcher

	openMu sync.Mutex // serialises starting a window in this replica

	mu      sync.Mutex
	state   shared
	changed chan struct{} // closed and replaced on every change of state
	full    window        // a window this replica saw used up (ID 0: none)
	seen    window        // the window of seenCount
	seenN   int64         // highest counter value seen for seen.ID
	// skewWarned is the window whose clock skew was last logged.
	skewWarned int64
}

// New creates or updates the NATS bucket and counter stream, loads the
// budget's shared state and starts watching it; call Close when done. It
// returns an error wrapping ErrConfig for a bad cfg, or the NATS error if
// the bucket, the stream or the initial state cannot be read before ctx
// ends.
func New(ctx context.Context, js jetstream.JetStream, cfg Config, logger *slog.Logger) (*Budget, error) {
	return newBudget(ctx, js, cfg, logger, time.Now)
}

// newBudget is New with the replica's clock (tests give replicas skewed
// clocks).
func newBudget(ctx context.Context, js jetstream.JetStream, cfg Config, logger *slog.Logger, now func() time.Time) (*Budget, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	id := budgetID(cfg.Name, cfg.Key)
	st, err := openStore(ctx, js, cfg, id)
	if err != nil {
		return nil, err
	}
	b := &Budget{
		cfg:     cfg,
		id:      id,
		st:      st,
		log:     logger.With("provider", cfg.Name, "budget", id[:8]),
		now:     now,
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	if err := b.recordTarget(ctx); err != nil {
		return nil, err
	}
	if err := b.startWatch(ctx); err != nil {
		return nil, err
	}
	if b.m, err = newMetrics(cfg.Registerer, b); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// Close stops watching the shared state and unregisters the metrics. The
// Budget must not be used afterwards.
func (b *Budget) Close() {
	b.stop()
	<-b.done
	b.m.unregister()
}

// Grant is one request slot. Send the request at once, and call Valid
// immediately before sending if anything ran in between: a slot taken
// before a pause began must not be used after it.
type Grant struct {
	b        *Budget
	pauseRev uint64 // revision of the pause record when the slot was granted
	probe    bool
}

// Probe reports whether this grant is the one credential probe: its outcome
// decides, for every replica, whether a credentials pause ends
// (CredentialsOK) or backs off further (CredentialsFailed).
func (g Grant) Probe() bool { return g.probe }

// Valid returns nil if the request may still be sent, or a *WaitError
// (errors.Is ErrPaused) if a pause began after the slot was granted. It
// reads local state only (kept current by a KV watch) and costs no round
// trip. The zero Grant is never valid.
func (g Grant) Valid() error {
	if g.b == nil {
		return fmt.Errorf("%w: zero Grant", ErrConfig)
	}
	b := g.b
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.state.pause
	if p.active(now) && b.state.pauseRev > g.pauseRev {
		return p.wait(now)
	}
	return nil
}

// TryTake takes one request slot from the shared window without waiting.
// It returns a Grant, or a *WaitError (errors.Is ErrPaused or ErrExhausted)
// whose Until says when to try again; nothing was taken then. When a
// credentials pause is due for its probe, exactly one caller across all
// replicas gets a Grant with Probe() true; the others get a *WaitError. A
// slot costs one JetStream counter increment (one round trip); a refusal
// known locally (pause, window seen used up) costs none. Other errors are
// NATS failures: send nothing then.
func (b *Budget) TryTake(ctx context.Context) (Grant, error) {
	now := b.now()
	s, closed := b.snapshot(now)
	if s.pause.active(now) {
		b.m.take("paused")
		return Grant{}, s.pause.wait(now)
	}
	if closed {
		b.m.take("exhausted")
		return Grant{}, exhausted(s.window)
	}
	var probe bool
	if s.pause.Kind == kindCredentials {
		until, won, err := b.claimProbe(ctx, now, s)
		if err != nil {
			return Grant{}, err
		}
		if !won {
			b.m.take("paused")
			return Grant{}, &WaitError{Until: until, Reason: s.pause.Reason, Paused: true}
		}
		probe = true
	}
	cur, err := b.open(ctx, now)
	if err != nil {
		var we *WaitError
		if errors.As(err, &we) {
			if we.clockSkew {
				b.m.take("clock_skew")
			} else {
				b.m.take("exhausted")
			}
		}
		return Grant{}, err
	}
	if cur.Limit >= Unlimited && !probe {
		// Nothing to count against: no plan limit, and no response has
		// named one in this window. A pause taken meanwhile still wins at
		// the wire (Grant.Valid).
		b.m.take("granted")
		return Grant{b: b, pauseRev: s.pauseRev}, nil
	}
	n, err := b.st.incr(ctx, cur.ID, 1)
	if err != nil {
		return Grant{}, err
	}
	now = b.now()
	b.mu.Lock()
	b.noteCountLocked(cur, n)
	if w := b.state.window; w.ID == cur.ID {
		cur = w // its End or Limit may have moved meanwhile
	}
	s = b.state
	b.mu.Unlock()
	if n > int64(cur.Limit) || now.UnixMilli() >= cur.Close {
		b.m.take("exhausted")
		return Grant{}, exhausted(cur)
	}
	// The pause is checked again after the slot was counted: a pause that
	// began while the increment was in flight wins (the slot is wasted, the
	// safe side). A probe's own claim is the pause it may pass.
	if s.pause.active(now) && !probe {
		b.m.take("paused")
		return Grant{}, s.pause.wait(now)
	}
	if probe {
		b.m.take("probe")
	} else {
		b.m.take("granted")
	}
	return Grant{b: b, pauseRev: s.pauseRev, probe: probe}, nil
}

// Take blocks until a slot is granted (see TryTake) or ctx ends, and
// returns ctx's error then. NATS errors are returned at once.
func (b *Budget) Take(ctx context.Context) (Grant, error) {
	for {
		b.mu.Lock()
		changed := b.changed
		b.mu.Unlock()
		g, err := b.TryTake(ctx)
		var we *WaitError
		if !errors.As(err, &we) {
			return g, err
		}
		if err := b.waitUntil(ctx, we.Until, changed); err != nil {
			return Grant{}, err
		}
	}
}

// Changed returns a channel closed at the next change of the shared state
// (a pause set or cleared, a window started or aligned), for a fetch loop
// that waits until Blocked's time or an earlier resume.
func (b *Budget) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// waitUntil blocks until t, a change of the shared state, or the end of ctx.
func (b *Budget) waitUntil(ctx context.Context, t time.Time, changed <-chan struct{}) error {
	d := t.Sub(b.now())
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
	case <-changed:
	}
	return nil
}

// Blocked reports, from local state only (no round trip), whether nothing
// may be sent before until, and why: a pause, or a window this replica
// has seen used up. A zero until means a request may be tried now. The
// worker asks this before fetching more of the target's events. When a
// credentials pause is due for its probe, Blocked reports false so that
// one event is fetched to probe with.
func (b *Budget) Blocked() (until time.Time, reason string) {
	now := b.now()
	s, closed := b.snapshot(now)
	switch {
	case s.pause.active(now):
		return s.pause.end(now), s.pause.Reason
	case closed:
		return time.UnixMilli(s.window.End), reasonExhausted
	}
	return time.Time{}, ""
}

// snapshot returns the shared state and whether its window runs at now but
// grants nothing more: past its Close, or seen used up by this replica.
func (b *Budget) snapshot(now time.Time) (shared, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.state.window
	closed := w.runs(now) && (now.UnixMilli() >= w.Close || b.full.ID == w.ID && b.full.Limit >= w.Limit)
	return b.state, closed
}

// noteCountLocked records a counter value seen for cur.
func (b *Budget) noteCountLocked(cur window, n int64) {
	if b.seen.ID != cur.ID {
		b.seen, b.seenN = cur, 0
	}
	b.seenN = max(b.seenN, n)
	if n >= int64(cur.Limit) {
		b.full = cur
	}
}

const reasonExhausted = "rate limit window used up"

func exhausted(w window) *WaitError {
	return &WaitError{Until: time.UnixMilli(w.End), Reason: reasonExhausted}
}
