package proc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ProgressConfig configures WatchProgress.
type ProgressConfig struct {
	// Stream is the stream whose consumers are watched. Required.
	Stream string
	// Consumers names the consumers to watch; empty means every consumer of
	// Stream, listed again on each poll (so consumers created later, such as
	// one per target, are watched too).
	Consumers []string
	// Limit is the longest span without ack-floor progress, while messages
	// are pending, that is not a stall. Required.
	Limit time.Duration
	// Interval is how often consumer info is read; default 100ms.
	Interval time.Duration
}

// Stall is one span, while the watch was armed, in which a consumer had
// messages pending and its ack floor did not move.
type Stall struct {
	Consumer string
	// From is when the span began: the last ack-floor move, the moment the
	// watch was armed, or the moment messages became pending, whichever was
	// latest.
	From time.Time
	// Length is how long the ack floor stayed put (up to the last poll, if
	// the span is still open).
	Length time.Duration
	// Limit is the limit the watch was armed with.
	Limit time.Duration
	// AckFloor is the stream sequence the floor stayed at.
	AckFloor uint64
	// What the consumer looked like at the last poll of the span: messages
	// not yet delivered, delivered but unacknowledged, and pull requests
	// waiting at the server.
	NumPending    uint64
	NumAckPending int
	NumWaiting    int
}

// String describes s in one line.
func (s Stall) String() string {
	return fmt.Sprintf("consumer %s: ack floor stayed at %d for %s from %s, limit %s (then %d undelivered, %d ack-pending, %d pull requests waiting)",
		s.Consumer, s.AckFloor, s.Length.Round(time.Millisecond), s.From.Format("15:04:05.000"), s.Limit, s.NumPending, s.NumAckPending, s.NumWaiting)
}

// Progress watches the ack floors of a stream's consumers and records every
// span in which a consumer had messages pending (undelivered or
// unacknowledged) and its ack floor did not move. Spans count only while
// the watch is armed: a caller arms it over the windows in which a consumer
// is expected to make progress (a worker runs, NATS serves, the provider
// answers) and disarms it around deliberate faults. A poll that fails (NATS
// down, no leader) observes nothing; the span it falls into keeps growing.
//
// Use WatchProgress; a Progress is safe for concurrent use.
type Progress struct {
	js     jetstream.JetStream
	cfg    ProgressConfig
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	armed      bool
	armedAt    time.Time
	limit      time.Duration // of the current arming
	gen        int           // counts armings and disarmings
	consumers  map[string]*floor
	longest    Stall
	violations []*Stall // spans over the limit; an open one keeps growing
	polls      int
	pollErr    error
}

// floor is what is known of one consumer since the watch was last armed.
type floor struct {
	seq   uint64    // the ack floor at the last poll
	since time.Time // start of the current span without progress
	open  *Stall    // the current span, once it has messages pending
}

// WatchProgress starts polling the consumers named in cfg through js until
// Stop is called or ctx ends. It starts disarmed. It returns an error if cfg
// lacks a stream or a positive limit.
func WatchProgress(ctx context.Context, js jetstream.JetStream, cfg ProgressConfig) (*Progress, error) {
	if cfg.Stream == "" || cfg.Limit <= 0 {
		return nil, errors.New("proc: progress watch needs a stream and a positive limit")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &Progress{js: js, cfg: cfg, cancel: cancel, done: make(chan struct{}), consumers: map[string]*floor{}}
	go p.run(ctx)
	return p, nil
}

// Arm starts counting spans without progress, each from now at the
// earliest, against the configured limit.
func (p *Progress) Arm() { p.ArmFor(p.cfg.Limit) }

// ArmFor is Arm with another limit until the next arming, for a window
// with a longer documented bound (after a worker died holding leases, for
// example).
func (p *Progress) ArmFor(limit time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed, p.armedAt, p.limit = true, time.Now(), limit
	p.gen++
	p.consumers = map[string]*floor{}
}

// Disarm stops counting; the open spans end here.
func (p *Progress) Disarm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = false
	p.gen++
	p.consumers = map[string]*floor{}
}

