package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

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

// signatureTolerance is the Standard Webhooks library's own window around
// webhook-timestamp; checking it before the body is read refuses a replayed
// or stale request without reading it.
const signatureTolerance = 5 * time.Minute

func newAuthenticator(c Config) (*authenticator, error) {
	a := &authenticator{insecure: c.Insecure}
	for _, t := range c.Tokens {
		a.tokens = append(a.tokens, sha256.Sum256([]byte(t.Reveal())))
	}
	for i, s := range c.WebhookSecrets {
		wh, err := standardwebhooks.NewWebhook(s.Reveal())
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

// mightBeSigned reports whether h carries what a valid Standard Webhooks
// signature needs, checked without the body: webhook secrets are configured,
// webhook-id is present, webhook-timestamp is an integer within the
// library's tolerance of now, and webhook-signature holds at least one
// well-formed v1 signature (base64 of 32 bytes). A request failing this is
// refused before its body is read.
func (a *authenticator) mightBeSigned(h http.Header, now time.Time) bool {
	if len(a.webhooks) == 0 || h.Get(standardwebhooks.HeaderWebhookID) == "" {
		return false
	}
	ts, err := strconv.ParseInt(h.Get(standardwebhooks.HeaderWebhookTimestamp), 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(ts, 0)); d > signatureTolerance || d < -signatureTolerance {
		return false
	}
	for _, sig := range strings.Fields(h.Get(standardwebhooks.HeaderWebhookSignature)) {
		v, b64, ok := strings.Cut(sig, ",")
		if ok && v == "v1" && base64.StdEncoding.DecodedLen(len(b64)) >= sha256.Size && len(b64) <= 64 {
			if raw, err := base64.StdEncoding.DecodeString(b64); err == nil && len(raw) == sha256.Size {
				return true
			}
		}
	}
	return false
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
