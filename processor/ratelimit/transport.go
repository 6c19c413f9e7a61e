package ratelimit

import (
	"context"
	"net/http"
	"time"
)

type grantKey struct{}

// WithGrant returns a copy of ctx carrying g, for Transport to check at the
// moment the request is sent.
func WithGrant(ctx context.Context, g Grant) context.Context {
	return context.WithValue(ctx, grantKey{}, g)
}

// Transport returns an http.RoundTripper for the provider's client that
// enforces the budget at the wire:
//
//   - a request whose context carries a Grant of this budget (WithGrant) is
//     checked with Grant.Valid immediately before it is handed to next; if
//     a pause began since the grant, nothing is sent and RoundTrip returns
//     the *WaitError (errors.Is ErrPaused; http.Client wraps it in a
//     *url.Error);
//   - a request whose context deadline has passed is not sent, even before
//     the context's own timer fires;
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

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A deadline already past is not sent, even if the context's timer has
	// not fired yet (a process resumed after SIGSTOP runs goroutines before
	// timers): the worker's deadline is the end of its contact lease.
	if dl, ok := req.Context().Deadline(); ok && !time.Now().Before(dl) {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, context.DeadlineExceeded
	}
	if g, ok := req.Context().Value(grantKey{}).(Grant); ok && g.b == t.b {
		if err := g.Valid(); err != nil {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, err
		}
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
