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
	"net/textproto"
	"net/url"

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

// send performs req, which carries the call's context, with c and reads at
// most MaxResponseBody bytes of the answer, draining a bounded remainder so
// the connection can be reused. Transport errors are classified with
// TransportError against ctx, the caller's context.
func send(ctx context.Context, c *http.Client, req *http.Request) (Response, error) {
	resp, err := c.Do(req)
	if err != nil {
		return Response{}, processor.TransportError(ctx, err)
	}
	defer resp.Body.Close()
	body, err := readBounded(resp.Body, MaxResponseBody, resp.ContentLength)
	if err != nil {
		return Response{}, processor.TransportError(ctx, err)
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
// c.Timeout bounds the whole call, the answer's body included. Transport
// errors are classified with TransportError.
func PatchJSON(ctx context.Context, c *http.Client, u string, body []byte, authHeader, authValue string) (Response, error) {
	call, c, cancel := bound(ctx, c)
	defer cancel()
	// The request is built with the call's context: no copy of it for
	// another context (http.Request.WithContext) on every PATCH.
	req, err := http.NewRequestWithContext(call, http.MethodPatch, u, bytes.NewReader(body))
	if err != nil {
		return Response{}, &processor.Error{Class: processor.ClassPermanent, Err: err}
	}
	// Header.Set's values, in one allocation instead of one each.
	vals := [...]string{authValue, "application/json"}
	req.Header[textproto.CanonicalMIMEHeaderKey(authHeader)] = vals[0:1:1]
	req.Header["Content-Type"] = vals[1:2:2]
	req.Header["Accept"] = vals[1:2:2]
	return send(ctx, c, req)
}
