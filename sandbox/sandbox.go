// Package sandbox provides in-process fakes of the providers patchbay
// delivers to: RevyOps (NewRevyOps) and Skipcall (NewSkipcall). Each is an
// http.Handler that validates every request against the provider's seed
// OpenAPI document (as corrected by package openapi), applies PATCHes to
// in-memory contacts with the semantics the seed documentation describes, and
// records what it received. Faults (latency, random errors, forced statuses)
// can be injected at run time.
//
// The sandboxes serve dev mode, demos and benchmarks, and are the oracle of
// patchbay's tests: they are stricter than the providers (unknown JSON fields
// are rejected), so a wrong request from the worker fails a test.
//
// Everything in this package is safe for concurrent use.
package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"mime"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// MaxRequests is how many requests a sandbox keeps for Requests; older ones
// are dropped.
const MaxRequests = 10_000

// maxBody bounds a request body; larger bodies are answered 413.
const maxBody = 1 << 20

// StatusClientClosed is recorded (never sent) for a request whose client went
// away while the sandbox was delaying it with Faults.Latency; such a request
// changes no state.
const StatusClientClosed = 499

// Faults injects failures; the zero value injects none. Safe to change at run
// time with SetFaults. Faults apply to PATCH requests only, after the
// authentication (and, at Skipcall, rate-limit) checks and before validation
// and state changes.
type Faults struct {
	Latency     time.Duration // added before answering each PATCH; cut short if the client goes away
	ErrorRate   float64       // 0..1 probability of answering ErrorStatus instead of processing
	ErrorStatus int           // default 500
	// LateRate is the 0..1 share of valid PATCHes applied late: held for
	// LateDelay, then applied whether or not the client is still there (it
	// gave up after its timeout; the change lands all the same, as a real
	// API under load does), then answered if it still is.
	LateRate  float64
	LateDelay time.Duration // default DefaultLateDelay
}

// DefaultLateDelay is how long a late PATCH waits before it is applied
// (Faults.LateDelay): past the worker's default 10 s timeout.
const DefaultLateDelay = 12 * time.Second

// Request is one request the sandbox received, as recorded.
type Request struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
	Status                 int       // what the sandbox answered (StatusClientClosed: nothing, the client left)
	Late                   bool      // applied late (Faults.LateRate): the client may have given up before; Status is what was written, whether or not it arrived
	SpecErr                string    // non-empty when the request failed validation against the seed OpenAPI document
	At                     time.Time // when it arrived, by the sandbox's clock
}

// errorWriter writes a provider's error body for status with a message.
type errorWriter func(x *exchange, status int, msg string)

// core is the machinery both providers share: request validation against the
// corrected seed document, strict unknown-field checks, fault injection,
// request recording and PATCH counting. Its fields after construction are
// read-only; mu guards the rest.
type core struct {
	now      func() time.Time
	router   routers.Router
	opts     *openapi3filter.Options
	body     *openapi3.Schema // the PATCH request body schema
	writeErr errorWriter

	mu         sync.Mutex
	faults     Faults
	failLeft   int // >0: forced failures left; <0: until cleared
	failStatus int
	log        []Request // ring buffer of at most MaxRequests
	logNext    int       // next slot to overwrite once log is full
	patches    map[string]int
	statuses   map[int]int // answers per status, see StatusCounts
	flight     inflight    // PATCHes in flight per contact, see Overlaps
	lateDone   int         // PATCHes applied late, see LateApplies

	// contactOf returns the canonical contact id of a contact path; PATCHes
	// to such paths are tracked for Overlaps.
	contactOf func(path string) (string, bool)
}

// newCore builds the validator for doc. doc is modified: its servers are
// dropped so that the router matches on the path whatever the host.
func newCore(doc *openapi3.T, bodySchema string, now func() time.Time, auth openapi3filter.AuthenticationFunc, writeErr errorWriter) (*core, error) {
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	ref := doc.Components.Schemas[bodySchema]
	if ref == nil || ref.Value == nil {
		return nil, fmt.Errorf("no schema %q in the document", bodySchema)
	}
	if now == nil {
		now = time.Now
	}
	return &core{
		now:      now,
		router:   router,
		opts:     &openapi3filter.Options{AuthenticationFunc: auth, MultiError: true},
		body:     ref.Value,
		writeErr: writeErr,
		patches:  make(map[string]int),
		statuses: make(map[int]int),
	}, nil
}

