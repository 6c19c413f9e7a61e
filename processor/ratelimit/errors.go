package ratelimit

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrConfig is wrapped by the errors of a bad Config.
	ErrConfig = errors.New("ratelimit: invalid config")
	// ErrPaused is matched (errors.Is) by a *WaitError for a pause: after a
	// 429, a used-up window the provider reported, or a credential failure.
	ErrPaused = errors.New("ratelimit: target paused")
	// ErrExhausted is matched (errors.Is) by a *WaitError for a shared
	// window whose requests are all taken.
	ErrExhausted = errors.New("ratelimit: window used up")
)

// WaitError says that no request may be sent before Until. It is not an
// attempt: the event has not been sent.
type WaitError struct {
	Until  time.Time
	Reason string
	Paused bool // a pause (ErrPaused), else a used-up window (ErrExhausted)
	// clockSkew marks the wait of a replica whose clock has not reached
	// the start of the window in force (matched as ErrExhausted: no slot
	// before Until).
	clockSkew bool
}

// Error describes the wait.
func (e *WaitError) Error() string {
	kind := "window used up"
	if e.Paused {
		kind = "paused"
	}
	return fmt.Sprintf("ratelimit: %s until %s: %s", kind, e.Until.UTC().Format(time.RFC3339Nano), e.Reason)
}

// Is matches ErrPaused or ErrExhausted.
func (e *WaitError) Is(target error) bool {
	if e.Paused {
		return target == ErrPaused
	}
	return target == ErrExhausted
}
