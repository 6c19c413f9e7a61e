package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/redact"
)

const adminTestToken = "3f9a1c7e5b2d4f608a1b2c3d4e5f6071"

// apiEnv is a NATS stack with dead letters and the worker's admin handler
// serving the dead-letter API behind adminTestToken.
type apiEnv struct {
	s   *pbtest.Stack
	srv *httptest.Server
}

func newAPIEnv(t *testing.T, letters int) *apiEnv {
	t.Helper()
	s := pbtest.Start(t, pbtest.Options{})
	pub := dlq.NewPublisher(s.JS, s.Stream.SubjectPrefix)
	for i := 1; i <= letters; i++ {
		id := fmt.Sprintf("0d0d0d0d-0000-4000-8000-%012d", i)
		l := dlq.Letter{Reason: dlq.ReasonRejected, Status: 400, ErrorCode: "VALIDATION_ERROR", ErrorMessage: "firstName is not allowed",
			Attempts: 1, Stream: s.Stream.EventsStream, StreamSeq: uint64(i), Subject: "contacts.patch.skipcall." + id,
			EventID: fmt.Sprintf("evt-%d", i), Target: "skipcall",
			Data: []byte(fmt.Sprintf(`{"id":"evt-%d","target":"skipcall","contact_id":%q,"occurred_at":"2026-11-25T10:00:00Z","patch":{"firstName":"Ada"}}`, i, id))}
		if i%2 == 0 {
			l.Reason, l.Status, l.ErrorCode, l.ErrorMessage = dlq.ReasonExhausted, 503, "", ""
		}
		if err := pub.Publish(context.Background(), l); err != nil {
			t.Fatal(err)
		}
	}
	a := Admin{Config: AdminConfig{Token: redact.Secret(adminTestToken)}, Registry: NewRegistry(),
		DeadLetters: NewDLQStore(s.JS, s.Stream, "PATCHBAY_CONTACTS"), Log: pbtest.Logger(t)}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return &apiEnv{s: s, srv: srv}
}

func (e *apiEnv) do(t *testing.T, method, path, token string, body any) (*http.Request, *http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	// The request as the router sees it, with its body again.
	vreq, _ := http.NewRequest(method, path, bytes.NewReader(raw))
	vreq.Header = req.Header.Clone()
	return vreq, resp, b
}

// specChecker validates requests and answers against adminapi.yaml and
// records which operations were exercised.
type specChecker struct {
	doc    *openapi3.T
	router routers.Router
	seen   map[string]bool
}

func newSpecChecker(t *testing.T) *specChecker {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(AdminAPISpec)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("adminapi.yaml is not a valid OpenAPI document: %v", err)
	}
	doc.Servers = nil
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &specChecker{doc: doc, router: r, seen: map[string]bool{}}
}

func (c *specChecker) check(t *testing.T, req *http.Request, resp *http.Response, body []byte) {
	t.Helper()
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s is not in adminapi.yaml: %v", req.Method, req.URL, err)
	}
	c.seen[route.Operation.OperationID] = true
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	rin := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if resp.StatusCode < 400 {
		// Requests the API answers as bad are meant not to match the spec.
		if err := openapi3filter.ValidateRequest(context.Background(), rin); err != nil {
			t.Fatalf("%s %s: request does not match adminapi.yaml: %v", req.Method, req.URL, err)
		}
	}
	in := &openapi3filter.ResponseValidationInput{RequestValidationInput: rin, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: opts}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Fatalf("%s %s: %d answer does not match adminapi.yaml: %v\n%s", req.Method, req.URL, resp.StatusCode, err, body)
	}
}

