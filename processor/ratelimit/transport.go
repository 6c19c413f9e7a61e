package ratelimit

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ErrFenced is the error of a request that Transport, or a WireFenced
// connection, refused to write because its fence or deadline had passed:
// nothing of it reached the provider. It matches context.DeadlineExceeded
// too (errors.Is).
var ErrFenced = fmt.Errorf("ratelimit: request past its fence, not written: %w", context.DeadlineExceeded)

type grantKey struct{}

// WithGrant returns a copy of ctx carrying g, for Transport to check at the
// moment the request is sent.
func WithGrant(ctx context.Context, g Grant) context.Context {
	return context.WithValue(ctx, grantKey{}, g)
}

type fenceKey struct{}

// WithFence returns a copy of ctx carrying fence, for Transport to check as
// the request is sent: nothing is sent once time.Now() is not before
// fence(). Unlike a context deadline, a fence may move on while the request
// waits (a lease renewed), and it is read at the moment of each check, not
// when a timer fires.
func WithFence(ctx context.Context, fence func() time.Time) context.Context {
	return context.WithValue(ctx, fenceKey{}, fence)
}

// FenceFrom returns the fence ctx carries (WithFence), or nil.
func FenceFrom(ctx context.Context) func() time.Time {
	fn, _ := ctx.Value(fenceKey{}).(func() time.Time)
	return fn
}

// Transport returns an http.RoundTripper for the provider's client that
// enforces the budget at the wire:
//
//   - a request whose context carries a Grant of this budget (WithGrant) is
//     checked with Grant.Valid immediately before it is handed to next; if
//     a pause began since the grant, nothing is sent and RoundTrip returns
//     the *WaitError (errors.Is ErrPaused; http.Client wraps it in a
//     *url.Error);
//   - a request whose context deadline or fence (WithFence) has passed is
//     not sent, even before the context's own timer fires: checked before
//     it is handed to next, and again at the write to the socket when next
//     is WireFenced, or else as its body is read; the error then matches
//     ErrFenced (nothing was written: not an attempt);
//   - every response's X-RateLimit-* headers are passed to Observe (an
//     Observe failure is logged; the response is returned unchanged).
//
// Requests without a Grant are sent unchecked. next nil means
// http.DefaultTransport.
func (b *Budget) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{b: b, next: next}
}

type transport struct {
	b    *Budget
	next http.RoundTripper
}

func isWireFenced(rt http.RoundTripper) bool {
	_, ok := rt.(*WireFencedTransport)
	return ok
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A deadline or fence already past is not sent, even if the context's
	// timer has not fired yet (a process resumed after SIGSTOP runs
	// goroutines before timers): the worker's fence is the end of the lease
	// it delivers under.
	f := fenceOf(req.Context())
	if f.passed() {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, ErrFenced
	}
	if g, ok := req.Context().Value(grantKey{}).(Grant); ok && g.b == t.b {
		if err := g.Valid(); err != nil {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, err
		}
	}
	switch {
	case !f.set():
	case isWireFenced(t.next):
		// The connection checks the fence as it writes (WireFenced).
		req = withWireFence(req, f)
	case req.Body != nil && req.Body != http.NoBody:
		// Checked once more as the body is written, just before the
		// request is flushed to the socket: a process stopped between the
		// check above and the write (SIGSTOP, a long pause) and resumed
		// past the deadline sends nothing (net/http does not flush a
		// request whose body failed).
		// net/http may send a request again on a new connection when
		// nothing was written (through GetBody): the copy is checked too.
		r2 := req.Clone(req.Context())
		r2.Body = &deadlineBody{ReadCloser: req.Body, f: f}
		if getBody := req.GetBody; getBody != nil {
			r2.GetBody = func() (io.ReadCloser, error) {
				body, err := getBody()
				if err != nil {
					return nil, err
				}
				return &deadlineBody{ReadCloser: body, f: f}, nil
			}
		}
		req = r2
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if o, ok := ParseHeaders(resp.Header); ok {
		if err := t.b.Observe(context.WithoutCancel(req.Context()), o); err != nil {
			t.b.log.Warn("could not record the provider's rate-limit headers", "err", err)
		}
	}
	return resp, nil
}

// fence is when a request may no longer be sent: its context's deadline,
// its fence (WithFence), or the earlier of both.
type fence struct {
	deadline time.Time        // zero: none
	fn       func() time.Time // nil: none
}

func fenceOf(ctx context.Context) fence {
	dl, _ := ctx.Deadline()
	return fence{deadline: dl, fn: FenceFrom(ctx)}
}

func (f fence) set() bool { return !f.deadline.IsZero() || f.fn != nil }

// passed reports whether the request may no longer be sent.
func (f fence) passed() bool {
	if !f.set() {
		return false
	}
	now := time.Now()
	if !f.deadline.IsZero() && !now.Before(f.deadline) {
		return true
	}
	return f.fn != nil && !now.Before(f.fn())
}

// deadlineBody fails every Read once its fence has passed.
type deadlineBody struct {
	io.ReadCloser
	f fence
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.f.passed() {
		return 0, ErrFenced
	}
	return b.ReadCloser.Read(p)
}
