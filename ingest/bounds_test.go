package ingest_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/redact"
	"github.com/patchbay/patchbay/sources"
)

// TestSignedBodyAtTheLimitIsAccepted: SIGNED_MAX_BODY_BYTES is the largest
// signed body accepted, not the first refused. A correctly signed body of
// exactly that size, announced in Content-Length, is accepted (202); one
// byte more is refused with 413.
func TestSignedBodyAtTheLimitIsAccepted(t *testing.T) {
	// Padded with JSON whitespace to a size the configuration accepts.
	body := mustJSON(t, skipEvent("signed-at-limit"))
	body = append(append([]byte("{"), bytes.Repeat([]byte(" "), 2048-len(body))...), body[1:]...)
	s := pbtest.Start(t, pbtest.Options{Ingest: func(c *ingest.Config) {
		c.WebhookSecrets = []redact.Secret{testSecret}
		c.SignedMaxBodyBytes = int64(len(body))
	}})
	post := func(id string, body []byte) int {
		t.Helper()
		h := sign(t, testSecret, id, time.Now(), body)
		h.Set("Content-Type", "application/json")
		req, err := http.NewRequest(http.MethodPost, s.Ingest.URL+"/v1/events", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h
		req.ContentLength = int64(len(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b, _ := io.ReadAll(resp.Body)
			t.Logf("%s: %d %s", id, resp.StatusCode, b)
		}
		return resp.StatusCode
	}
	if code := post("signed-at-limit", body); code != http.StatusAccepted {
		t.Fatalf("signed body of exactly SignedMaxBodyBytes (%d bytes): %d, want 202", len(body), code)
	}
	over := append(bytes.Clone(body), ' ')
	if code := post("signed-at-limit", over); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("signed body one byte over SignedMaxBodyBytes: %d, want 413", code)
	}
}

// TestBearerBodyAtTheLimitIsAccepted: MAX_BODY_BYTES is the largest body a
// bearer client may send; exactly that many bytes, announced in
// Content-Length, are accepted, and one more is refused with 413.
func TestBearerBodyAtTheLimitIsAccepted(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{Ingest: func(c *ingest.Config) { c.MaxBodyBytes = 2048 }})
	body := mustJSON(t, skipEvent("bearer-at-limit"))
	body = append(append([]byte("{"), bytes.Repeat([]byte(" "), 2048-len(body))...), body[1:]...)
	if code, b := s.Post(body, nil); code != http.StatusAccepted {
		t.Fatalf("bearer body of exactly MaxBodyBytes (%d bytes): %d %s, want 202", len(body), code, b)
	}
	over := append(bytes.Clone(body), ' ')
	if code, b := s.Post(over, nil); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("bearer body one byte over MaxBodyBytes: %d %s, want 413", code, b)
	}
}

// TestEmptyBodyIsAProblem: a POST with Content-Length: 0 is bad input,
// answered 400 with a problem document, not a dropped connection.
func TestEmptyBodyIsAProblem(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	code, b := s.Post(nil, nil)
	if code != http.StatusBadRequest || !bytes.Contains(b, []byte(`"status":400`)) {
		t.Fatalf("empty body: %d %s, want a 400 problem", code, b)
	}
}

// TestSourceBodyAtTheLimitIsAccepted: a source's body is read under
// SIGNED_MAX_BODY_BYTES; a body of exactly that size is accepted and one
// byte more is refused with 413.
func TestSourceBodyAtTheLimitIsAccepted(t *testing.T) {
	s := startSources(t)
	limit := pbtest.IngestConfig().SignedMaxBodyBytes
	batch := []byte(`[{"specversion":"1.0","id":"ce-limit","source":"urn:x","type":"t","time":"2026-11-25T11:00:00Z","data":{"target":"skipcall","contact_id":"` + skipAda + `","patch":{"role":"Countess"}}}]`)
	body := append(append([]byte("["), bytes.Repeat([]byte(" "), int(limit)-len(batch))...), batch[1:]...)
	hdr := http.Header{"Content-Type": {sources.MediaCloudEventsBatch}, "Authorization": {"Bearer " + sourceSecrets["BUS_TOKEN"]}}
	if code, _, resp := s.do("POST", "/v1/sources/bus", body, hdr); code != http.StatusAccepted {
		t.Fatalf("source body of exactly SignedMaxBodyBytes (%d bytes): %d %s, want 202", len(body), code, resp)
	}
	if code, _, resp := s.do("POST", "/v1/sources/bus", append(body, ' '), hdr); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("source body one byte over SignedMaxBodyBytes: %d %s, want 413", code, resp)
	}
}
