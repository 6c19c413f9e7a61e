package ratelimit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Pause kinds as they appear in the shared record and in State.
const (
	kindRate        = "rate_limit"
	kindCredentials = "credentials"
	// kindManual is an operator's pause (PauseTarget): it has no end of its
	// own and only ResumeTarget removes it.
	kindManual = "manual"
)

// maxCAS bounds the compare-and-set retries of one update.
const maxCAS = 8

// pause is the shared pause record of a budget. Until is in unix
// milliseconds. A credentials pause stays in the record after Until: it
// then waits for its probe, and only CredentialsOK removes it. A manual
// pause has no Until: it holds until an operator resumes the target.
type pause struct {
	Kind     string `json:"kind,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Since    int64  `json:"since,omitempty"`
	Until    int64  `json:"until,omitempty"`
	Failures int    `json:"failures,omitempty"` // consecutive credential failures
	Probing  bool   `json:"probing,omitempty"`  // a replica holds the probe until Until
	By       string `json:"by,omitempty"`       // who paused a target by hand
}

func (p pause) active(now time.Time) bool {
	return p.Kind == kindManual || p.Kind != "" && now.UnixMilli() < p.Until
}

// end is when a waiter looks at the pause again: its Until, or for a
// manual pause, which has none, manualRecheck from now (a resume reaches
// every replica's watch at once; loops that wait for a time wake by then).
func (p pause) end(now time.Time) time.Time {
	if p.Kind == kindManual {
		return now.Add(manualRecheck)
	}
	return time.UnixMilli(p.Until)
}

// manualRecheck bounds how long after a resume a wait for a manual pause
// that only watches the clock goes on.
const manualRecheck = time.Second

func (p pause) wait(now time.Time) *WaitError {
	return &WaitError{Until: p.end(now), Reason: p.Reason, Paused: true}
}

// Pause stops every replica from sending before until plus ResetMargin
// (pass the provider's reset or Retry-After time), after a 429 or a window
// the provider reports used up. A later pause wins; an earlier one changes
// nothing (and costs no round trip). A credentials pause keeps its kind
// and only gets the later end. Every replica sees the pause through its KV
// watch, typically within milliseconds; slots they granted before it fail
// Grant.Valid. A zero until (a 429 without a reset or Retry-After) pauses
// until the running window ends, or for one Window if none runs. A pause
// is not an attempt. Errors are NATS failures.
func (b *Budget) Pause(ctx context.Context, until time.Time, reason string) error {
	if until.IsZero() {
		now := b.now()
		b.mu.Lock()
		w := b.state.window
		b.mu.Unlock()
		until = now.Add(b.cfg.Window)
		if w.runs(now) {
			until = time.UnixMilli(w.End).Add(-b.cfg.ResetMargin)
		}
	}
	u := until.Add(b.cfg.ResetMargin).UnixMilli()
	return b.updatePause(ctx, func(now time.Time, p pause) (pause, bool) {
		if p.Kind == kindManual || p.active(now) && p.Until >= u {
			return p, false // an operator's pause outranks the provider's
		}
		if p.Kind != kindCredentials {
			p = pause{Kind: kindRate, Reason: reason, Since: now.UnixMilli()}
		}
		p.Until = max(p.Until, u)
		b.log.Info("pausing target for every replica", "reason", reason, "until", time.UnixMilli(p.Until))
		return p, true
	})
}

// CredentialsFailed records a credential failure (Skipcall 401/403, RevyOps
// 403) of the request sent with g: the target pauses for every replica, and
// one replica probes again after a backoff that grows with each
// consecutive failure. Failures of requests granted before the current
// credentials pause began were part of the same outage and are not counted
// again. Errors are NATS failures.
func (b *Budget) CredentialsFailed(ctx context.Context, g Grant, reason string) error {
	return b.updatePause(ctx, func(now time.Time, p pause) (pause, bool) {
		b.mu.Lock()
		rev := b.state.pauseRev
		b.mu.Unlock()
		if p.Kind == kindCredentials && rev > g.pauseRev || p.Kind == kindManual {
			return p, false
		}
		n := 1
		since := now.UnixMilli()
		if p.Kind == kindCredentials {
			n, since = p.Failures+1, p.Since
		}
		next := pause{Kind: kindCredentials, Reason: reason, Since: since, Failures: n,
			Until: max(now.Add(b.probeDelay(n)).UnixMilli(), p.Until)}
		b.log.Error("provider refused our credentials; pausing target for every replica until a probe succeeds",
			"reason", reason, "consecutive_failures", n, "next_probe", time.UnixMilli(next.Until))
		return next, true
	})
}

// CredentialsOK records that the request sent with g was not refused for
// its credentials: a credentials pause that began before g was granted
// (the probe's, typically) ends for every replica. Without a credentials
// pause it costs nothing. Errors are NATS failures.
func (b *Budget) CredentialsOK(ctx context.Context, g Grant) error {
	b.mu.Lock()
	p, rev := b.state.pause, b.state.pauseRev
	b.mu.Unlock()
	if p.Kind != kindCredentials || rev > g.pauseRev {
		return nil
	}
	return b.updatePause(ctx, func(now time.Time, p pause) (pause, bool) {
		b.mu.Lock()
		rev := b.state.pauseRev
		b.mu.Unlock()
		if p.Kind != kindCredentials || rev > g.pauseRev {
			return p, false
		}
		b.log.Info("credentials accepted again; target resumes for every replica", "paused_for", now.Sub(time.UnixMilli(p.Since)).Round(time.Millisecond))
		return pause{}, true
	})
}

// claimProbe tries to become the one replica that probes a credentials
// pause whose wait is over: it moves the pause's end one more backoff step
// ahead by compare-and-set. The winner sends the probe; everyone else
// waits until the new end (when, should the prober die without reporting,
// the next probe is claimed).
func (b *Budget) claimProbe(ctx context.Context, now time.Time, s shared) (until time.Time, won bool, err error) {
	p := s.pause
	p.Probing = true
	p.Until = now.Add(b.probeDelay(p.Failures + 1)).UnixMilli()
	data, _ := json.Marshal(p)
	rev, err := b.st.put(ctx, b.key(keyPause), data, s.pauseRev)
	switch {
	case err == nil:
		b.apply(keyPause, rev, data)
		b.log.Info("probing the provider's credentials with one request", "consecutive_failures", p.Failures)
		return time.UnixMilli(p.Until), true, nil
	case isConflict(err):
		if err := b.refresh(ctx, keyPause); err != nil {
			return time.Time{}, false, err
		}
		b.mu.Lock()
		q := b.state.pause
		b.mu.Unlock()
		if q.Kind == "" {
			return now, false, nil // cleared meanwhile: try again at once
		}
		return time.UnixMilli(q.Until), false, nil
	}
	return time.Time{}, false, fmt.Errorf("ratelimit: claim probe: %w", err)
}

// updatePause applies f to the shared pause record by compare-and-set;
// f returns the new record and whether to write it.
func (b *Budget) updatePause(ctx context.Context, f func(now time.Time, p pause) (pause, bool)) error {
	for try := 0; ; try++ {
		b.mu.Lock()
		p, rev := b.state.pause, b.state.pauseRev
		b.mu.Unlock()
		next, write := f(b.now(), p)
		if !write {
			return nil
		}
		data, _ := json.Marshal(next)
		newRev, err := b.st.put(ctx, b.key(keyPause), data, rev)
		switch {
		case err == nil:
			b.apply(keyPause, newRev, data)
			return nil
		case !isConflict(err) || try >= maxCAS:
			return fmt.Errorf("ratelimit: update pause: %w", err)
		}
		if err := b.refresh(ctx, keyPause); err != nil {
			return err
		}
	}
}

// probeDelay is the wait before the probe after n consecutive credential
// failures: exponential from ProbeInitial, at most ProbeMax, ±20% jitter.
func (b *Budget) probeDelay(n int) time.Duration {
	eb := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(b.cfg.ProbeInitial),
		backoff.WithMaxInterval(b.cfg.ProbeMax),
		backoff.WithRandomizationFactor(0.2),
		backoff.WithMultiplier(2),
		backoff.WithMaxElapsedTime(0),
	)
	d := eb.NextBackOff()
	for i := 1; i < n && i < 64; i++ {
		d = eb.NextBackOff()
	}
	return d
}
