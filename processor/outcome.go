// Package processor delivers stored events to the contact providers: it
// consumes the events stream, applies each event as a PATCH through a
// Provider, classifies the outcome, retries with backoff, respects each
// provider's rate limit, and dead-letters what can never succeed.
//
// The provider clients live in processor/revyops and processor/skipcall; the
// in-process fakes of both providers live in the top-level sandbox package.
package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor/ratelimit"
)

// Class is what an outcome means for the event.
type Class int

// The outcome classes. Every provider response and transport error maps to
// exactly one, per provider, in that provider's client.
const (
	// ClassTransient: may succeed later (network error, timeout, 5xx).
	// Retried with exponential backoff, bounded by attempts and age.
	ClassTransient Class = iota + 1
	// ClassRateLimited: the provider refused for now (429). The event waits
	// until the limit resets; the wait does not use up an attempt.
	ClassRateLimited
	// ClassPermanent: can never succeed as it is (400, 404, 409, RevyOps 401).
	// Dead-lettered at once.
	ClassPermanent
	// ClassCredentials: our key is bad or the plan does not allow the call
	// (Skipcall 401/403, RevyOps 403). Not the event's fault: the target is
	// paused and the event retried slowly; it is never dead-lettered for this.
	ClassCredentials
	// ClassUnknown: the request was written and no answer was read in full
	// (a timeout, a connection reset, a response cut off): the provider may
	// have applied it, or may still apply it later. One attempt; no other
	// request for the contact is sent until the target's settle horizon has
	// passed, then the contact's newest values are sent again.
	ClassUnknown
	// ClassNotSent: nothing of the request was written (its lease's fence or
	// its deadline had passed, the dial failed). Not an attempt: the event
	// waits in the worker and is tried again.
	ClassNotSent
)

// String names the class as it appears in logs and metrics.
func (c Class) String() string {
	switch c {
	case ClassTransient:
		return "transient"
	case ClassRateLimited:
		return "rate_limited"
	case ClassPermanent:
		return "permanent"
	case ClassCredentials:
		return "credentials"
	case ClassUnknown:
		return "unknown"
	case ClassNotSent:
		return "not_sent"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Error is a classified delivery failure returned by a Provider.
type Error struct {
	Class   Class
	Status  int       // HTTP status, 0 for transport errors
	Code    string    // provider error code (Skipcall error.code), if any
	Message string    // provider error message, if any
	Excerpt string    // bounded excerpt of the response body
	RetryAt time.Time // for ClassRateLimited: when the limit resets (zero: unknown)
	Err     error     // underlying transport error, if any
}

// Error describes the failure.
func (e *Error) Error() string {
	s := e.Class.String()
	if e.Status != 0 {
		s += fmt.Sprintf(": HTTP %d", e.Status)
	}
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying transport error.
func (e *Error) Unwrap() error { return e.Err }

// ClassOf returns the class of err: the Class of an *Error in its chain, and
// ClassTransient for anything else (an unclassified error is worth retrying,
// bounded by the attempt and age limits).
func ClassOf(err error) Class {
	if err == nil { // what errors.As would say, without its target escaping
		return ClassTransient
	}
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Class
	}
	return ClassTransient
}

// Result describes a successful delivery.
type Result struct {
	// Status is the HTTP status the provider answered.
	Status int
	// PauseUntil, when non-zero, says the provider's rate-limit window is
	// used up: send nothing more before then.
	PauseUntil time.Time
}

// Provider applies one event at one contact provider. Patch returns a nil
// error when the change is applied, and otherwise an error for which ClassOf
// tells what to do (providers return *Error).
type Provider interface {
	Patch(ctx context.Context, ev *events.Event) (Result, error)
}

// StatusClass buckets an HTTP status for metric labels ("2xx", "4xx", ...,
// "error" for no response).
func StatusClass(status int) string {
	switch {
	case status == 0:
		return "error"
	case status < 200 || status > 599:
		return "other"
	default:
		// Constants, not built: a metric label of every request.
		return [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}[status/100-1]
	}
}

// SendError classifies an error of a provider call (http.Client.Do, or the
// reading of its answer); written says whether the request may have reached
// the socket (httptrace's WroteRequest without an error, or an answer begun).
//
//   - written, and not refused by its fence at the socket
//     (ratelimit.ErrFenced): ClassUnknown, even when ctx has ended (the
//     provider may apply it all the same);
//   - not written, ctx ended: ctx's error as is (the caller is shutting down
//     or its lease ended; nothing was sent);
//   - not written otherwise: ClassNotSent.
func SendError(ctx context.Context, err error, written bool) error {
	if written && !errors.Is(err, ratelimit.ErrFenced) {
		return &Error{Class: ClassUnknown, Err: err}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return &Error{Class: ClassNotSent, Err: err}
}
