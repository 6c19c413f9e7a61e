// Package ingest is patchbay's webhook endpoint: it authenticates each
// request, validates the events in it, and answers 202 only once JetStream
// has stored every one of them.
package ingest

import (
	"errors"
	"fmt"
	"time"

	"github.com/patchbay/patchbay/redact"
)

// Config configures ingest (environment prefix PATCHBAY_INGEST_).
type Config struct {
	Addr           string          `envconfig:"ADDR" default:":8080" desc:"public listen address (webhooks)"`
	AdminAddr      string          `envconfig:"ADMIN_ADDR" default:"127.0.0.1:9090" desc:"admin listen address: /metrics, /readyz with the reason and, with PATCHBAY_ADMIN_PPROF, /debug/pprof (empty: off)"`
	MaxBodyBytes   int64           `envconfig:"MAX_BODY_BYTES" default:"1048576" desc:"largest request body; larger answers 413"`
	MaxBatch       int             `envconfig:"MAX_BATCH" default:"1000" desc:"most events in one request"`
	PublishTimeout time.Duration   `envconfig:"PUBLISH_TIMEOUT" default:"5s" desc:"how long to wait for JetStream to acknowledge; then 503"`
	MaxInFlight    int             `envconfig:"MAX_IN_FLIGHT" default:"4096" desc:"requests being published at once; more answer 503 at once (load shedding)"`
	Tokens         []redact.Secret `envconfig:"TOKENS" desc:"accepted bearer tokens (Authorization: Bearer …), comma separated"`
	WebhookSecrets []redact.Secret `envconfig:"WEBHOOK_SECRETS" desc:"Standard Webhooks signing secrets (whsec_…), comma separated; several allow rotation"`
	// Signed requests are read before their signature can be checked, so
	// anyone can send one: they get their own, smaller bounds and do not
	// take an in-flight slot until the signature verifies.
	SignedMaxBodyBytes int64         `envconfig:"SIGNED_MAX_BODY_BYTES" default:"262144" desc:"largest body of a request authenticated by signature (read before the signature is checked); larger answers 413"`
	SignedReadTimeout  time.Duration `envconfig:"SIGNED_READ_TIMEOUT" default:"5s" desc:"how long the body of a request authenticated by signature may take to arrive"`
	MaxUnverified      int           `envconfig:"MAX_UNVERIFIED" default:"128" desc:"signed requests whose body is being read before the signature check; more answer 503 at once"`
	Insecure           bool          `envconfig:"INSECURE_NO_AUTH" default:"false" desc:"accept unauthenticated requests (never in production)"`
	ReadHeaderTimeout  time.Duration `envconfig:"READ_HEADER_TIMEOUT" default:"5s" desc:"server read-header timeout (slowloris)"`
	ReadTimeout        time.Duration `envconfig:"READ_TIMEOUT" default:"30s" desc:"server read timeout"`
	WriteTimeout       time.Duration `envconfig:"WRITE_TIMEOUT" default:"30s" desc:"server write timeout"`
	IdleTimeout        time.Duration `envconfig:"IDLE_TIMEOUT" default:"120s" desc:"keep-alive idle timeout"`
	MaxHeaderBytes     int           `envconfig:"MAX_HEADER_BYTES" default:"65536" desc:"largest request header block"`
	ShutdownTimeout    time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"20s" desc:"on SIGTERM, how long in-flight requests may finish"`
	Sources            string        `envconfig:"SOURCES" desc:"YAML file declaring webhook sources, served at POST /v1/sources/{name} (empty: none)"`
	ContactsBucket     string        `envconfig:"CONTACTS_BUCKET" default:"PATCHBAY_CONTACTS" desc:"NATS KV bucket of the contact map (source contact id -> provider contact id)"`
}

// setDefaults fills the bounds of requests read before their credentials
// can be checked (signed requests, webhook sources) when a Config built in
// code leaves them zero; from the environment they have their defaults.
func (c *Config) setDefaults() {
	if c.SignedMaxBodyBytes == 0 {
		c.SignedMaxBodyBytes = min(256<<10, c.MaxBodyBytes)
	}
	if c.SignedReadTimeout == 0 {
		c.SignedReadTimeout = 5 * time.Second
	}
	if c.MaxUnverified == 0 {
		c.MaxUnverified = 128
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case c.MaxBodyBytes < 1024:
		return fmt.Errorf("ingest: max body bytes %d below 1024", c.MaxBodyBytes)
	case c.MaxBatch < 1:
		return errors.New("ingest: max batch must be at least 1")
	case c.PublishTimeout <= 0:
		return errors.New("ingest: publish timeout must be positive")
	case c.MaxInFlight < 1:
		return errors.New("ingest: max in flight must be at least 1")
	case len(c.WebhookSecrets) > 0 && (c.SignedMaxBodyBytes < 1024 || c.SignedMaxBodyBytes > c.MaxBodyBytes):
		return fmt.Errorf("ingest: signed max body bytes %d out of range 1024..%d (max body bytes)", c.SignedMaxBodyBytes, c.MaxBodyBytes)
	case len(c.WebhookSecrets) > 0 && (c.SignedReadTimeout <= 0 || c.MaxUnverified < 1):
		return errors.New("ingest: signed read timeout must be positive and max unverified at least 1")
	case len(c.Tokens) == 0 && len(c.WebhookSecrets) == 0 && !c.Insecure && c.Sources == "":
		return errors.New("ingest: no authentication configured: set PATCHBAY_INGEST_TOKENS or PATCHBAY_INGEST_WEBHOOK_SECRETS (or PATCHBAY_INGEST_INSECURE_NO_AUTH=true for local testing)")
	}
	for i, t := range c.Tokens {
		if len(t) < 16 {
			return errors.New("ingest: bearer tokens must be at least 16 characters")
		}
		if t.Placeholder() {
			return fmt.Errorf("ingest: bearer token %d is a sample value from the documentation; generate one (openssl rand -hex 24)", i)
		}
	}
	for i, s := range c.WebhookSecrets {
		if s.Placeholder() {
			return fmt.Errorf("ingest: webhook secret %d is a sample value from the documentation; use the secret your sender issued", i)
		}
	}
	return nil
}
