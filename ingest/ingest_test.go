package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/redact"
)

const skipID = "3f1c2a9e-8b7d-4c6e-9a5f-1b2c3d4e5f60"

func skipEvent(id string) map[string]any {
	return map[string]any{
		"id": id, "target": "skipcall", "contact_id": skipID, "occurred_at": "2026-11-25T10:00:00Z",
		"patch": map[string]any{"firstName": "Ada", "city": "Paris"},
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIngestAcceptsAndStores(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	code, body := s.Post(mustJSON(t, skipEvent("evt-1")), nil)
	if code != http.StatusAccepted {
		t.Fatalf("status %d: %s", code, body)
	}
	var acc ingest.Accepted
	if err := json.Unmarshal(body, &acc); err != nil {
		t.Fatal(err)
	}
	if acc.Accepted != 1 || acc.Events[0].ID != "evt-1" || acc.Events[0].Seq == 0 || acc.Events[0].Duplicate {
		t.Fatalf("unexpected answer %+v", acc)
	}
	if n := s.StreamMsgs(s.Stream.EventsStream); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
	// The same id again is acknowledged as a duplicate and not stored twice.
	code, body = s.Post(mustJSON(t, skipEvent("evt-1")), nil)
	if code != http.StatusAccepted || !strings.Contains(string(body), `"duplicate":true`) {
		t.Fatalf("retry: %d %s", code, body)
	}
	if n := s.StreamMsgs(s.Stream.EventsStream); n != 1 {
		t.Fatalf("stream holds %d messages after a retried webhook, want 1", n)
	}
}

func TestIngestBatch(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	var batch []map[string]any
	for i := range 50 {
		batch = append(batch, skipEvent(fmt.Sprintf("b-%d", i)))
	}
	code, body := s.Post(mustJSON(t, batch), nil)
	if code != http.StatusAccepted {
		t.Fatalf("status %d: %s", code, body)
	}
	if n := s.StreamMsgs(s.Stream.EventsStream); n != 50 {
		t.Fatalf("stream holds %d, want 50", n)
	}
	// One bad item rejects the whole batch, naming its index.
	batch = []map[string]any{skipEvent("c-0"), skipEvent("c-1")}
	batch[1]["contact_id"] = "not-a-uuid"
	code, body = s.Post(mustJSON(t, batch), nil)
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("status %d: %s", code, body)
	}
	var p ingest.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Errors) != 1 || p.Errors[0].Index != 1 || p.Errors[0].Field != "contact_id" {
		t.Fatalf("problem %+v", p)
	}
	if n := s.StreamMsgs(s.Stream.EventsStream); n != 50 {
		t.Fatalf("a rejected batch stored events: stream holds %d", n)
	}
}

func TestIngestRejectsBadInput(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{Ingest: func(c *ingest.Config) { c.MaxBodyBytes = 4096 }})
	with := func(mut func(m map[string]any)) []byte {
		m := skipEvent("bad-1")
		mut(m)
		return mustJSON(t, m)
	}
	rev := func(mut func(m map[string]any)) []byte {
		m := map[string]any{"id": "r-1", "target": "revyops", "contact_id": 42, "occurred_at": "2026-11-25T10:00:00Z",
			"patch": map[string]any{"first_name": "Ada"}}
		mut(m)
		return mustJSON(t, m)
	}
	cases := []struct {
		name   string
		body   []byte
		ctype  string
		status int
		ptype  string
		field  string
	}{
		{"malformed JSON", []byte(`{"id": "x",`), "", 400, ingest.ProblemMalformed, ""},
		{"unknown target", with(func(m map[string]any) { m["target"] = "hubspot" }), "", 422, ingest.ProblemInvalid, "target"},
		{"non-integer revyops id", rev(func(m map[string]any) { m["contact_id"] = "12a" }), "", 422, ingest.ProblemInvalid, "contact_id"},
		{"negative revyops id", rev(func(m map[string]any) { m["contact_id"] = -3 }), "", 422, ingest.ProblemInvalid, "contact_id"},
		{"non-uuid skipcall id", with(func(m map[string]any) { m["contact_id"] = "42" }), "", 422, ingest.ProblemInvalid, "contact_id"},
		{"wrong field type", with(func(m map[string]any) { m["patch"] = map[string]any{"allowPhoneCalls": "yes"} }), "", 422, ingest.ProblemInvalid, "patch.allowPhoneCalls"},
		{"too long field", with(func(m map[string]any) { m["patch"] = map[string]any{"firstName": strings.Repeat("a", 101)} }), "", 422, ingest.ProblemInvalid, "patch.firstName"},
		{"unknown patch field", with(func(m map[string]any) { m["patch"] = map[string]any{"nickname": "x"} }), "", 422, ingest.ProblemInvalid, "patch.nickname"},
		{"bad phone", with(func(m map[string]any) { m["patch"] = map[string]any{"phoneNumbers": []string{"0612"}} }), "", 422, ingest.ProblemInvalid, "patch.phoneNumbers[0]"},
		{"revyops wrong type", rev(func(m map[string]any) { m["patch"] = map[string]any{"company_id": true} }), "", 422, ingest.ProblemInvalid, "patch.company_id"},
		{"oversized body", mustJSON(t, map[string]any{"pad": strings.Repeat("x", 5000)}), "", 413, ingest.ProblemTooLarge, ""},
		{"wrong content type", with(func(map[string]any) {}), "text/plain", 415, ingest.ProblemMediaType, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.ctype != "" {
				hdr["Content-Type"] = tc.ctype
			}
			code, body := s.Post(tc.body, hdr)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, body)
			}
			var p ingest.Problem
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("body is not problem JSON: %s", body)
			}
			if p.Type != tc.ptype || p.Status != tc.status {
				t.Fatalf("problem %+v", p)
			}
			if tc.field != "" {
				found := false
				for _, fe := range p.Errors {
					found = found || fe.Field == tc.field
				}
				if !found {
					t.Fatalf("no error names %q: %+v", tc.field, p.Errors)
				}
			}
		})
	}
	if n := s.StreamMsgs(s.Stream.EventsStream); n != 0 {
		t.Fatalf("invalid input stored %d events", n)
	}
}