// exchange is one request being answered.
type exchange struct {
	w       http.ResponseWriter
	r       *http.Request
	body    []byte
	status  int
	specErr string
	late    bool // held before it was applied (Faults.LateRate)
}

// json answers status with v as a JSON body.
func (x *exchange) json(status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"sandbox: cannot encode response"}`)
	}
	x.w.Header().Set("Content-Type", "application/json")
	x.w.WriteHeader(status)
	_, _ = x.w.Write(b)
	x.status = status
}

// serve reads the body, runs h and records the exchange.
func (c *core) serve(w http.ResponseWriter, r *http.Request, h func(*exchange)) {
	at := c.now()
	if r.Method == http.MethodPatch && c.contactOf != nil {
		if contact, ok := c.contactOf(r.URL.Path); ok {
			c.enter(contact)
			defer c.leave(contact) // after the exchange is recorded
		}
	}
	x := &exchange{w: w, r: r}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	x.body = body
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		c.writeErr(x, http.StatusRequestEntityTooLarge, "Request body too large.")
	case err != nil:
		x.status = StatusClientClosed
	default:
		h(x)
	}
	if x.status == 0 { // h wrote nothing: treat as a bug in the sandbox
		c.writeErr(x, http.StatusInternalServerError, "sandbox: no response")
	}
	c.record(Request{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header.Clone(),
		Body:     body,
		Status:   x.status,
		SpecErr:  x.specErr,
		Late:     x.late,
		At:       at,
	})
}

func (c *core) record(req Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.statuses[req.Status]++
	if len(c.log) < MaxRequests {
		c.log = append(c.log, req)
		return
	}
	c.log[c.logNext] = req
	c.logNext = (c.logNext + 1) % MaxRequests
}

// Requests returns the recorded requests, oldest first (at most MaxRequests).
// The result is a copy.
func (c *core) Requests() []Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Request, 0, len(c.log))
	out = append(out, c.log[c.logNext:]...)
	out = append(out, c.log[:c.logNext]...)
	for i := range out {
		out[i].Header = out[i].Header.Clone()
		out[i].Body = bytes.Clone(out[i].Body)
	}
	return out
}

// SetFaults replaces the injected faults; the zero Faults injects none.
func (c *core) SetFaults(f Faults) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults = f
}

// FailNext makes the next n PATCHes answer status (default 500) with the
// provider's error body; n < 0 fails every PATCH until FailNext(0, 0).
func (c *core) FailNext(n int, status int) {
	if status == 0 {
		status = http.StatusInternalServerError
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failLeft, c.failStatus = n, status
}

func (c *core) countPatch(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.patches[id]++
}

func (c *core) patchCount(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.patches[id]
}

// fault applies the injected faults to one PATCH. It returns the status to
// answer instead of processing (0: process normally), or StatusClientClosed
// when the client went away during the injected latency.
func (c *core) fault(ctx context.Context) int {
	c.mu.Lock()
	latency := c.faults.Latency
	c.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-ctx.Done():
			t.Stop()
			return StatusClientClosed
		case <-t.C:
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failLeft != 0 {
		if c.failLeft > 0 {
			c.failLeft--
		}
		return c.failStatus
	}
	if f := c.faults; f.ErrorRate > 0 && rand.Float64() < f.ErrorRate {
		if f.ErrorStatus == 0 {
			return http.StatusInternalServerError
		}
		return f.ErrorStatus
	}
	return 0
}

// late holds a valid PATCH for Faults.LateDelay if it is one of
// Faults.LateRate's share, whether or not its client goes away meanwhile:
// it is applied after that.
func (c *core) late(x *exchange) {
	c.mu.Lock()
	f := c.faults
	c.mu.Unlock()
	if f.LateRate <= 0 || rand.Float64() >= f.LateRate {
		return
	}
	d := f.LateDelay
	if d <= 0 {
		d = DefaultLateDelay
	}
	x.late = true
	time.Sleep(d) // the fault itself: a provider that applies the change late
}

// applied counts a PATCH applied late.
func (c *core) applied(x *exchange) {
	if !x.late {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lateDone++
}

// LateApplies returns how many PATCHes were applied late (Faults.LateRate),
// whether or not their client was still there.
func (c *core) LateApplies() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lateDone
}

// check validates a PATCH against the seed document, then rejects unknown
// JSON fields, and returns the decoded body. A nil error means the request
// may be processed; otherwise the error's text is the SpecErr to record.
func (c *core) check(x *exchange) (map[string]any, error) {
	req := x.r.Clone(x.r.Context())
	req.Body = io.NopCloser(bytes.NewReader(x.body))
	req.ContentLength = int64(len(x.body))
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: c.opts}
	if err := openapi3filter.ValidateRequest(x.r.Context(), in); err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(x.body)) == 0 {
		return map[string]any{}, nil
	}
	if mt, _, _ := mime.ParseMediaType(x.r.Header.Get("Content-Type")); mt != "application/json" {
		return nil, fmt.Errorf("sandbox: content type %q: only application/json bodies are supported", mt)
	}
	var v any
	if err := json.Unmarshal(x.body, &v); err != nil {
		return nil, fmt.Errorf("sandbox: body: %w", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("sandbox: body is not a JSON object")
	}
	var unknown []string
	unknownFields(c.body, obj, "", &unknown)
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("sandbox: unknown fields (the seed document does not define them): %s", strings.Join(unknown, ", "))
	}
	return obj, nil
}

// unknownFields appends to out the paths of object keys in v that s neither
// declares as properties nor admits through additionalProperties. An object
// schema without an explicit additionalProperties counts as closed here,
// although OpenAPI leaves it open: the sandbox is stricter than the
// providers.
func unknownFields(s *openapi3.Schema, v any, path string, out *[]string) {
	if s == nil {
		return
	}
	switch v := v.(type) {
	case map[string]any:
		for k, val := range v {
			p := path + "." + k
			if path == "" {
				p = k
			}
			switch prop := s.Properties[k]; {
			case prop != nil:
				unknownFields(prop.Value, val, p, out)
			case s.AdditionalProperties.Schema != nil:
				unknownFields(s.AdditionalProperties.Schema.Value, val, p, out)
			case s.AdditionalProperties.Has != nil && *s.AdditionalProperties.Has:
			default:
				*out = append(*out, p)
			}
		}
	case []any:
		if s.Items == nil {
			return
		}
		for i, val := range v {
			unknownFields(s.Items.Value, val, fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

// firstLine shortens a validation error for a response body; the full text
// is recorded as SpecErr.
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// normalize returns fields as decoded JSON (map[string]any, []any, string,
// float64, bool, nil), which is also a deep copy.
func normalize(fields map[string]any) (map[string]any, error) {
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("sandbox: fields are not JSON: %w", err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("sandbox: fields: %w", err)
	}
	return out, nil
}

// deepCopy copies decoded JSON.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = deepCopy(e)
		}
		return s
	default:
		return v
	}
}

// timestamp formats t as the providers' date-time strings.
func timestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
}

// ceilSeconds rounds d up to whole seconds, at least 1.
func ceilSeconds(d time.Duration) int64 {
	s := int64(math.Ceil(d.Seconds()))
	return max(s, 1)
}

// allowMethods answers 405 unless the method is GET or PATCH.
func allowMethods(x *exchange, writeErr errorWriter) bool {
	switch x.r.Method {
	case http.MethodGet, http.MethodPatch:
		return true
	}
	x.w.Header().Set("Allow", "GET, PATCH")
	writeErr(x, http.StatusMethodNotAllowed, fmt.Sprintf("Method %q not allowed.", x.r.Method))
	return false
}
