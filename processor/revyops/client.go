// Package revyops is the client for RevyOps' contact API:
// PATCH /public/v2/contacts/{contact_id}?structure=FLAT|NESTED.
package revyops

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/httpcall"
	"github.com/patchbay/patchbay/redact"
)

// Config configures the RevyOps client (environment prefix PATCHBAY_REVYOPS_).
// The seed documentation does not state RevyOps' auth scheme, so the header
// name and value format are configurable.
type Config struct {
	BaseURL       string        `envconfig:"BASE_URL" desc:"RevyOps API base URL (required outside dev mode)"`
	APIKey        redact.Secret `envconfig:"API_KEY" desc:"RevyOps API key"`
	AuthHeader    string        `envconfig:"AUTH_HEADER" default:"X-API-Key" desc:"header that carries the RevyOps key"`
	AuthFormat    string        `envconfig:"AUTH_FORMAT" default:"%s" desc:"format of that header's value, %s is the key (e.g. 'Token %s')"`
	RatePerMinute int           `envconfig:"RATE_PER_MINUTE" default:"0" desc:"client-side request limit per minute (0: none)"`
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
		return fmt.Errorf("revyops: base URL %q is not an http(s) URL", c.BaseURL)
	}
	if c.APIKey == "" {
		return fmt.Errorf("revyops: API key is empty")
	}
	if c.APIKey.Placeholder() {
		return fmt.Errorf("revyops: API key is a sample value from the documentation")
	}
	if c.AuthHeader == "" || strings.Count(c.AuthFormat, "%s") != 1 {
		return fmt.Errorf("revyops: auth header must be set and auth format must contain %%s once")
	}
	if c.Timeout <= 0 || c.MaxPause < 0 {
		return fmt.Errorf("revyops: timeout must be positive and max pause not negative (0: 1h)")
	}
	if c.SettleHorizon < 0 || c.SettleHorizon > 0 && c.SettleHorizon < c.Timeout {
		return fmt.Errorf("revyops: settle horizon %s must be at least the timeout %s (0: twice the timeout)", c.SettleHorizon, c.Timeout)
	}
	return nil
}

// Client sends contact patches to RevyOps.
type Client struct {
	base      string
	header    string
	authValue string
	http      *http.Client
	now       func() time.Time
	pauses    *httpcall.Pauses
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
		base:      strings.TrimRight(cfg.BaseURL, "/"),
		header:    cfg.AuthHeader,
		authValue: fmt.Sprintf(cfg.AuthFormat, cfg.APIKey.Reveal()),
		http:      hc,
		now:       time.Now,
		pauses:    httpcall.NewPauses("revyops", cfg.MaxPause, opts...),
	}, nil
}

// Patch applies ev at RevyOps. It returns a *processor.Error classified per
// the RevyOps documentation: 400, 401 ("company does not belong to this
// client": a data error), 404 and 409 are permanent; 403 (missing or invalid
// key) is a credential failure; 429 is rate limited; 5xx and transport
// errors are transient.
func (c *Client) Patch(ctx context.Context, ev *events.Event) (processor.Result, error) {
	u := c.base + "/public/v2/contacts/" + ev.ContactID
	if ev.Structure != "" {
		u += "?structure=" + ev.Structure
	}
	resp, err := httpcall.PatchJSON(ctx, c.http, u, ev.Patch, c.header, c.authValue)
	if err != nil {
		return processor.Result{}, err
	}
	return Classify(resp, c.now(), c.pauses)
}

// Classify maps a RevyOps response to a Result or a classified error;
// pauses reads Retry-After (nil: default cap, not reported).
func Classify(resp httpcall.Response, now time.Time, pauses *httpcall.Pauses) (processor.Result, error) {
	if resp.Status >= 200 && resp.Status < 300 {
		return processor.Result{Status: resp.Status}, nil
	}
	e := &processor.Error{Status: resp.Status, Excerpt: httpcall.Excerpt(resp.Body, 1024)}
	var body struct {
		Detail string `json:"detail"`
		Code   string `json:"code"`
	}
	if json.Unmarshal(resp.Body, &body) == nil {
		e.Message, e.Code = body.Detail, body.Code
	}
	switch {
	case resp.Status == http.StatusTooManyRequests:
		e.Class = processor.ClassRateLimited
		e.RetryAt = pauses.RetryAfter(resp.Header, now)
	case resp.Status == http.StatusForbidden:
		e.Class = processor.ClassCredentials
	case resp.Status == http.StatusRequestTimeout, resp.Status >= 500:
		e.Class = processor.ClassTransient
	default: // 400, 401 (company not ours), 404, 409, other 4xx.
		e.Class = processor.ClassPermanent
	}
	return processor.Result{}, e
}
