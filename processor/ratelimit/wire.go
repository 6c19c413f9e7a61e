package ratelimit

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
)

// WireFenced returns a copy of tr, to be Transport's next, whose
// connections check the fence of the request they carry (its context's
// deadline and WithFence) at each write to the socket: a request whose
// fence passes after Transport's own check, however late it is written, is
// not sent. Without it Transport checks as the request's body is read,
// which costs net/http a write of the headers of their own per request.
//
// The copy speaks HTTP/1.1 only: a connection carries one request at a
// time, so it can carry that request's fence.
func WireFenced(tr *http.Transport) *WireFencedTransport {
	t := tr.Clone()
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &fenceConn{Conn: c}, nil
	}
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	return &WireFencedTransport{t}
}

// WireFencedTransport is an *http.Transport whose connections check the
// fence of the request they write (WireFenced).
type WireFencedTransport struct{ *http.Transport }

// errPastFence is what a write past its request's fence returns.
var errPastFence = fmt.Errorf("ratelimit: write refused at the socket: %w", ErrFenced)

// fenceConn refuses every write once the fence of the request it carries
// has passed.
type fenceConn struct {
	net.Conn
	f atomic.Pointer[fence]
}

func (c *fenceConn) Write(p []byte) (int, error) {
	if f := c.f.Load(); f != nil && f.passed() {
		return 0, errPastFence
	}
	return c.Conn.Write(p)
}

func fenceConnOf(c net.Conn) *fenceConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	fc, _ := c.(*fenceConn)
	return fc
}

// withWireFence returns req carrying f to the connection that writes it,
// from the moment the connection is chosen until the answer begins
// (WroteRequest is too early: net/http reports it once the request is in
// the connection's buffer, before the buffer goes to the socket).
func withWireFence(req *http.Request, f fence) *http.Request {
	// One allocation holds the fence, the connection and the trace.
	w := &wireFence{f: f}
	w.trace = httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			// Called again for a retry on another connection.
			if w.fc = fenceConnOf(info.Conn); w.fc != nil {
				w.fc.f.Store(&w.f)
			}
		},
		GotFirstResponseByte: func() {
			if w.fc != nil {
				w.fc.f.CompareAndSwap(&w.f, nil)
			}
		},
	}
	return req.WithContext(httptrace.WithClientTrace(req.Context(), &w.trace))
}

// wireFence is one request's fence and the connection carrying it.
type wireFence struct {
	f     fence
	fc    *fenceConn
	trace httptrace.ClientTrace
}
