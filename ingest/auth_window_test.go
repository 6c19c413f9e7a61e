package ingest

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/redact"
)

// TestSignatureWindowMatchesTheLibrary: the check made before the body is
// read must not refuse what the Standard Webhooks library would accept. The
// library accepts a timestamp exactly signatureTolerance away from now on
// either side, so the pre-check does too, and refuses one second beyond.
func TestSignatureWindowMatchesTheLibrary(t *testing.T) {
	a, err := newAuthenticator(Config{WebhookSecrets: []redact.Secret{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 32)
	_, _ = rand.Read(sig)
	ts := time.Unix(1_790_000_000, 0)
	h := http.Header{}
	h.Set("webhook-id", "msg-1")
	h.Set("webhook-timestamp", fmt.Sprint(ts.Unix()))
	h.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(sig))
	for _, tc := range []struct {
		name string
		now  time.Time
		want bool
	}{
		{"now", ts, true},
		{"timestamp exactly the tolerance old", ts.Add(signatureTolerance), true},
		{"timestamp exactly the tolerance ahead", ts.Add(-signatureTolerance), true},
		{"timestamp a second too old", ts.Add(signatureTolerance + time.Second), false},
		{"timestamp a second too far ahead", ts.Add(-signatureTolerance - time.Second), false},
	} {
		if got := a.mightBeSigned(h, tc.now); got != tc.want {
			t.Errorf("%s: mightBeSigned = %v, want %v", tc.name, got, tc.want)
		}
	}
}
