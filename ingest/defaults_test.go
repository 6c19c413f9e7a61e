package ingest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/redact"
)

// TestNilLoggerIsAllowed: New documents nothing about the logger being
// required, and callers pass nil when they want no logs. A handler built
// with a nil logger must still answer on the paths that log: /readyz with
// NATS down logs at debug and answers 503 (not a panic and a reset
// connection).
func TestNilLoggerIsAllowed(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	h, err := ingest.New(pbtest.IngestConfig(), s.JS, s.Stream.EventsStream, s.Stream.SubjectPrefix, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s.NATS.Shutdown()
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatalf("readyz with NATS down and a nil logger: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz with NATS down and a nil logger: %d, want 503", resp.StatusCode)
	}
}

// TestIdempotencyKeyNamesASingleEvent: README's field table lets a single
// event take its id from the Idempotency-Key header when it has none (as
// from webhook-id); the answer names that id and a repeat is a duplicate.
func TestIdempotencyKeyNamesASingleEvent(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	ev := skipEvent("unused")
	delete(ev, "id")
	for i, wantDup := range []bool{false, true} {
		code, b := s.Post(mustJSON(t, ev), map[string]string{"Idempotency-Key": "idem-key-1"})
		if code != http.StatusAccepted {
			t.Fatalf("post %d with Idempotency-Key and no id: %d %s, want 202", i, code, b)
		}
		var acc ingest.Accepted
		if err := json.Unmarshal(b, &acc); err != nil {
			t.Fatal(err)
		}
		if len(acc.Events) != 1 || acc.Events[0].ID != "idem-key-1" || acc.Events[0].Duplicate != wantDup {
			t.Fatalf("post %d: %s, want id idem-key-1 with duplicate %v", i, b, wantDup)
		}
	}
}

// TestSixteenCharacterTokenIsLongEnough: bearer tokens must be at least 16
// characters, so 16 is accepted and 15 refused.
func TestSixteenCharacterTokenIsLongEnough(t *testing.T) {
	cfg := pbtest.IngestConfig()
	cfg.Tokens = []redact.Secret{"0123456789abcdef"}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a 16-character token: %v", err)
	}
	cfg.Tokens = []redact.Secret{"0123456789abcde"}
	if err := cfg.Validate(); err == nil {
		t.Fatal("a 15-character token was accepted")
	}
}

// TestUnverifiedBoundsDefault: a Config built in code may leave the bounds
// of unverified reads zero (SignedMaxBodyBytes, SignedReadTimeout,
// MaxUnverified); New fills their defaults, so webhook secrets work without
// them and a signed request is accepted.
func TestUnverifiedBoundsDefault(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	cfg := pbtest.IngestConfig()
	cfg.WebhookSecrets = []redact.Secret{testSecret}
	cfg.SignedMaxBodyBytes, cfg.SignedReadTimeout, cfg.MaxUnverified = 0, 0, 0
	h, err := ingest.New(cfg, s.JS, s.Stream.EventsStream, s.Stream.SubjectPrefix, nil, nil)
	if err != nil {
		t.Fatalf("New with the unverified bounds left zero: %v", err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	body := mustJSON(t, skipEvent("defaults-signed"))
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/events", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = sign(t, testSecret, "defaults-signed", time.Now(), body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("signed request with default bounds: %d, want 202", resp.StatusCode)
	}
}
