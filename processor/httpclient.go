package processor

import (
	"net"
	"net/http"
	"time"

	"github.com/patchbay/patchbay/processor/ratelimit"
)

// NewHTTPClient returns an HTTP client for one provider: a per-request
// timeout, enough idle connections for the worker's concurrency, and
// connections that refuse to write a request past its lease's fence
// (ratelimit.WireFenced: HTTP/1.1).
func NewHTTPClient(timeout time.Duration, conns int) *http.Client {
	conns = max(conns, 2)
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          conns * 2,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		// No ResponseHeaderTimeout: the client's Timeout, as long and
		// started earlier, always ends a call first, and the transport
		// would arm a timer of its own for every PATCH.
	}
	return &http.Client{Transport: ratelimit.WireFenced(tr), Timeout: timeout}
}
