package ingest_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/sources"
)

// Secrets of ../sources/testdata/sources.yaml in these tests.
var sourceSecrets = map[string]string{
	"HUBSPOT_CLIENT_SECRET":       "hubspot-client-secret-for-tests",
	"CRM_WEBHOOK_SECRET":          "crm-new-secret",
	"CRM_WEBHOOK_SECRET_PREVIOUS": "It's a Secret to Everybody",
	"CRM_SW_SECRET":               "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	"BUS_TOKEN":                   "bus-token-0123456789abcdef",
}

// Skipcall contacts HubSpot's objectIds 123 and 456 map to.
const (
	skipAda    = "0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c"
	skipLondon = "1c8f5d7b-2a3e-4f4b-8c9d-8e7f6a5b4c3d"
)

// sourceStack is a pbtest stack with an ingest that serves the test sources.
type sourceStack struct {
	*pbtest.Stack
	URL      string
	Contacts *sources.ContactMap // nil when the stack was started with another map
	Reg      *prometheus.Registry
}

func startSources(t *testing.T) *sourceStack {
	t.Helper()
	return startSourcesWith(t, nil)
}

// startSourcesWith is startSources with contacts as the contact map; nil
// means the stack's NATS KV contact map.
func startSourcesWith(t *testing.T, contacts ingest.ContactLookup) *sourceStack {
	t.Helper()
	s := pbtest.Start(t, pbtest.Options{})
	env := sources.Env{
		LookupEnv: func(k string) (string, bool) { v, ok := sourceSecrets[k]; return v, ok },
		ReadFile:  os.ReadFile,
	}
	set, err := sources.Load("../sources/testdata/sources.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	h, err := ingest.New(pbtest.IngestConfig(), s.JS, s.Stream.EventsStream, s.Stream.SubjectPrefix, s.Log, reg)
	if err != nil {
		t.Fatal(err)
	}
	var cm *sources.ContactMap
	if contacts == nil {
		if cm, err = sources.OpenContactMap(context.Background(), s.JS, sources.DefaultContactsBucket, 1); err != nil {
			t.Fatal(err)
		}
		contacts = cm
	}
	if err := h.MountSources(set, contacts, reg); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &sourceStack{Stack: s, URL: srv.URL, Contacts: cm, Reg: reg}
}

// stored returns how many events the events stream has stored in all
// (its last sequence: the worker's acks remove messages from a work queue).
func (s *sourceStack) stored() uint64 {
	s.T.Helper()
	str, err := s.JS.Stream(context.Background(), s.Stream.EventsStream)
	if err != nil {
		s.T.Fatal(err)
	}
	info, err := str.Info(context.Background())
	if err != nil {
		s.T.Fatal(err)
	}
	return info.State.LastSeq
}

// do sends a request and returns status, headers and body.
func (s *sourceStack) do(method, path string, body []byte, hdr http.Header) (int, http.Header, []byte) {
	s.T.Helper()
	req, err := http.NewRequest(method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		s.T.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.T.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// hubspotHeaders signs body as HubSpot does, with the standard library
// only: base64(HMAC-SHA256(secret, "POST" + URL HubSpot called + body + ts)).
func hubspotHeaders(secret string, body []byte, at time.Time) http.Header {
	ts := strconv.FormatInt(at.UnixMilli(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("POST" + "https://hooks.example.com/v1/sources/hubspot"))
	m.Write(body)
	m.Write([]byte(ts))
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-HubSpot-Signature-v3", base64.StdEncoding.EncodeToString(m.Sum(nil)))
	h.Set("X-HubSpot-Request-Timestamp", ts)
	return h
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../sources/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func importContacts(t *testing.T, cm *sources.ContactMap, csv string) {
	t.Helper()
	if _, err := cm.ImportCSV(context.Background(), strings.NewReader(csv)); err != nil {
		t.Fatal(err)
	}
}

func skipcallHas(s *pbtest.Stack, id string, want map[string]any) func() bool {
	return func() bool {
		c, ok := s.Skipcall.Contact(id)
		if !ok {
			return false
		}
		for k, v := range want {
			if c[k] != v {
				return false
			}
		}
		return true
	}
}

// TestHubSpotBatchBecomesSkipcallPatches posts testdata/hubspot.json, signed
// like HubSpot, and checks the PATCHes the sandbox Skipcall received and the
// contacts' state; HubSpot's retry of the batch is stored once.
func TestHubSpotBatchBecomesSkipcallPatches(t *testing.T) {
	s := startSources(t)
	s.Skipcall.PutContact(skipAda, map[string]any{"firstName": "Augusta"})
	s.Skipcall.PutContact(skipLondon, map[string]any{"city": "Paris"})
	importContacts(t, s.Contacts, "source,target,source_id,provider_id\nhubspot,skipcall,123,"+skipAda+"\nhubspot,skipcall,456,"+strings.ToUpper(skipLondon)+"\n")
	s.StartWorker(pbtest.WorkerConfig())

	body := readTestdata(t, "hubspot.json")
	hdr := hubspotHeaders(sourceSecrets["HUBSPOT_CLIENT_SECRET"], body, time.Now())
	t.Logf("POST /v1/sources/hubspot\nX-HubSpot-Request-Timestamp: %s\nX-HubSpot-Signature-v3: %s\n%s",
		hdr.Get("X-HubSpot-Request-Timestamp"), hdr.Get("X-HubSpot-Signature-v3"), body)
	code, _, resp := s.do("POST", "/v1/sources/hubspot", body, hdr)
	if code != http.StatusAccepted {
		t.Fatalf("status %d: %s", code, resp)
	}
	t.Logf("answer: %d %s", code, resp)
	var acc ingest.SourcesAccepted
	if err := json.Unmarshal(resp, &acc); err != nil {
		t.Fatal(err)
	}
	if acc.Accepted.Accepted != 3 || len(acc.Unmapped) != 0 || acc.Events[0].ID != "hubspot:1001" || acc.Events[2].ID != "hubspot:1003" {
		t.Fatalf("answer %+v", acc)
	}
	pbtest.Eventually(t, 30*time.Second, "Ada Lovelace at Skipcall", skipcallHas(s.Stack, skipAda, map[string]any{"firstName": "Ada", "lastName": "Lovelace"}))
	pbtest.Eventually(t, 30*time.Second, "London at Skipcall", skipcallHas(s.Stack, skipLondon, map[string]any{"city": "London"}))
	patches := map[string][]string{}
	for _, r := range s.Skipcall.Requests() {
		if r.Method == http.MethodPatch {
			t.Logf("sandbox Skipcall got: %s %s %s -> %d", r.Method, r.Path, r.Body, r.Status)
			if r.SpecErr != "" {
				t.Errorf("PATCH %s fails the seed OpenAPI: %s", r.Path, r.SpecErr)
			}
			patches[r.Path] = append(patches[r.Path], string(r.Body))
		}
	}
	if got := patches["/v1/contacts/"+skipLondon]; len(got) != 1 || got[0] != `{"city":"London"}` {
		t.Errorf("PATCHes of contact 456: %q", got)
	}
	if len(patches) != 2 {
		t.Errorf("PATCHed %d contacts, want 2 (the contact.creation item maps to nothing)", len(patches))
	}

	// HubSpot retries the same batch (new timestamp, new signature): stored once.
	code, _, resp = s.do("POST", "/v1/sources/hubspot", body, hubspotHeaders(sourceSecrets["HUBSPOT_CLIENT_SECRET"], body, time.Now()))
	if code != http.StatusAccepted || strings.Count(string(resp), `"duplicate":true`) != 3 {
		t.Fatalf("retry: %d %s", code, resp)
	}
	if n := s.stored(); n != 3 {
		t.Fatalf("events stream holds %d messages after a retried batch, want 3", n)
	}
}

// TestUnmappedContactDeadLetteredThenReplayed: an event whose source contact
// id has no mapping is dead-lettered (202), replay says it is still unmapped,
// and after the mapping is imported replay publishes the mapped event.
func TestUnmappedContactDeadLetteredThenReplayed(t *testing.T) {
	s := startSources(t)
	s.Skipcall.PutContact(skipAda, map[string]any{"firstName": "Augusta"})
	s.Skipcall.PutContact(skipLondon, map[string]any{"city": "Paris"})
	importContacts(t, s.Contacts, "hubspot,skipcall,123,"+skipAda+"\n")
	s.StartWorker(pbtest.WorkerConfig())

	body := readTestdata(t, "hubspot.json")
	for range 2 { // the second post is HubSpot's retry: one letter
		code, _, resp := s.do("POST", "/v1/sources/hubspot", body, hubspotHeaders(sourceSecrets["HUBSPOT_CLIENT_SECRET"], body, time.Now()))
		if code != http.StatusAccepted || !strings.Contains(string(resp), `"unmapped":[{"id":"hubspot:1003","source_contact_id":"456"}]`) {
			t.Fatalf("status %d: %s", code, resp)
		}
	}
	if n := s.StreamMsgs(s.Stream.DLQStream); n != 1 {
		t.Fatalf("DLQ holds %d letters, want 1", n)
	}
	if n := s.stored(); n != 2 {
		t.Fatalf("events stream holds %d, want 2", n)
	}
	if got := testutil.ToFloat64(counter(t, s.Reg, "patchbay_ingest_source_unmapped_total", "hubspot")); got != 2 {
		t.Fatalf("unmapped counter %v, want 2", got)
	}
	ctx := context.Background()
	store := dlq.NewStore(s.JS, s.Stream.DLQStream, s.Stream.SubjectPrefix)
	store.SetResolver(&sources.Resolver{Prefix: s.Stream.SubjectPrefix, Open: func(context.Context) (*sources.ContactMap, error) { return s.Contacts, nil }})
	letters, err := store.ListSubject(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	l := letters[0]
	if l.Reason != dlq.ReasonUnmapped || l.Source != "hubspot" || l.SourceContactID != "456" || l.EventID != "hubspot:1003" ||
		l.Target != "skipcall" || l.DLQTopic != "contacts.dlq.skipcall.unmapped" {
		t.Fatalf("letter %+v", l)
	}
	if err := store.ReplayOne(ctx, l.DLQSeq, []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "unmapped") {
		t.Fatalf("replay of an unmapped letter with a payload: %v", err)
	}
	if err := store.ReplayOne(ctx, l.DLQSeq, nil); !errors.Is(err, dlq.ErrStillUnmapped) {
		t.Fatalf("replay before the mapping exists: %v", err)
	}
	if n := s.StreamMsgs(s.Stream.DLQStream); n != 1 {
		t.Fatalf("the letter left the DLQ although still unmapped")
	}
	importContacts(t, s.Contacts, "hubspot,skipcall,456,"+skipLondon+"\n")
	if err := store.ReplayOne(ctx, l.DLQSeq, nil); err != nil {
		t.Fatal(err)
	}
	pbtest.Eventually(t, 30*time.Second, "London at Skipcall after replay", skipcallHas(s.Stack, skipLondon, map[string]any{"city": "London"}))
	if n := s.StreamMsgs(s.Stream.DLQStream); n != 0 {
		t.Fatalf("DLQ holds %d letters after replay", n)
	}
	// HubSpot retries once more: the replayed event has the same id, stored once.
	code, _, resp := s.do("POST", "/v1/sources/hubspot", body, hubspotHeaders(sourceSecrets["HUBSPOT_CLIENT_SECRET"], body, time.Now()))
	if code != http.StatusAccepted || strings.Count(string(resp), `"duplicate":true`) != 3 {
		t.Fatalf("retry after replay: %d %s", code, resp)
	}
	if n := s.stored(); n != 3 {
		t.Fatalf("events stream holds %d, want 3", n)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name, source string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "source" && lp.GetValue() == source {
					return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x"}, func() float64 { return m.GetCounter().GetValue() })
				}
			}
		}
	}
	t.Fatalf("no metric %s{source=%q}", name, source)
	return nil
}

// TestSourceAuthFailures: each failed check is a 401 that says nothing of
// which check failed, publishes nothing, and counts by source.
func TestSourceAuthFailures(t *testing.T) {
	s := startSources(t)
	importContacts(t, s.Contacts, "hubspot,skipcall,123,"+skipAda+"\nhubspot,skipcall,456,"+skipLondon+"\n")
	body := readTestdata(t, "hubspot.json")
	secret := sourceSecrets["HUBSPOT_CLIENT_SECRET"]
	tampered := bytes.Replace(body, []byte("Lovelace"), []byte("Lovelacf"), 1)
	noSig := hubspotHeaders(secret, body, time.Now())
	noSig.Del("X-HubSpot-Signature-v3")
	cases := []struct {
		name string
		body []byte
		hdr  http.Header
	}{
		{"tampered body", tampered, hubspotHeaders(secret, body, time.Now())},
		{"wrong secret", body, hubspotHeaders("not-the-secret", body, time.Now())},
		{"stale timestamp", body, hubspotHeaders(secret, body, time.Now().Add(-6*time.Minute))},
		{"no signature", body, noSig},
	}
	var first []byte
	for _, tc := range cases {
		code, _, resp := s.do("POST", "/v1/sources/hubspot", tc.body, tc.hdr)
		if code != http.StatusUnauthorized {
			t.Fatalf("%s: %d %s", tc.name, code, resp)
		}
		if first == nil {
			first = resp
		} else if !bytes.Equal(resp, first) {
			t.Errorf("%s: answer %s differs from %s: it hints at which check failed", tc.name, resp, first)
		}
	}
	if got := testutil.ToFloat64(counter(t, s.Reg, "patchbay_ingest_source_auth_failures_total", "hubspot")); got != float64(len(cases)) {
		t.Fatalf("auth failure counter %v, want %d", got, len(cases))
	}
	if got := testutil.ToFloat64(counter(t, s.Reg, "patchbay_ingest_source_auth_failures_total", "crm")); got != 0 {
		t.Fatalf("crm auth failure counter %v, want 0", got)
	}
	if n := s.stored() + s.StreamMsgs(s.Stream.DLQStream); n != 0 {
		t.Fatalf("%d messages stored from refused requests", n)
	}
	// The good request still passes (the test can fail the other way).
	if code, _, resp := s.do("POST", "/v1/sources/hubspot", body, hubspotHeaders(secret, body, time.Now())); code != http.StatusAccepted {
		t.Fatalf("signed request: %d %s", code, resp)
	}
}

// TestStandardWebhooksClientToSource: a client built from the official
// Standard Webhooks library delivers a CRM's JSON to RevyOps; a replayed
// webhook-id is stored once.
func TestStandardWebhooksClientToSource(t *testing.T) {
	s := startSources(t)
	s.RevyOps.PutContact(42, map[string]any{"first_name": "Ada"})
	s.StartWorker(pbtest.WorkerConfig())
	wh, err := standardwebhooks.NewWebhook(sourceSecrets["CRM_SW_SECRET"])
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"contact":{"revyops_id":42,"first_name":"Grace"},"updated_at":"2026-11-25T10:00:00Z"}`)
	send := func() (int, []byte) {
		now := time.Now()
		sig, err := wh.Sign("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now, body)
		if err != nil {
			t.Fatal(err)
		}
		hdr := http.Header{}
		hdr.Set("Content-Type", "application/json")
		hdr.Set("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
		hdr.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		hdr.Set("webhook-signature", sig)
		code, _, resp := s.do("POST", "/v1/sources/crm-sw", body, hdr)
		return code, resp
	}
	if code, resp := send(); code != http.StatusAccepted || !strings.Contains(string(resp), `"id":"crm-sw:msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"`) {
		t.Fatalf("%d %s", code, resp)
	}
	pbtest.Eventually(t, 30*time.Second, "Grace at RevyOps", func() bool {
		c, ok := s.RevyOps.Contact(42)
		return ok && c["first_name"] == "Grace"
	})
	if code, resp := send(); code != http.StatusAccepted || !strings.Contains(string(resp), `"duplicate":true`) {
		t.Fatalf("replayed delivery: %d %s", code, resp)
	}
	if n := s.stored(); n != 1 {
		t.Fatalf("events stream holds %d after a replayed webhook-id, want 1", n)
	}
}

// TestCloudEventsSDKClientToSource: a client built from the CloudEvents SDK
// delivers in binary and structured mode; a batch goes in too; ce-id is the
// event id and ce-time the occurred_at.
func TestCloudEventsSDKClientToSource(t *testing.T) {
	s := startSources(t)
	s.Skipcall.PutContact(skipAda, map[string]any{"firstName": "Augusta"})
	s.Skipcall.PutContact(skipLondon, map[string]any{"city": "Paris"})
	s.StartWorker(pbtest.WorkerConfig())
	p, err := cehttp.New(cehttp.WithTarget(s.URL+"/v1/sources/bus"), cehttp.WithHeader("Authorization", "Bearer "+sourceSecrets["BUS_TOKEN"]))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cloudevents.NewClient(p)
	if err != nil {
		t.Fatal(err)
	}
	send := func(ctx context.Context, id string, data map[string]any) {
		t.Helper()
		e := cloudevents.NewEvent()
		e.SetID(id)
		e.SetSource("urn:example:billing")
		e.SetType("com.example.contact.changed")
		e.SetTime(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
		if err := e.SetData(cloudevents.ApplicationJSON, data); err != nil {
			t.Fatal(err)
		}
		res := c.Send(ctx, e)
		var hr *cehttp.Result
		if !cloudevents.IsACK(res) || !cloudevents.ResultAs(res, &hr) || hr.StatusCode != http.StatusAccepted {
			t.Fatalf("send %s: %v", id, res)
		}
	}
	ctx := context.Background()
	send(ctx, "ce-1", map[string]any{"target": "skipcall", "contact_id": skipAda, "patch": map[string]any{"firstName": "Ada"}})
	send(cloudevents.WithEncodingStructured(ctx), "ce-2", map[string]any{"target": "skipcall", "contact_id": skipLondon, "patch": map[string]any{"city": "London"}})
	send(ctx, "ce-1", map[string]any{"target": "skipcall", "contact_id": skipAda, "patch": map[string]any{"firstName": "Ada"}}) // retry
	pbtest.Eventually(t, 30*time.Second, "both contacts at Skipcall", func() bool {
		return skipcallHas(s.Stack, skipAda, map[string]any{"firstName": "Ada"})() && skipcallHas(s.Stack, skipLondon, map[string]any{"city": "London"})()
	})
	batch := `[{"specversion":"1.0","id":"ce-3","source":"urn:x","type":"t","time":"2026-11-25T11:00:00Z","data":{"target":"skipcall","contact_id":"` + skipAda + `","patch":{"role":"Countess"}}},
	           {"specversion":"1.0","id":"ce-4","source":"urn:x","type":"t","time":"2026-11-25T11:00:01Z","data":{"target":"skipcall","contact_id":"` + skipAda + `","patch":{"company":"Analytical Engines"}}}]`
	hdr := http.Header{"Content-Type": {sources.MediaCloudEventsBatch}, "Authorization": {"Bearer " + sourceSecrets["BUS_TOKEN"]}}
	if code, _, resp := s.do("POST", "/v1/sources/bus", []byte(batch), hdr); code != http.StatusAccepted {
		t.Fatalf("batch: %d %s", code, resp)
	}
	pbtest.Eventually(t, 30*time.Second, "batch applied", skipcallHas(s.Stack, skipAda, map[string]any{"role": "Countess", "company": "Analytical Engines"}))
	if n := s.stored(); n != 4 {
		t.Fatalf("events stream holds %d, want 4 (ce-1 retried once)", n)
	}
	// One invalid event in a batch: nothing stored, 422 naming the field.
	bad := strings.Replace(batch, `"role":"Countess"`, `"rôle":"Countess"`, 1)
	bad = strings.ReplaceAll(bad, `"ce-3"`, `"ce-5"`)
	bad = strings.ReplaceAll(bad, `"ce-4"`, `"ce-6"`)
	code, _, resp := s.do("POST", "/v1/sources/bus", []byte(bad), hdr)
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(resp), `"field":"data.patch"`) || !strings.Contains(string(resp), "patch.rôle: unknown field") {
		t.Fatalf("bad batch: %d %s", code, resp)
	}
	if n := s.stored(); n != 4 {
		t.Fatalf("events stream holds %d after a refused batch, want 4", n)
	}
}

func TestSourceHTTPEdges(t *testing.T) {
	s := startSources(t)
	// CloudEvents webhook validation handshake.
	code, h, _ := s.do("OPTIONS", "/v1/sources/bus", nil, http.Header{"Webhook-Request-Origin": {"eventemitter.example.com"}})
	if code != http.StatusOK || h.Get("WebHook-Allowed-Origin") != "eventemitter.example.com" || h.Get("Allow") != "POST" {
		t.Fatalf("OPTIONS: %d %v", code, h)
	}
	if code, _, _ := s.do("OPTIONS", "/v1/sources/nope", nil, http.Header{"Webhook-Request-Origin": {"x"}}); code != http.StatusNotFound {
		t.Fatalf("OPTIONS unknown source: %d", code)
	}
	if code, _, _ := s.do("POST", "/v1/sources/nope", []byte(`{}`), nil); code != http.StatusNotFound {
		t.Fatalf("POST unknown source: %d", code)
	}
	if code, h, _ := s.do("GET", "/v1/sources/bus", nil, nil); code != http.StatusMethodNotAllowed || h.Get("Allow") != "POST, OPTIONS" {
		t.Fatalf("GET: %d %v", code, h)
	}
	bearer := http.Header{"Authorization": {"Bearer " + sourceSecrets["BUS_TOKEN"]}, "Content-Type": {"text/plain"}}
	if code, _, resp := s.do("POST", "/v1/sources/bus", []byte(`{}`), bearer); code != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain: %d %s", code, resp)
	}
	// GitHub-style signature over HTTP, with the previous secret (rotation);
	// a body mapping to an invalid event is a 422 naming the source field.
	body := []byte(`{"contact":{"revyops_id":"abc","first_name":"Grace"},"updated_at":"2026-11-25T10:00:00Z"}`)
	m := hmac.New(sha256.New, []byte(sourceSecrets["CRM_WEBHOOK_SECRET_PREVIOUS"]))
	m.Write(body)
	hdr := http.Header{"Content-Type": {"application/json"}, "X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(m.Sum(nil))}, "X-Delivery-Id": {"d-1"}}
	code, _, resp := s.do("POST", "/v1/sources/crm", body, hdr)
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(resp), `"field":"contact.revyops_id"`) ||
		!strings.Contains(string(resp), `urn:patchbay:problem:invalid-event`) {
		t.Fatalf("invalid mapped event: %d %s", code, resp)
	}
	if n := s.stored(); n != 0 {
		t.Fatalf("%d events stored", n)
	}
	// The README's CRM example, applied at the sandbox RevyOps.
	s.RevyOps.PutContact(42, map[string]any{"first_name": "Ada"})
	s.StartWorker(pbtest.WorkerConfig())
	body = []byte(`{"contact":{"revyops_id":42,"first_name":"Grace","company_domain":"acme.com"},"updated_at":"2026-11-25T10:00:00Z"}`)
	m = hmac.New(sha256.New, []byte(sourceSecrets["CRM_WEBHOOK_SECRET"]))
	m.Write(body)
	hdr.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	if code, _, resp := s.do("POST", "/v1/sources/crm", body, hdr); code != http.StatusAccepted {
		t.Fatalf("CRM example: %d %s", code, resp)
	}
	pbtest.Eventually(t, 30*time.Second, "Grace at RevyOps", func() bool {
		c, ok := s.RevyOps.Contact(42)
		return ok && c["first_name"] == "Grace"
	})
	var patch []string
	for _, r := range s.RevyOps.Requests() {
		if r.Method == http.MethodPatch {
			patch = append(patch, r.Path+"?"+r.RawQuery+" "+string(r.Body))
		}
	}
	if want := `/public/v2/contacts/42?structure=FLAT {"company_id":"acme.com","first_name":"Grace"}`; len(patch) != 1 || patch[0] != want {
		t.Fatalf("RevyOps PATCHes %q, want %q", patch, want)
	}
}