func TestIngestProblemContentType(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	req, _ := http.NewRequest(http.MethodPost, s.Ingest.URL+"/v1/events", strings.NewReader(`[]`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+pbtest.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 422 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("empty batch: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestIngestAuth(t *testing.T) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	s := pbtest.Start(t, pbtest.Options{Ingest: func(c *ingest.Config) { c.WebhookSecrets = []redact.Secret{redact.Secret(secret)} }})
	body := mustJSON(t, skipEvent("signed-1"))
	post := func(h http.Header) int {
		req, _ := http.NewRequest(http.MethodPost, s.Ingest.URL+"/v1/events", bytes.NewReader(body))
		req.Header = h
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	sign := func(id string, ts time.Time, payload []byte) http.Header { return sign(t, secret, id, ts, payload) }
	if c := post(http.Header{}); c != 401 {
		t.Fatalf("no credentials: %d", c)
	}
	if c := post(http.Header{"Authorization": {"Bearer wrong-token-0123456789"}}); c != 401 {
		t.Fatalf("wrong token: %d", c)
	}
	if c := post(sign("signed-1", time.Now(), []byte(`{"tampered":true}`))); c != 401 {
		t.Fatalf("signature over other body: %d", c)
	}
	if c := post(sign("signed-1", time.Now().Add(-time.Hour), body)); c != 401 {
		t.Fatalf("stale signature: %d", c)
	}
	if n := s.StreamMsgs(s.Stream.EventsStream); n != 0 {
		t.Fatalf("unauthenticated requests stored %d events", n)
	}
	if c := post(sign("signed-1", time.Now(), body)); c != 202 {
		t.Fatalf("valid signature: %d", c)
	}
	if c := post(http.Header{"Authorization": {"Bearer " + pbtest.Token}}); c != 202 {
		t.Fatalf("valid token: %d", c)
	}
}

func TestIngestNATSDown(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	s.NATS.Shutdown()
	start := time.Now()
	code, body := s.Post(mustJSON(t, skipEvent("down-1")), nil)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("status %d with JetStream down, want 503: %s", code, body)
	}
	if time.Since(start) > 4*time.Second {
		t.Fatalf("503 took %s; must answer within the publish timeout", time.Since(start))
	}
	resp, err := http.Get(s.Ingest.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("readyz %d with NATS down", resp.StatusCode)
	}
}

// TestBatchNotAcknowledgedIsRefused publishes a batch that JetStream does
// not store: with the events stream gone, every pipelined publish fails
// with no responders, and the request must be answered 503, not 202.
func TestBatchNotAcknowledgedIsRefused(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.JS.DeleteStream(ctx, s.Stream.EventsStream); err != nil {
		t.Fatal(err)
	}
	batch := []map[string]any{skipEvent("lost-1"), skipEvent("lost-2"), skipEvent("lost-3")}
	code, body := s.Post(mustJSON(t, batch), nil)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("status %d for a batch JetStream did not store, want 503: %s", code, body)
	}
	var p ingest.Problem
	if err := json.Unmarshal(body, &p); err != nil || p.Type != ingest.ProblemUnavailable {
		t.Fatalf("problem %+v (%v), want type %s: %s", p, err, ingest.ProblemUnavailable, body)
	}
}

// sign returns Standard Webhooks headers signing payload with secret.
func sign(t *testing.T, secret, id string, ts time.Time, payload []byte) http.Header {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := wh.Sign(id, ts, payload)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", fmt.Sprint(ts.Unix()))
	h.Set("webhook-signature", sig)
	return h
}
