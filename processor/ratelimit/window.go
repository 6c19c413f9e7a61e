package ratelimit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// window is a shared rate-limit window, in unix milliseconds. ID (its
// start) names its counter. Slots are granted from Start until Close
// (Start+Window-ResetMargin: a request granted before Close reaches the
// provider inside the provider's window, which began no earlier than
// Start). The next window starts at End, which is the provider's reset plus
// ResetMargin once a response has told it (Start+Window+ResetMargin
// before). End only ever moves later (see Observe), so a window's counter
// keeps every request granted in it.
type window struct {
	ID    int64 `json:"id"`
	Start int64 `json:"start"`
	Close int64 `json:"close"`
	End   int64 `json:"end"`
	Limit int   `json:"limit"`
}

// runs reports whether w is the window in force at now.
func (w window) runs(now time.Time) bool {
	ms := now.UnixMilli()
	return w.Start != 0 && w.Start <= ms && ms < w.End
}

// Observation is what a provider response says about the rate limit.
type Observation struct {
	Limit     int       // X-RateLimit-Limit; 0: not sent
	Remaining int       // X-RateLimit-Remaining; -1: not sent
	Reset     time.Time // X-RateLimit-Reset; zero: not sent
}

// ParseHeaders reads X-RateLimit-Limit, X-RateLimit-Remaining and
// X-RateLimit-Reset as Skipcall sends them. Each must be digits only ("10abc"
// is not read). The size of the reset gives its unit, as in the provider
// clients: below 1e9 seconds from now, below 1e11 unix seconds, above that
// unix milliseconds. ok is false when none is present or readable.
func ParseHeaders(h http.Header) (o Observation, ok bool) {
	return parseHeaders(h, time.Now())
}

// The rate-limit headers, in the canonical form http.Header keys have
// (textproto.CanonicalMIMEHeaderKey): Header.Get of a name already in that
// form finds the same value without allocating its canonical copy, which
// "X-RateLimit-Limit" costs on every response.
const (
	hdrLimit     = "X-Ratelimit-Limit"
	hdrRemaining = "X-Ratelimit-Remaining"
	hdrReset     = "X-Ratelimit-Reset"
)

func parseHeaders(h http.Header, now time.Time) (o Observation, ok bool) {
	o.Remaining = -1
	// An absent header is skipped before strconv, whose error for "" is an
	// allocation on every response of a provider that sends none.
	if s := h.Get(hdrLimit); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			o.Limit, ok = v, true
		}
	}
	if s := h.Get(hdrRemaining); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v >= 0 {
			o.Remaining, ok = v, true
		}
	}
	s := h.Get(hdrReset)
	if s == "" {
		return o, ok
	}
	if v, err := strconv.ParseUint(s, 10, 63); err == nil && v > 0 {
		switch {
		case v < 1e9:
			o.Reset = now.Add(time.Duration(v) * time.Second)
		case v < 1e11:
			o.Reset = time.Unix(int64(v), 0)
		default:
			o.Reset = time.UnixMilli(int64(v))
		}
		ok = true
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
	if o.Reset.After(now.Add(2 * b.cfg.Window)) {
		// A window ends at most one window length after now: a reset
		// further ahead is a wrong unit or a broken header, and following
		// it would pause every replica for as long. The clients log and
		// count the header (httpcall.Pauses); here it is only ignored.
		b.log.Warn("ignoring an implausible X-RateLimit-Reset", "reset", o.Reset, "window", b.cfg.Window)
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

// align extends the window running at now to end (and sets its limit) in
// the shared record, by compare-and-set, and returns it. With no window
// running it does nothing (the next TryTake starts one).
func (b *Budget) align(ctx context.Context, now time.Time, end int64, limit int) (window, error) {
	for try := 0; ; try++ {
		b.mu.Lock()
		cur, rev := b.state.window, b.state.windowRev
		b.mu.Unlock()
		if !cur.runs(now) {
			return cur, nil
		}
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

// open returns the window running at now, starting the next one (by
// compare-and-set, so one replica starts it and the others adopt it) when
// the last has ended. The new window keeps the provider's last limit.
func (b *Budget) open(ctx context.Context, now time.Time) (window, error) {
	// One goroutine per replica starts the window; the others wait for it
	// and adopt its result rather than race it through the bucket.
	b.openMu.Lock()
	defer b.openMu.Unlock()
	for try := 0; ; try++ {
		b.mu.Lock()
		cur, rev := b.state.window, b.state.windowRev
		b.mu.Unlock()
		if cur.runs(now) {
			return cur, nil
		}
		if now.UnixMilli() < cur.Start {
			// Another replica, whose clock is ahead of ours, started the
			// window in force: wait for its start on our clock (the skew),
			// not for its end.
			return cur, b.behind(cur, now)
		}
		ms := now.UnixMilli()
		next := window{ID: ms, Start: ms, Close: ms + (b.cfg.Window - b.cfg.ResetMargin).Milliseconds(),
			End: ms + (b.cfg.Window + b.cfg.ResetMargin).Milliseconds(), Limit: cur.Limit}
		if next.Limit == 0 {
			next.Limit = b.cfg.Limit
		}
		data, _ := json.Marshal(next)
		newRev, err := b.st.put(ctx, b.key(keyWindow), data, rev)
		switch {
		case err == nil:
			b.apply(keyWindow, newRev, data)
			return next, nil
		case !isConflict(err) || try >= maxCAS:
			return cur, fmt.Errorf("ratelimit: start window: %w", err)
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

// reasonClockSkew is the WaitError reason of a replica whose clock has not
// reached the start of the window in force.
const reasonClockSkew = "the rate-limit window starts later on this replica's clock (clock skew)"

// behind returns the wait of a replica whose clock reads now, before the
// start of cur, which a replica with a clock ahead of ours started: until
// cur's start on our clock. A skew beyond ResetMargin is not absorbed by the
// margins (a slot granted near Close can reach the provider in its next
// window): it is logged once per window.
func (b *Budget) behind(cur window, now time.Time) *WaitError {
	skew := time.UnixMilli(cur.Start).Sub(now)
	if skew > b.cfg.ResetMargin {
		b.mu.Lock()
		warn := b.skewWarned != cur.ID
		b.skewWarned = cur.ID
		b.mu.Unlock()
		if warn {
			b.log.Warn("this replica's clock is behind the one that started the rate-limit window by more than the reset margin; keep the replicas' clocks in sync (NTP)",
				"skew", skew, "reset_margin", b.cfg.ResetMargin, "window", cur.ID)
		}
	}
	return &WaitError{Until: time.UnixMilli(cur.Start), Reason: reasonClockSkew, clockSkew: true}
}
