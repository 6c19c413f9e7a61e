// Package skipcall is the client for Skipcall's contact API:
// PATCH /v1/contacts/{id} with a bearer API key (sk_live_… or sk_test_…).
package skipcall

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/httpcall"
	"github.com/patchbay/patchbay/redact"
)

// Config configures the Skipcall client (environment prefix PATCHBAY_SKIPCALL_).
type Config struct {
	BaseURL       string        `envconfig:"BASE_URL" default:"https://api-public.skipcall.app" desc:"Skipcall API base URL"`
	APIKey        redact.Secret `envconfig:"API_KEY" desc:"Skipcall API key (sk_live_… or sk_test_…)"`
	RatePerMinute int           `envconfig:"RATE_PER_MINUTE" default:"100" desc:"requests per minute allowed by the plan (100 STARTER/INTERMÉDIAIRE, 1000 EXPERT; 0: no client-side limit)"`
	RateWindow    time.Duration `envconfig:"RATE_WINDOW" default:"1m" desc:"length of the plan's rate-limit window (Skipcall's is a minute; tests against a sandbox with a shorter window set it)"`
	Timeout       time.Duration `envconfig:"TIMEOUT" default:"10s" desc:"timeout of one PATCH"`
	MaxPause      time.Duration `envconfig:"MAX_PAUSE" default:"1h" desc:"longest pause a rate-limit header may impose; longer ones are capped, logged and counted"`
	SettleHorizon time.Duration `envconfig:"SETTLE_HORIZON" desc:"after a PATCH whose outcome is unknown (a timeout, a reset), how long from its start the provider may still apply it: no other request for the contact is sent before, then its newest values are sent again (default twice the timeout; at most two thirds of PATCHBAY_WORKER_LEASE_TTL)"`
}

// Horizon returns the settle horizon: SettleHorizon, or twice the timeout.
func (c Config) Horizon() time.Duration {
	if c.SettleHorizon > 0 {
		return c.SettleHorizon
	}
	return 2 * c.Timeout
}

// Validate reports a missing or malformed setting.
func (c Config) Validate() error {
	if !httpcall.ValidBaseURL(c.BaseURL) {
		return fmt.Errorf("skipcall: base URL %q is not an http(s) URL", c.BaseURL)
	}
	k := c.APIKey.Reveal()
	if !strings.HasPrefix(k, "sk_live_") && !strings.HasPrefix(k, "sk_test_") {
		return fmt.Errorf("skipcall: API key must start with sk_live_ or sk_test_")
	}
	if c.APIKey.Placeholder() {
		return fmt.Errorf("skipcall: API key is a sample value from the documentation")
	}
	if c.Timeout <= 0 || c.MaxPause < 0 {
		return fmt.Errorf("skipcall: timeout must be positive and max pause not negative (0: 1h)")
	}
	if c.SettleHorizon < 0 || c.SettleHorizon > 0 && c.SettleHorizon < c.Timeout {
		return fmt.Errorf("skipcall: settle horizon %s must be at least the timeout %s (0: twice the timeout)", c.SettleHorizon, c.Timeout)
	}
	if c.RateWindow < 0 {
		return fmt.Errorf("skipcall: rate window must not be negative")
	}
	return nil
}

// Client sends contact patches to Skipcall.
type Client struct {
	base   string
	auth   string
	http   *http.Client
	now    func() time.Time
	pauses *httpcall.Pauses
}

// New returns a Client; hc may be nil for a default client sized for conns
// concurrent requests. opts (httpcall.WithLogger, httpcall.WithRegisterer)
// report implausible rate-limit headers.
func New(cfg Config, hc *http.Client, conns int, opts ...httpcall.Option) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if hc == nil {
		hc = processor.NewHTTPClient(cfg.Timeout, conns)
	}
	return &Client{
		base:   strings.TrimRight(cfg.BaseURL, "/"),
		auth:   "Bearer " + cfg.APIKey.Reveal(),
		http:   hc,
		now:    time.Now,
		pauses: httpcall.NewPauses("skipcall", cfg.MaxPause, opts...),
	}, nil
}

// Patch applies ev at Skipcall. It returns a *processor.Error classified per
// the Skipcall documentation: 400 and 404 are permanent; 401 (bad key) and
// 403 (subscription or plan) are credential failures; 429 is rate limited
// until X-RateLimit-Reset; 5xx are transient; a transport error is an
// unknown outcome once the request was written, not sent before.
func (c *Client) Patch(ctx context.Context, ev *events.Event) (processor.Result, error) {
	resp, err := httpcall.PatchJSON(ctx, c.http, c.base+"/v1/contacts/"+url.PathEscape(ev.ContactID), ev.Patch, "Authorization", c.auth)
	if err != nil {
		return processor.Result{}, err
	}
	return Classify(resp, c.now(), c.pauses)
}

// Classify maps a Skipcall response to a Result or a classified error;
// pauses reads X-RateLimit-Reset and Retry-After (nil: default cap, not
// reported).
func Classify(resp httpcall.Response, now time.Time, pauses *httpcall.Pauses) (processor.Result, error) {
	reset := pauses.Reset(resp.Header, now)
	if resp.Status >= 200 && resp.Status < 300 {
		r := processor.Result{Status: resp.Status}
		// The canonical form of X-RateLimit-Remaining: no copy per call.
		if rem := resp.Header.Get("X-Ratelimit-Remaining"); rem == "0" && !reset.IsZero() {
			r.PauseUntil = reset
		}
		return r, nil
	}
	e := &processor.Error{Status: resp.Status, Excerpt: httpcall.Excerpt(resp.Body, 1024)}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(resp.Body, &body) == nil {
		e.Code, e.Message = body.Error.Code, body.Error.Message
	}
	switch {
	case resp.Status == http.StatusTooManyRequests:
		e.Class = processor.ClassRateLimited
		e.RetryAt = reset
		if ra := pauses.RetryAfter(resp.Header, now); ra.After(e.RetryAt) {
			e.RetryAt = ra
		}
	case resp.Status == http.StatusUnauthorized, resp.Status == http.StatusForbidden:
		e.Class = processor.ClassCredentials
	case resp.Status == http.StatusRequestTimeout, resp.Status >= 500:
		e.Class = processor.ClassTransient
	default: // 400, 404 and any other 4xx: this request can never succeed.
		e.Class = processor.ClassPermanent
	}
	return processor.Result{}, e
}