// TestAdminAPIMatchesOpenAPI drives every operation of adminapi.yaml,
// successes and errors, and validates each request and answer against it.
func TestAdminAPIMatchesOpenAPI(t *testing.T) {
	e := newAPIEnv(t, 6)
	c := newSpecChecker(t)
	call := func(method, path string, body any, want int) []byte {
		t.Helper()
		req, resp, b := e.do(t, method, path, adminTestToken, body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
		}
		if want >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s %s: error as %q, want application/problem+json", method, path, resp.Header.Get("Content-Type"))
		}
		c.check(t, req, resp, b)
		return b
	}
	var page dlq.ListResult
	_ = json.Unmarshal(call("GET", "/admin/v1/dead-letters?limit=4", nil, 200), &page)
	if len(page.Letters) != 4 || page.Next == 0 {
		t.Fatalf("first page: %d letters, next %d; want 4 and a next", len(page.Letters), page.Next)
	}
	call("GET", fmt.Sprintf("/admin/v1/dead-letters?before=%d&reason=rejected&status=400&target=skipcall", page.Next), nil, 200)
	call("GET", "/admin/v1/dead-letters?since=2026-01-01T00:00:00Z&until=2100-01-01T00:00:00Z&error_code=VALIDATION_ERROR", nil, 200)
	call("GET", "/admin/v1/dead-letters?status=abc", nil, 400)
	call("GET", "/admin/v1/dead-letters?reason=nope", nil, 400)
	var sum dlq.Summary
	_ = json.Unmarshal(call("GET", "/admin/v1/dead-letters/summary", nil, 200), &sum)
	if sum.Total != 6 || sum.ByReason[dlq.ReasonRejected] != 3 {
		t.Fatalf("summary %+v: want 6 letters, 3 rejected", sum)
	}
	call("GET", "/admin/v1/dead-letters/1", nil, 200)
	call("GET", "/admin/v1/dead-letters/999", nil, 404)
	call("GET", "/admin/v1/dead-letters/abc", nil, 400)

	call("POST", "/admin/v1/dead-letters/replay", map[string]any{"seqs": []int{1, 2}, "dry_run": true}, 200)
	call("POST", "/admin/v1/dead-letters/replay", map[string]any{}, 400)
	bad := map[string]any{"id": "evt-1", "target": "skipcall", "contact_id": "0d0d0d0d-0000-4000-8000-000000000001",
		"occurred_at": "2026-11-25T10:00:00Z", "patch": map[string]any{"firstName": ""}}
	b := call("POST", "/admin/v1/dead-letters/replay", map[string]any{"seqs": []int{1}, "edit": bad}, 422)
	var p Problem
	if err := json.Unmarshal(b, &p); err != nil || len(p.Errors) == 0 || p.Errors[0].Field != "patch.firstName" {
		t.Fatalf("422 problem %s: want the field patch.firstName named", b)
	}
	bad["patch"] = map[string]any{"firstName": "Grace"}
	var rep dlq.ReplayReport
	_ = json.Unmarshal(call("POST", "/admin/v1/dead-letters/replay", map[string]any{"seqs": []int{1}, "edit": bad, "rate_cap": 0}, 200), &rep)
	if rep.Replayed != 1 || e.s.StreamMsgs(e.s.Stream.EventsStream) != 1 {
		t.Fatalf("edited replay: %+v; want 1 replayed and 1 event in the stream", rep)
	}
	call("POST", "/admin/v1/dead-letters/replay", map[string]any{"filter": map[string]any{"reason": "retries_exhausted"}}, 200)

	call("DELETE", "/admin/v1/dead-letters/3", nil, 204)
	call("DELETE", "/admin/v1/dead-letters/3", nil, 404)
	call("DELETE", "/admin/v1/dead-letters", nil, 400)
	call("DELETE", "/admin/v1/dead-letters?all=true&dry_run=true", nil, 200)
	var pr dlq.PurgeReport
	_ = json.Unmarshal(call("DELETE", "/admin/v1/dead-letters?older_than=1ns", nil, 200), &pr)
	if pr.Purged != 1 || e.s.StreamMsgs(e.s.Stream.DLQStream) != 0 {
		t.Fatalf("purge older than 1ns: %+v, want the last letter (5) purged", pr)
	}
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			if !c.seen[op.OperationID] {
				t.Errorf("%s %s (%s) in adminapi.yaml was never exercised", method, path, op.OperationID)
			}
		}
	}
}

// TestAdminAPIRefusesWithoutToken: without the token, or with a wrong
// one, every operation answers 401 and neither stream changes.
func TestAdminAPIRefusesWithoutToken(t *testing.T) {
	e := newAPIEnv(t, 3)
	ops := []struct {
		method, path string
		body         any
	}{
		{"GET", "/admin/v1/dead-letters", nil},
		{"GET", "/admin/v1/dead-letters/summary", nil},
		{"GET", "/admin/v1/dead-letters/1", nil},
		{"POST", "/admin/v1/dead-letters/replay", map[string]any{"all": true, "rate_cap": 0}},
		{"DELETE", "/admin/v1/dead-letters/2", nil},
		{"DELETE", "/admin/v1/dead-letters?all=true", nil},
	}
	for _, tok := range []string{"", "wrong-" + adminTestToken, strings.ToUpper(adminTestToken), adminTestToken[:len(adminTestToken)-1]} {
		for _, op := range ops {
			_, resp, b := e.do(t, op.method, op.path, tok, op.body)
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with token %q: %d %s, want 401 with WWW-Authenticate", op.method, op.path, tok, resp.StatusCode, b)
			}
		}
	}
	if d, ev := e.s.StreamMsgs(e.s.Stream.DLQStream), e.s.StreamMsgs(e.s.Stream.EventsStream); d != 3 || ev != 0 {
		t.Fatalf("after refused calls: %d letters, %d events; want 3 and 0 (nothing changed)", d, ev)
	}
	// The same calls with the token do change things: the test can fail.
	if _, resp, b := e.do(t, "DELETE", "/admin/v1/dead-letters/2", adminTestToken, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("with the token: %d %s", resp.StatusCode, b)
	}
}

// TestAdminAPIOffLoopbackNeedsToken: without a token the API is served on
// loopback only; elsewhere its paths answer 403 and /metrics still works.
func TestAdminAPIOffLoopbackNeedsToken(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	store := NewDLQStore(s.JS, s.Stream, "PATCHBAY_CONTACTS")
	for _, tc := range []struct {
		addr string
		want int
	}{{"127.0.0.1:9091", 200}, {"[::1]:9091", 200}, {":9091", 403}, {"10.0.0.7:9091", 403}} {
		h := Admin{Addr: tc.addr, Registry: NewRegistry(), DeadLetters: store}.Handler()
		if code, body := get(t, h, "/admin/v1/dead-letters", ""); code != tc.want {
			t.Errorf("admin API on %s without a token: %d %s, want %d", tc.addr, code, body, tc.want)
		}
		if code, _ := get(t, h, "/metrics", ""); code != 200 {
			t.Errorf("/metrics on %s: %d, want 200", tc.addr, code)
		}
	}
}
