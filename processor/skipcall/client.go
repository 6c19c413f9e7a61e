// Package skipcall is the client for Skipcall's contact API:
// PATCH /v1/contacts/{id} with a bearer API key (sk_live_… or sk_test_…).
package skipcall

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/processor"
)

// Config configures the Skipcall client (environment prefix PATCHBAY_SKIPCALL_).
type Config struct {
	BaseURL       string           `envconfig:"BASE_URL" default:"https://api-public.skipcall.app" desc:"Skipcall API base URL"`
	APIKey        processor.Secret `envconfig:"API_KEY" desc:"Skipcall API key (sk_live_… or sk_test_…)"`
	RatePerMinute int              `envconfig:"RATE_PER_MINUTE" default:"100" desc:"requests per minute allowed by the plan (100 STARTER/INTERMÉDIAIRE, 1000 EXPERT; 0: no client-side limit)"`
	RateWindow    time.Duration    `envconfig:"RATE_WINDOW" default:"1m" desc:"length of the plan's rate-limit window (Skipcall's is a minute; tests against a sandbox with a shorter window set it)"`
	Timeout       time.Duration    `envconfig:"TIMEOUT" default:"10s" desc:"timeout of one PATCH"`
}

// Validate reports a missing or malformed setting.
func (c Config) Validate() error {
	if !processor.ValidBaseURL(c.BaseURL) {
		return fmt.Errorf("skipcall: base URL %q is not an http(s) URL", c.BaseURL)
	}
	k := c.APIKey.Reveal()
	if !strings.HasPrefix(k, "sk_live_") && !strings.HasPrefix(k, "sk_test_") {
		return fmt.Errorf("skipcall: API key must start with sk_live_ or sk_test_")
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("skipcall: timeout must be positive")
	}
	if c.RateWindow < 0 {
		return fmt.Errorf("skipcall: rate window must not be negative")
	}
	return nil
}

// Client sends contact patches to Skipcall.
type Client struct {
	base string
	auth string
	http *http.Client
	now  func() time.Time
}

// New returns a Client; hc may be nil for a default client sized for conns
// concurrent requests.
func New(cfg Config, hc *http.Client, conns int) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if hc == nil {
		hc = processor.NewHTTPClient(cfg.Timeout, conns)
	}
	return &Client{
		base: strings.TrimRight(cfg.BaseURL, "/"),
		auth: "Bearer " + cfg.APIKey.Reveal(),
		http: hc,
		now:  time.Now,
	}, nil
}

// Patch applies ev at Skipcall. It returns a *processor.Error classified per
// the Skipcall documentation: 400 and 404 are permanent; 401 (bad key) and
// 403 (subscription or plan) are credential failures; 429 is rate limited
// until X-RateLimit-Reset; 5xx and transport errors are transient.
func (c *Client) Patch(ctx context.Context, ev *events.Event) (processor.Result, error) {
	resp, err := processor.PatchJSON(ctx, c.http, c.base+"/v1/contacts/"+url.PathEscape(ev.ContactID), ev.Patch, "Authorization", c.auth)
	if err != nil {
		return processor.Result{}, err
	}
	return Classify(resp, c.now())
}

// Classify maps a Skipcall response to a Result or a classified error.
func Classify(resp processor.Response, now time.Time) (processor.Result, error) {
	reset := resetTime(resp.Header)
	if resp.Status >= 200 && resp.Status < 300 {
		r := processor.Result{Status: resp.Status}
		if rem := resp.Header.Get("X-RateLimit-Remaining"); rem == "0" && !reset.IsZero() {
			r.PauseUntil = reset
		}
		return r, nil
	}
	e := &processor.Error{Status: resp.Status, Excerpt: processor.Excerpt(resp.Body, 1024)}
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
		if ra := processor.RetryAfter(resp.Header, now); ra.After(e.RetryAt) {
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

func resetTime(h http.Header) time.Time {
	v := h.Get("X-RateLimit-Reset")
	if v == "" {
		return time.Time{}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.Unix(n, 0)
}