// Stop ends the watch and waits for its poller to return.
func (p *Progress) Stop() {
	p.cancel()
	<-p.done
}

// Longest returns the longest span without progress seen while armed (zero
// if there was none).
func (p *Progress) Longest() Stall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.longest
}

// Violations returns the spans longer than the limit, each with the length
// it had reached at the last poll.
func (p *Progress) Violations() []Stall {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Stall, len(p.violations))
	for i, v := range p.violations {
		out[i] = *v
	}
	return out
}

// Polls returns how many polls succeeded while armed and the last poll
// error, so a caller can tell a quiet watch from a blind one.
func (p *Progress) Polls() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.polls, p.pollErr
}

// Err summarises the violations as an error naming the longest span, or
// returns nil if there were none.
func (p *Progress) Err() error {
	v := p.Violations()
	if len(v) == 0 {
		return nil
	}
	sort.Slice(v, func(i, j int) bool { return v[i].Length > v[j].Length })
	lines := make([]string, len(v))
	for i, s := range v {
		lines[i] = s.String()
	}
	return fmt.Errorf("proc: %d span(s) without progress longer than their limit:\n%s", len(v), strings.Join(lines, "\n"))
}

func (p *Progress) run(ctx context.Context) {
	defer close(p.done)
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		armed, gen := p.armed, p.gen
		p.mu.Unlock()
		if !armed {
			continue
		}
		infos, err := p.read(ctx)
		p.mu.Lock()
		current := gen == p.gen // not re-armed or disarmed during the read
		p.mu.Unlock()
		if current {
			p.observe(time.Now(), infos, err)
		}
	}
}

// read returns the current info of the watched consumers. A consumer that
// does not exist yet is left out.
func (p *Progress) read(ctx context.Context) ([]*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, max(p.cfg.Limit, time.Second))
	defer cancel()
	s, err := p.js.Stream(ctx, p.cfg.Stream)
	if err != nil {
		return nil, err
	}
	var infos []*jetstream.ConsumerInfo
	if len(p.cfg.Consumers) == 0 {
		l := s.ListConsumers(ctx)
		for ci := range l.Info() {
			infos = append(infos, ci)
		}
		return infos, l.Err()
	}
	for _, name := range p.cfg.Consumers {
		c, err := s.Consumer(ctx, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		infos = append(infos, c.CachedInfo())
	}
	return infos, nil
}

// observe folds one poll, taken at now, into the spans.
func (p *Progress) observe(now time.Time, infos []*jetstream.ConsumerInfo, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.armed {
		return
	}
	if err != nil {
		p.pollErr = err
		return
	}
	p.polls++
	for _, ci := range infos {
		pending := ci.NumPending > 0 || ci.NumAckPending > 0
		f := p.consumers[ci.Name]
		switch {
		case f == nil:
			// First sight since arming: the span runs from the arming, so
			// a consumer that never moves after it is caught too.
			f = &floor{seq: ci.AckFloor.Stream, since: p.armedAt}
			p.consumers[ci.Name] = f
		case ci.AckFloor.Stream != f.seq:
			// Progress: a new span starts.
			f.seq, f.since, f.open = ci.AckFloor.Stream, now, nil
		}
		if !pending {
			// Nothing to deliver: no span is open.
			f.since, f.open = now, nil
			continue
		}
		if f.open == nil {
			f.open = &Stall{Consumer: ci.Name, From: f.since, AckFloor: f.seq, Limit: p.limit}
		}
		f.open.Length = now.Sub(f.since)
		f.open.NumPending, f.open.NumAckPending, f.open.NumWaiting = ci.NumPending, ci.NumAckPending, ci.NumWaiting
		if f.open.Length > p.longest.Length {
			p.longest = *f.open
		}
		if f.open.Length > p.limit && !slices.Contains(p.violations, f.open) {
			p.violations = append(p.violations, f.open)
		}
	}
}
