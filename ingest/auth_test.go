package ingest_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/redact"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// slowRequest opens a connection to the ingest server, sends a POST with
// the given headers announcing a body of bodyLen bytes, sends only the
// first 10, and returns the connection with the rest unsent.
func slowRequest(t *testing.T, base string, hdr map[string]string, bodyLen int) net.Conn {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "POST /v1/events HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", u.Host, bodyLen)
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n[{\"id\":\"x\"")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	return c
}

// answer reads the status code of the response on c, or returns 0 when the
// server closed the connection without one; it fails the test when nothing
// comes within d.
func answer(t *testing.T, c net.Conn, d time.Duration) int {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("no answer within %s: the server is still waiting for the body", d)
		}
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// plausible returns Standard Webhooks headers that pass every check that
// needs no body: a fresh timestamp and a well-formed (but wrong) signature.
func plausible(id string) map[string]string {
	sig := make([]byte, 32)
	_, _ = rand.Read(sig)
	return map[string]string{
		"webhook-id":        id,
		"webhook-timestamp": fmt.Sprint(time.Now().Unix()),
		"webhook-signature": "v1," + base64.StdEncoding.EncodeToString(sig),
	}
}

// TestUnauthenticatedRefusedBeforeBody: with webhook secrets configured, a
// request whose credentials can be refused from its headers is answered 401
// without waiting for its body (the test server has no read timeout, so a
// server that reads first never answers).
func TestUnauthenticatedRefusedBeforeBody(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{Ingest: func(c *ingest.Config) { c.WebhookSecrets = []redact.Secret{testSecret} }})
	stale := plausible("stale")
	stale["webhook-timestamp"] = fmt.Sprint(time.Now().Add(-time.Hour).Unix())
	future := plausible("future")
	future["webhook-timestamp"] = fmt.Sprint(time.Now().Add(time.Hour).Unix())
	badTS := plausible("bad-ts")
	badTS["webhook-timestamp"] = "10abc"
	badSig := plausible("bad-sig")
	badSig["webhook-signature"] = "v1,not-base64!"
	shortSig := plausible("short-sig")
	shortSig["webhook-signature"] = "v1," + base64.StdEncoding.EncodeToString([]byte("short"))
	noID := plausible("")
	delete(noID, "webhook-id")
	for _, tc := range []struct {
		name string
		hdr  map[string]string
	}{
		{"no credentials", nil},
		{"wrong bearer token", map[string]string{"Authorization": "Bearer wrong-token-0123456789"}},
		{"stale timestamp", stale},
		{"timestamp in the future", future},
		{"timestamp not an integer", badTS},
		{"signature not base64", badSig},
		{"signature of the wrong length", shortSig},
		{"no webhook-id", noID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := slowRequest(t, s.Ingest.URL, tc.hdr, 500000)
			if code := answer(t, c, 10*time.Second); code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", code)
			}
		})
	}
}

