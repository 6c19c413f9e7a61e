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

// Send performs req with c and reads at most MaxResponseBody bytes of the
// answer, draining a bounded remainder so the connection can be reused.
// c.Timeout bounds the whole call, the answer's body included. Transport
// errors are classified with TransportError.
func Send(ctx context.Context, c *http.Client, req *http.Request) (Response, error) {
	call := ctx
	if c.Timeout > 0 {
		// The timeout as the call's context deadline rather than
		// http.Client.Timeout: with a RoundTripper other than
		// *http.Transport (the rate budget's), the client enforces its
		// Timeout with a goroutine and a timer of its own per request.
		var cancel context.CancelFunc
		call, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
		cc := *c
		cc.Timeout = 0
		c = &cc
	}
	if req.Context() != call {
		req = req.WithContext(call)
	}
	resp, err := c.Do(req)
	if err != nil {
		return Response{}, processor.TransportError(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody))
	if err != nil {
		return Response{}, processor.TransportError(ctx, err)
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 4*MaxResponseBody)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
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
// and returns the provider's bounded answer (errors as Send).
func PatchJSON(ctx context.Context, c *http.Client, u string, body []byte, authHeader, authValue string) (Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u, bytes.NewReader(body))
	if err != nil {
		return Response{}, &processor.Error{Class: processor.ClassPermanent, Err: err}
	}
	req.Header.Set(authHeader, authValue)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	return Send(ctx, c, req)
}
