// Package httpcall is the HTTP side of a provider client: a client sized for
// the worker's concurrency, a PATCH with a bounded answer, and the strict
// reading of the pauses a provider imposes (Retry-After, X-RateLimit-Reset),
// capped. The provider clients import it; the worker does not.
package httpcall

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"sync/atomic"

	"github.com/patchbay/patchbay/processor"
)

// MaxResponseBody bounds how much of a provider response is read.
const MaxResponseBody = 64 << 10

// Response is a provider's answer, body bounded by MaxResponseBody.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// bound returns the context of a call with c: ctx with c.Timeout as its
// deadline, and c without its Timeout. With a RoundTripper other than
// *http.Transport (the rate budget's), http.Client enforces its Timeout
// with a goroutine and a timer of its own per request; a deadline does
// the same for free.
func bound(ctx context.Context, c *http.Client) (context.Context, *http.Client, context.CancelFunc) {
	if c.Timeout <= 0 {
		return ctx, c, func() {}
	}
	call, cancel := context.WithTimeout(ctx, c.Timeout)
	cc := *c
	cc.Timeout = 0
	return call, &cc, cancel
}

// wrote tells whether a request may have reached the socket: net/http
// reported it written (WroteRequest without an error, which it reports once
// the request is in the connection's buffer, possibly before the buffer is
// flushed: a conservative answer). A request never reported written was
// not, as a whole: a dial that failed, a fence or pause that refused it, a
// body that could not be read. A request net/http wrote part of and then
// gave up is not one a server can act on.
type wrote struct {
	yes   atomic.Bool // the trace's hooks run on the transport's goroutines
	trace httptrace.ClientTrace
}

// traced returns ctx with a trace that records into w whether the request
// made with it was written.
func (w *wrote) traced(ctx context.Context) context.Context {
	w.trace.WroteRequest = func(info httptrace.WroteRequestInfo) {
		if info.Err == nil {
			w.yes.Store(true)
		}
	}
	return httptrace.WithClientTrace(ctx, &w.trace)
}

// send performs req, which carries the call's context traced with w, with
// c and reads at most MaxResponseBody bytes of the answer, draining a
// bounded remainder so the connection can be reused. Errors are classified
// with processor.SendError against ctx, the caller's context: a call that
// failed once its request was written is an unknown outcome (a timeout, a
// reset, an answer cut off), one that wrote nothing is not sent.
func send(ctx context.Context, c *http.Client, req *http.Request, w *wrote) (Response, error) {
	resp, err := c.Do(req)
	if err != nil {
		return Response{}, processor.SendError(ctx, err, w.yes.Load())
	}
	defer resp.Body.Close()
	body, err := readBounded(resp.Body, MaxResponseBody, resp.ContentLength)
	if err != nil {
		// An answer begun: the request was written.
		return Response{}, processor.SendError(ctx, err, true)
	}
	if len(body) == MaxResponseBody { // cut at the bound; otherwise the body is at its end already
		_, _ = io.CopyN(io.Discard, resp.Body, 4*MaxResponseBody)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// readBounded is io.ReadAll(io.LimitReader(r, limit)) without the
// LimitReader, in a buffer sized by size (the answer's Content-Length, -1
// when unknown): the first limit bytes of r, up to its end.
func readBounded(r io.Reader, limit int, size int64) ([]byte, error) {
	n := 512 // io.ReadAll's first buffer
	if size >= 0 && size < int64(limit) {
		n = int(size) + 1 // room to read the end without growing
	}
	b := make([]byte, 0, min(n, limit))
	for len(b) < limit {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow as append does
		}
		m, err := r.Read(b[len(b):min(cap(b), limit)])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// Excerpt returns at most n bytes of b as a string.
func Excerpt(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// ValidBaseURL reports whether raw is an absolute http(s) URL.
func ValidBaseURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// PatchJSON sends body as a JSON PATCH to u with one authentication header
// and returns the provider's answer, its body read up to MaxResponseBody.
// c.Timeout bounds the whole call, the answer's body included. Errors are
// classified with processor.SendError: ClassUnknown once the request was
// written, ClassNotSent (or the caller's cancellation) before.
func PatchJSON(ctx context.Context, c *http.Client, u string, body []byte, authHeader, authValue string) (Response, error) {
	call, c, cancel := bound(ctx, c)
	defer cancel()
	w := &wrote{}
	// The request is built with the call's context: no copy of it for
	// another context (http.Request.WithContext) on every PATCH.
	req, err := http.NewRequestWithContext(w.traced(call), http.MethodPatch, u, bytes.NewReader(body))
	if err != nil {
		return Response{}, &processor.Error{Class: processor.ClassPermanent, Err: err}
	}
	// Header.Set's values, in one allocation instead of one each.
	vals := [...]string{authValue, "application/json"}
	req.Header[textproto.CanonicalMIMEHeaderKey(authHeader)] = vals[0:1:1]
	req.Header["Content-Type"] = vals[1:2:2]
	req.Header["Accept"] = vals[1:2:2]
	return send(ctx, c, req, w)
}