// TestSignedReadsBounded: requests that may be signed are read under their
// own bounds and never hold an in-flight slot before the signature
// verifies, so slow unauthenticated senders cannot shed bearer clients.
func TestSignedReadsBounded(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{Ingest: func(c *ingest.Config) {
		c.WebhookSecrets = []redact.Secret{testSecret}
		c.MaxInFlight = 1
		c.MaxUnverified = 2
		c.SignedMaxBodyBytes = 4096
		c.SignedReadTimeout = 5 * time.Second
	}})
	// Six slow senders for two unverified places: at least four are shed.
	var slow []net.Conn
	for i := range 6 {
		slow = append(slow, slowRequest(t, s.Ingest.URL, plausible(fmt.Sprint("slow-", i)), 4000))
	}
	// Meanwhile the single in-flight slot is free for an authenticated client.
	if code, body := s.Post(mustJSON(t, skipEvent("bearer-during-slow")), nil); code != http.StatusAccepted {
		t.Fatalf("bearer client while slow signed requests are pending: %d %s", code, body)
	}
	// The shed ones get 503 at once; the others are cut off by
	// SignedReadTimeout (the test server has no read timeout of its own).
	start := time.Now()
	shed := 0
	for i, c := range slow {
		switch code := answer(t, c, 30*time.Second); code {
		case http.StatusServiceUnavailable:
			shed++
		case http.StatusAccepted:
			t.Fatalf("slow request %d accepted", i)
		}
	}
	t.Logf("%d of %d slow signed requests shed, the rest cut off after %s", shed, len(slow), time.Since(start).Round(time.Millisecond))
	if shed < len(slow)-2 {
		t.Fatalf("%d slow signed requests shed, want at least %d (MAX_UNVERIFIED=2)", shed, len(slow)-2)
	}

	// Larger than the signed bound: 413, announced or streamed.
	if code := answer(t, slowRequest(t, s.Ingest.URL, plausible("big"), 5000), 10*time.Second); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("announced 5000-byte signed body: %d, want 413", code)
	}
	req, _ := http.NewRequest(http.MethodPost, s.Ingest.URL+"/v1/events", io.MultiReader(strings.NewReader("["), strings.NewReader(strings.Repeat(" ", 8000)), strings.NewReader("]")))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	for k, v := range plausible("big-streamed") {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("streamed 8000-byte signed body: %d, want 413", resp.StatusCode)
	}
	// The pool is free again: a correctly signed request is accepted.
	body := mustJSON(t, skipEvent("signed-after"))
	h := sign(t, testSecret, "signed-after", time.Now(), body)
	h.Set("Content-Type", "application/json")
	req, _ = http.NewRequest(http.MethodPost, s.Ingest.URL+"/v1/events", strings.NewReader(string(body)))
	req.Header = h
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("valid signature after the attack: %d", resp.StatusCode)
	}
}

// TestReadyzHidesDetail: the public /readyz says only that ingest is not
// ready; Ready (served on the admin listener) says why.
func TestReadyzHidesDetail(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	h, err := ingest.New(pbtest.IngestConfig(), s.JS, s.Stream.EventsStream, s.Stream.SubjectPrefix, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Ready(context.Background()); err != nil {
		t.Fatalf("ready with NATS up: %v", err)
	}
	s.NATS.Shutdown()
	resp, err := http.Get(s.Ingest.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz %d with NATS down", resp.StatusCode)
	}
	for _, leak := range []string{s.Stream.EventsStream, "JetStream", "nats", "connection"} {
		if strings.Contains(strings.ToLower(string(b)), strings.ToLower(leak)) {
			t.Errorf("public readyz tells %q: %s", leak, b)
		}
	}
	err = h.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), s.Stream.EventsStream) {
		t.Fatalf("Ready with NATS down: %v, want the stream named", err)
	}
}

func TestConfigRefusesPlaceholders(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*ingest.Config)
		bad  bool
	}{
		{"random token", func(c *ingest.Config) { c.Tokens = []redact.Secret{"9f2c4e1a7b3d5f60819a2b3c4d5e6f70"} }, false},
		{"deploy sample token", func(c *ingest.Config) { c.Tokens = []redact.Secret{"replace-with-a-long-random-token"} }, true},
		{"changeme", func(c *ingest.Config) { c.Tokens = []redact.Secret{"changeme-changeme-changeme"} }, true},
		{"placeholder among real ones", func(c *ingest.Config) {
			c.Tokens = []redact.Secret{"9f2c4e1a7b3d5f60819a2b3c4d5e6f70", "your-token-goes-here-please"}
		}, true},
		{"placeholder webhook secret", func(c *ingest.Config) { c.WebhookSecrets = []redact.Secret{"whsec_replace_me"} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := pbtest.IngestConfig()
			tc.set(&c)
			err := c.Validate()
			if (err != nil) != tc.bad {
				t.Fatalf("Validate: %v, want error: %v", err, tc.bad)
			}
			if err != nil && strings.Contains(err.Error(), "replace") {
				t.Fatalf("the error repeats the secret: %v", err)
			}
		})
	}
}
