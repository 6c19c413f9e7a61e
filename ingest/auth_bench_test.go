package ingest

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/patchbay/patchbay/redact"
)

func BenchmarkVerifySignature(b *testing.B) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	a, err := newAuthenticator(Config{WebhookSecrets: []redact.Secret{redact.Secret(secret)}})
	if err != nil {
		b.Fatal(err)
	}
	wh, _ := standardwebhooks.NewWebhook(secret)
	body := make([]byte, 1024)
	for i := range body {
		body[i] = 'a'
	}
	now := time.Now()
	sig, _ := wh.Sign("msg-1", now, body)
	h := http.Header{}
	h.Set("webhook-id", "msg-1")
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("webhook-signature", sig)
	if !a.signed(h, body) {
		b.Fatal("signature does not verify")
	}
	b.ReportAllocs()
	for b.Loop() {
		if !a.signed(h, body) {
			b.Fatal("signature does not verify")
		}
	}
}

func BenchmarkBearer(b *testing.B) {
	a, _ := newAuthenticator(Config{Tokens: []redact.Secret{"token-0123456789abcdef"}})
	r, _ := http.NewRequest(http.MethodPost, "/v1/events", nil)
	r.Header.Set("Authorization", "Bearer token-0123456789abcdef")
	b.ReportAllocs()
	for b.Loop() {
		if !a.bearer(r) {
			b.Fatal("token refused")
		}
	}
}
