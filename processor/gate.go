package processor

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Gate paces requests to one provider: a client-side token bucket at the
// plan's rate, and a pause that the provider imposes (429, a used-up window,
// or bad credentials). It is safe for concurrent use.
type Gate struct {
	limiter *rate.Limiter // nil: no client-side limit

	mu     sync.Mutex
	until  time.Time
	reason string
}

// NewGate returns a Gate allowing perMinute requests per minute (0: no
// client-side limit).
func NewGate(perMinute int) *Gate {
	g := &Gate{}
	if perMinute > 0 {
		g.limiter = rate.NewLimiter(rate.Limit(float64(perMinute)/60), 1)
	}
	return g
}

// PauseUntil stops requests until t (a later pause wins) and reports whether
// this call started a new pause (so the caller logs it once).
func (g *Gate) PauseUntil(t time.Time, reason string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	started := !g.until.After(time.Now())
	if t.After(g.until) {
		g.until, g.reason = t, reason
	}
	return started
}

// Paused returns how long the gate stays paused after now, and why.
func (g *Gate) Paused(now time.Time) (time.Duration, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if d := g.until.Sub(now); d > 0 {
		return d, g.reason
	}
	return 0, ""
}

// Reserve takes a request slot and returns how long the caller must wait
// before using it: the pause still to run plus the token bucket's delay.
// The slot is the caller's once returned; cancel it with Cancel if unused.
func (g *Gate) Reserve(now time.Time) (time.Duration, *rate.Reservation) {
	pause, _ := g.Paused(now)
	if g.limiter == nil {
		return pause, nil
	}
	r := g.limiter.ReserveN(now.Add(pause), 1)
	if !r.OK() {
		return time.Duration(math.MaxInt64), nil
	}
	return pause + r.DelayFrom(now.Add(pause)), r
}

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
