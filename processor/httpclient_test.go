package processor_test

import (
	"testing"
	"time"

	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/ratelimit"
)

// TestNewHTTPClientLimits guards the provider client's promises: the
// per-request timeout bounds the whole request and the wait for the
// response headers; idle connections are kept for the worker's
// concurrency (at least 2), twice that in all; an idle connection is
// closed after 90 s, a TLS handshake takes at most 5 s and a 100-continue
// wait 1 s.
func TestNewHTTPClientLimits(t *testing.T) {
	t.Parallel()
	cases := []struct {
		conns, perHost int
	}{
		{conns: 0, perHost: 2},
		{conns: 1, perHost: 2},
		{conns: 2, perHost: 2},
		{conns: 8, perHost: 8},
	}
	for _, tc := range cases {
		const timeout = 7 * time.Second
		c := processor.NewHTTPClient(timeout, tc.conns)
		if c.Timeout != timeout {
			t.Errorf("conns %d: client timeout %s, want %s", tc.conns, c.Timeout, timeout)
		}
		wf, ok := c.Transport.(*ratelimit.WireFencedTransport)
		if !ok {
			t.Fatalf("conns %d: transport %T, want *ratelimit.WireFencedTransport (connections that check the lease's fence)", tc.conns, c.Transport)
		}
		tr := wf.Transport
		if tr.MaxIdleConnsPerHost != tc.perHost || tr.MaxIdleConns != 2*tc.perHost {
			t.Errorf("conns %d: idle connections %d per host, %d in all; want %d and %d", tc.conns, tr.MaxIdleConnsPerHost, tr.MaxIdleConns, tc.perHost, 2*tc.perHost)
		}
		if tr.ResponseHeaderTimeout != 0 {
			t.Errorf("conns %d: response header timeout %s, want none (the client's Timeout bounds the call)", tc.conns, tr.ResponseHeaderTimeout)
		}
		if tr.IdleConnTimeout != 90*time.Second || tr.TLSHandshakeTimeout != 5*time.Second || tr.ExpectContinueTimeout != time.Second {
			t.Errorf("conns %d: idle %s, TLS handshake %s, expect-continue %s; want 90s, 5s, 1s", tc.conns, tr.IdleConnTimeout, tr.TLSHandshakeTimeout, tr.ExpectContinueTimeout)
		}
		if tr.DialContext == nil || tr.Proxy == nil {
			t.Errorf("conns %d: dialer set %v, proxy from environment %v; want both", tc.conns, tr.DialContext != nil, tr.Proxy != nil)
		}
		// HTTP/1.1 only: a connection carries one request's fence at a
		// time.
		if tr.ForceAttemptHTTP2 || tr.TLSNextProto == nil || len(tr.TLSNextProto) != 0 {
			t.Errorf("conns %d: HTTP/2 forced %v, TLSNextProto %v; want HTTP/1.1 only", tc.conns, tr.ForceAttemptHTTP2, tr.TLSNextProto)
		}
	}
}
