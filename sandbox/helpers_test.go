package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// clock is a fake clock safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// response is one HTTP answer, decoded.
type response struct {
	req    *http.Request
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

// call sends one request to srv.
func call(t *testing.T, srv *httptest.Server, method, path string, header map[string]string, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{req: req, status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			t.Fatalf("%s %s: body is not a JSON object: %v: %s", method, path, err, raw)
		}
	}
	return r
}

// responseValidator checks 200 answers against a corrected seed document.
type responseValidator struct {
	router routers.Router
}

func newResponseValidator(t *testing.T, load func(context.Context) (*openapi3.T, error)) *responseValidator {
	t.Helper()
	doc, err := load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	doc.Servers = nil
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &responseValidator{router: r}
}

// check validates r, answered to a PATCH, against the document's response
// schema for r.status.
func (v *responseValidator) check(t *testing.T, r response) {
	t.Helper()
	req := r.req.Clone(context.Background())
	req.URL.Host, req.URL.Scheme, req.Host = "", "", ""
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		t.Fatalf("route %s %s: %v", req.Method, req.URL, err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 r.status,
		Header:                 r.header,
		Body:                   io.NopCloser(bytes.NewReader(r.raw)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Fatalf("response does not match the corrected seed schema: %v\n%s", err, r.raw)
	}
}

// errorCode returns a Skipcall error body's code and status.
func errorCode(t *testing.T, r response) (string, float64) {
	t.Helper()
	e, ok := r.body["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %s", r.raw)
	}
	code, _ := e["code"].(string)
	st, _ := e["status"].(float64)
	if msg, _ := e["message"].(string); msg == "" {
		t.Fatalf("error without message: %s", r.raw)
	}
	return code, st
}
