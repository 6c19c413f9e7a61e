package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// authenticator accepts a request carrying one of the configured bearer
// tokens, or a Standard Webhooks signature made with one of the configured
// secrets.
type authenticator struct {
	tokens   [][32]byte // sha256 of each token, compared in constant time
	webhooks []*standardwebhooks.Webhook
	insecure bool
}

var errUnauthenticated = errors.New("missing or invalid credentials: send Authorization: Bearer <token> or a Standard Webhooks signature")

func newAuthenticator(c Config) (*authenticator, error) {
	a := &authenticator{insecure: c.Insecure}
	for _, t := range c.Tokens {
		a.tokens = append(a.tokens, sha256.Sum256([]byte(t)))
	}
	for i, s := range c.WebhookSecrets {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			return nil, fmt.Errorf("ingest: webhook secret %d: %w", i, err)
		}
		a.webhooks = append(a.webhooks, wh)
	}
	return a, nil
}

// bearer reports whether the request carries a valid bearer token; it
// needs no body, so it runs before the body is read.
func (a *authenticator) bearer(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	match := 0
	for _, t := range a.tokens {
		match |= subtle.ConstantTimeCompare(sum[:], t[:])
	}
	return match == 1
}

// signed reports whether a Standard Webhooks signature over body verifies
// with one of the secrets (timestamps older than 5 minutes are refused).
func (a *authenticator) signed(h http.Header, body []byte) bool {
	if h.Get(standardwebhooks.HeaderWebhookSignature) == "" {
		return false
	}
	for _, wh := range a.webhooks {
		if wh.Verify(body, h) == nil {
			return true
		}
	}
	return false
}
