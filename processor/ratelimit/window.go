package ratelimit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// window is a shared rate-limit window. ID names its counter; End is when
// it ends for us (the provider's reset plus ResetMargin), in unix
// milliseconds. A window's End only ever moves later (see Observe), so its
// counter keeps every request granted in it.
type window struct {
	ID    int64 `json:"id"`
	End   int64 `json:"end"`
	Limit int   `json:"limit"`
}

// at returns the window in force at now given the last recorded window w:
// w itself while it runs; after it, the windows that follow it
// back to back (their IDs are their planned ends, the same on every
// replica); with no record yet, windows aligned to multiples of the
// configured Window since the Unix epoch, at the configured Limit.
func (w window) at(now time.Time, cfg Config) window {
	ms, length := now.UnixMilli(), cfg.Window.Milliseconds()
	if w.End == 0 {
		end := (ms/length + 1) * length
		return window{ID: end, End: end, Limit: cfg.Limit}
	}
	if ms < w.End {
		return w
	}
	end := w.End + ((ms-w.End)/length+1)*length
	return window{ID: end, End: end, Limit: w.Limit}
}

// Observation is what a provider response says about the rate limit.
type Observation struct {
	Limit     int       // X-RateLimit-Limit; 0: not sent
	Remaining int       // X-RateLimit-Remaining; -1: not sent
	Reset     time.Time // X-RateLimit-Reset; zero: not sent
}

// ParseHeaders reads X-RateLimit-Limit, X-RateLimit-Remaining and
// X-RateLimit-Reset (unix seconds) as Skipcall sends them. ok is false when
// none is present or readable.
func ParseHeaders(h http.Header) (o Observation, ok bool) {
	o.Remaining = -1
	if v, err := strconv.Atoi(h.Get("X-RateLimit-Limit")); err == nil && v > 0 {
		o.Limit, ok = v, true
	}
	if v, err := strconv.Atoi(h.Get("X-RateLimit-Remaining")); err == nil && v >= 0 {
		o.Remaining, ok = v, true
	}
	if v, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil && v > 0 {
		o.Reset, ok = time.Unix(v, 0), true
	}
	return o, ok
}

// Observe follows the provider's view of the window from one response; call
// it for every response that carries rate-limit headers. It
//
//   - adopts the provider's Limit;
//   - aligns the shared window to the provider's: if the provider's window
//     ends later than ours, ours is extended to Reset+ResetMargin, keeping
//     its count (requests we counted in ours may fall in the provider's);
//     a window is never shortened, and a Reset already past is ignored (a
//     late answer from the previous window);
//   - counts requests the provider saw and we did not (another client of
//     the same key): if Limit-Remaining is above the shared count, the
//     difference is added;
//   - pauses the target for every replica until Reset when Remaining is 0.
//
// A response in the same provider window as the last one costs no round
// trip unless it shows uncounted requests. Errors are NATS failures.
func (b *Budget) Observe(ctx context.Context, o Observation) error {
	if o.Reset.IsZero() {
		return nil
	}
	now := b.now()
	end := o.Reset.Add(b.cfg.ResetMargin).UnixMilli()
	if end <= now.UnixMilli() {
		return nil
	}
	cur, err := b.align(ctx, now, end, o.Limit)
	if err != nil {
		return err
	}
	if o.Limit > 0 && o.Remaining >= 0 {
		if err := b.countProvider(ctx, cur, int64(o.Limit-o.Remaining)); err != nil {
			return err
		}
	}
	if o.Remaining == 0 {
		return b.Pause(ctx, o.Reset, reasonExhausted)
	}
	return nil
}

// align extends the window at now to end (and sets its limit) in the
// shared record, by compare-and-set, and returns the window.
func (b *Budget) align(ctx context.Context, now time.Time, end int64, limit int) (window, error) {
	for try := 0; ; try++ {
		b.mu.Lock()
		cur, rev := b.state.window.at(now, b.cfg), b.state.windowRev
		b.mu.Unlock()
		next := cur
		next.End = max(cur.End, end)
		if limit > 0 {
			next.Limit = limit
		}
		if next == cur {
			return cur, nil
		}
		data, _ := json.Marshal(next)
		newRev, err := b.st.put(ctx, b.key(keyWindow), data, rev)
		switch {
		case err == nil:
			b.apply(keyWindow, newRev, data)
			if next.End != cur.End {
				b.log.Debug("rate-limit window aligned to the provider's reset", "window", next.ID, "end", time.UnixMilli(next.End), "limit", next.Limit)
			}
			return next, nil
		case !isConflict(err) || try >= maxCAS:
			return cur, fmt.Errorf("ratelimit: align window: %w", err)
		}
		if err := b.refresh(ctx, keyWindow); err != nil {
			return cur, err
		}
	}
}

// countProvider makes the counter of cur at least used (the provider's count).
func (b *Budget) countProvider(ctx context.Context, cur window, used int64) error {
	b.mu.Lock()
	seen := int64(0)
	if b.seen.ID == cur.ID {
		seen = b.seenN
	}
	b.mu.Unlock()
	if used <= seen {
		return nil
	}
	n, err := b.st.count(ctx, cur.ID)
	if err == nil && used > n {
		b.log.Debug("provider counted requests we did not; counting them", "window", cur.ID, "provider_used", used, "counted", n)
		n, err = b.st.incr(ctx, cur.ID, int(used-n))
	}
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.noteCountLocked(cur, n)
	b.mu.Unlock()
	return nil
}
