package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/google/uuid"

	"github.com/patchbay/patchbay/processor/openapi"
)

// skipcallPrefix is the path of a Skipcall contact, followed by its uuid.
const skipcallPrefix = "/v1/contacts/"

// skipcallTime is Skipcall's date-time format (JavaScript's toISOString).
const skipcallTime = "2006-01-02T15:04:05.000Z"

var (
	// keyPattern is what a Skipcall API key looks like.
	keyPattern = regexp.MustCompile(`^sk_(live|test)_[A-Za-z0-9_-]+$`)
	// e164 is the phone number format the seed's prose requires.
	e164 = regexp.MustCompile(`^\+[1-9]\d{1,14}$`)
)

// SkipcallConfig configures a Skipcall sandbox.
type SkipcallConfig struct {
	APIKeys []string // accepted keys (must look like sk_live_... or sk_test_...); empty = any well-formed key accepted
	// RatePerMinute is the limit per key and RateWindow (the seed's plans:
	// 100 or 1000). 0 means unlimited, and then no X-RateLimit-* headers are
	// sent; dev mode passes 1000 (EXPERT).
	RatePerMinute int
	RateWindow    time.Duration    // window length, default 1 minute (tests shorten it)
	AutoCreate    bool             // PATCH of an unknown id creates it (dev mode); otherwise 404
	Now           func() time.Time // optional clock; it also drives the rate-limit windows
}

// Skipcall is an in-process fake of Skipcall's public contact API:
//
//	PATCH /v1/contacts/{id}
//	GET   /v1/contacts/{id}   (sandbox convenience)
//
// Requests need "Authorization: Bearer sk_live_…|sk_test_…". Errors are
// {"error":{"code","message","status"}} as the seed documents: 400
// BAD_REQUEST, 401 UNAUTHORIZED, 403 SUBSCRIPTION_REQUIRED or
// PLAN_NOT_ELIGIBLE (see SetKeyStatus), 404 NOT_FOUND (also for ids that are
// not uuids), 405 METHOD_NOT_ALLOWED, 429 RATE_LIMIT_EXCEEDED, 500
// INTERNAL_SERVER_ERROR.
//
// With a rate limit configured, every response carries X-RateLimit-Limit,
// X-RateLimit-Remaining and X-RateLimit-Reset (unix seconds, rounded up).
// The window is fixed, starts at a key's first request, and only requests
// with an accepted key consume it; other responses show the presented key's
// window without consuming it.
//
// Use NewSkipcall; a Skipcall is safe for concurrent use.
type Skipcall struct {
	*core
	keys       map[string]bool
	autoCreate bool
	limit      *limiter // nil: unlimited
	team       string

	mu        sync.Mutex
	contacts  map[string]map[string]any // canonical id -> contact in the response shape
	keyStatus map[string]keyStatus
}

type keyStatus struct {
	status int
	code   string
}

// NewSkipcall returns a Skipcall sandbox with no contacts. It returns an
// error if the seed document cannot be loaded or the config is invalid (a
// malformed key, a negative rate or window).
func NewSkipcall(cfg SkipcallConfig) (*Skipcall, error) {
	keys := make(map[string]bool, len(cfg.APIKeys))
	for _, k := range cfg.APIKeys {
		if !keyPattern.MatchString(k) {
			return nil, fmt.Errorf("sandbox: skipcall: API key %q does not look like sk_live_… or sk_test_…", k)
		}
		keys[k] = true
	}
	if cfg.RatePerMinute < 0 || cfg.RateWindow < 0 {
		return nil, errors.New("sandbox: skipcall: RatePerMinute and RateWindow must not be negative")
	}
	if cfg.RateWindow == 0 {
		cfg.RateWindow = time.Minute
	}
	doc, err := openapi.LoadSkipcall(context.Background())
	if err != nil {
		return nil, fmt.Errorf("sandbox: skipcall: %w", err)
	}
	c, err := newCore(doc, openapi.SkipcallRequestSchema, cfg.Now, skipcallAuth, skipcallError)
	if err != nil {
		return nil, fmt.Errorf("sandbox: skipcall: %w", err)
	}
	c.contactOf = skipcallContact
	s := &Skipcall{
		core:       c,
		keys:       keys,
		autoCreate: cfg.AutoCreate,
		team:       uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://patchbay.invalid/sandbox/skipcall/team")).String(),
		contacts:   make(map[string]map[string]any),
		keyStatus:  make(map[string]keyStatus),
	}
	if cfg.RatePerMinute > 0 {
		s.limit = &limiter{limit: cfg.RatePerMinute, window: cfg.RateWindow, windows: make(map[string]*window)}
	}
	return s, nil
}

// skipcallAuth is the openapi3filter.AuthenticationFunc for the seed's
// ApiKey scheme (http bearer).
func skipcallAuth(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	ss := in.SecurityScheme
	if ss == nil || ss.Type != "http" || !strings.EqualFold(ss.Scheme, "bearer") {
		return fmt.Errorf("security scheme %q is not http bearer", in.SecuritySchemeName)
	}
	if _, ok := bearer(in.RequestValidationInput.Request.Header.Get("Authorization")); !ok {
		return errors.New("an Authorization: Bearer sk_live_… or sk_test_… header is required")
	}
	return nil
}

// bearer returns the key of an "Authorization: Bearer <key>" value and
// whether it is a well-formed Skipcall key.
func bearer(h string) (string, bool) {
	scheme, key, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	key = strings.TrimSpace(key)
	return key, keyPattern.MatchString(key)
}

// skipcallError writes {"error":{"code","message","status"}}; an empty msg
// takes the status's default.
func skipcallError(x *exchange, status int, msg string) {
	skipcallErrorCode(x, status, skipcallCode(status), msg)
}

func skipcallErrorCode(x *exchange, status int, code, msg string) {
	if msg == "" {
		msg = skipcallMessage(code, status)
	}
	x.json(status, map[string]any{"error": map[string]any{"code": code, "message": msg, "status": status}})
}

// skipcallCode is the error code for status: the seed's where it has one,
// else the status text in upper snake case.
func skipcallCode(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "RATE_LIMIT_EXCEEDED"
	case http.StatusForbidden:
		return "SUBSCRIPTION_REQUIRED"
	}
	t := http.StatusText(status)
	if t == "" {
		return "ERROR"
	}
	return strings.ToUpper(strings.NewReplacer(" ", "_", "-", "_", "'", "").Replace(t))
}

func skipcallMessage(code string, status int) string {
	switch code {
	case "UNAUTHORIZED":
		return "Invalid or revoked API key"
	case "SUBSCRIPTION_REQUIRED":
		return "An active subscription is required to access the API"
	case "PLAN_NOT_ELIGIBLE":
		return "API access requires STARTER, INTERMÉDIAIRE or EXPERT plan"
	case "RATE_LIMIT_EXCEEDED":
		return "Rate limit exceeded"
	case "NOT_FOUND":
		return "Contact not found"
	case "INTERNAL_SERVER_ERROR":
		return "Internal server error"
	}
	return http.StatusText(status)
}

// ServeHTTP answers one request; see Skipcall for the routes.
func (s *Skipcall) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, s.handle)
}

func (s *Skipcall) handle(x *exchange) {
	key, wellFormed := bearer(x.r.Header.Get("Authorization"))
	rest, ok := strings.CutPrefix(x.r.URL.Path, skipcallPrefix)
	if !ok || rest == "" || strings.Contains(rest, "/") {
		s.rateHeaders(x, key, false)
		skipcallErrorCode(x, http.StatusNotFound, "NOT_FOUND", "Cannot "+x.r.Method+" "+x.r.URL.Path)
		return
	}
	if !wellFormed {
		s.rateHeaders(x, key, false)
		skipcallError(x, http.StatusUnauthorized, "")
		return
	}
	s.mu.Lock()
	ks, forced := s.keyStatus[key]
	s.mu.Unlock()
	if forced {
		s.rateHeaders(x, key, false)
		skipcallErrorCode(x, ks.status, ks.code, "")
		return
	}
	if len(s.keys) > 0 && !s.keys[key] {
		s.rateHeaders(x, key, false)
		skipcallError(x, http.StatusUnauthorized, "")
		return
	}
	if !s.rateHeaders(x, key, true) {
		skipcallError(x, http.StatusTooManyRequests, "")
		return
	}
	if !allowMethods(x, skipcallError) {
		return
	}
	id, valid := canonicalID(rest)
	if x.r.Method == http.MethodGet {
		s.mu.Lock()
		c := s.contacts[id]
		var body map[string]any
		if valid && c != nil {
			body = deepCopy(c).(map[string]any)
		}
		s.mu.Unlock()
		if body == nil {
			skipcallError(x, http.StatusNotFound, "")
			return
		}
		x.json(http.StatusOK, body)
		return
	}
	if st := s.fault(x.r.Context()); st == StatusClientClosed {
		x.status = st
		return
	} else if st != 0 {
		skipcallError(x, st, "")
		return
	}
	patch, err := s.check(x)
	if err != nil {
		x.specErr = err.Error()
		var sec *openapi3filter.SecurityRequirementsError
		if errors.As(err, &sec) {
			skipcallError(x, http.StatusUnauthorized, "")
			return
		}
		skipcallError(x, http.StatusBadRequest, firstLine(err))
		return
	}
	if err := skipcallRules(patch); err != nil {
		x.specErr = err.Error()
		skipcallError(x, http.StatusBadRequest, err.Error())
		return
	}
	if !valid {
		skipcallError(x, http.StatusNotFound, "")
		return
	}
	s.late(x)
	body, ok := s.apply(id, patch)
	if !ok {
		skipcallError(x, http.StatusNotFound, "")
		return
	}
	s.countPatch(id)
	s.applied(x)
	x.json(http.StatusOK, body)
}

// rateHeaders sets the X-RateLimit-* headers for key, consuming one request
// from its window if consume is set. It returns false when the window is
// exhausted (and then also sets Retry-After).
func (s *Skipcall) rateHeaders(x *exchange, key string, consume bool) bool {
	if s.limit == nil {
		return true
	}
	now := s.now()
	remaining, reset, ok := s.limit.take(key, now, consume)
	h := x.w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(s.limit.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	resetUnix := reset.Unix()
	if reset.Nanosecond() > 0 {
		resetUnix++ // round up: waiting until Reset always leaves the window
	}
	h.Set("X-RateLimit-Reset", strconv.FormatInt(resetUnix, 10))
	if !ok {
		h.Set("Retry-After", strconv.FormatInt(ceilSeconds(reset.Sub(now)), 10))
	}
	return ok
}

// skipcallRules checks what the prose says and the schema cannot: phone
// numbers are E.164.
func skipcallRules(patch map[string]any) error {
	if ps, ok := patch["phoneNumbers"].([]any); ok {
		for i, p := range ps {
			if n, _ := p.(string); !e164.MatchString(n) {
				return fmt.Errorf("phoneNumbers[%d]: %q is not in E.164 format (+ and up to 15 digits)", i, n)
			}
		}
	}
	return nil
}

// canonicalID returns the lower-case canonical form of a uuid id and whether
// id is a uuid in the 8-4-4-4-12 form.
func canonicalID(id string) (string, bool) {
	if len(id) != 36 {
		return id, false
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return id, false
	}
	return u.String(), true
}

func (s *Skipcall) newContact(id string, now time.Time) map[string]any {
	ts := now.UTC().Format(skipcallTime)
	return map[string]any{
		"id": id, "firstName": "", "lastName": "",
		"email": nil, "company": nil, "city": nil, "country": nil, "url": nil,
		"linkedinUrl": nil, "linkedinSalesUrl": nil, "role": nil,
		"allowPhoneCalls": false, "callCount": float64(0), "lastCallAt": nil,
		"teamId": s.team, "phoneNumbers": []any{}, "customFields": map[string]any{},
		"createdAt": ts, "updatedAt": ts, "lastModificationSource": "SKIPCALL",
	}
}

// apply runs a validated PATCH on contact id and returns the contact as
// answered, or false when it does not exist (and AutoCreate is off).
func (s *Skipcall) apply(id string, patch map[string]any) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	c := s.contacts[id]
	if c == nil {
		if !s.autoCreate {
			return nil, false
		}
		c = s.newContact(id, now)
		s.contacts[id] = c
	}
	for k, v := range patch {
		switch k {
		case "customFields": // only provided keys change
			cf, _ := c[k].(map[string]any)
			if cf == nil {
				cf = map[string]any{}
				c[k] = cf
			}
			for name, val := range v.(map[string]any) {
				cf[name] = val
			}
		default: // phoneNumbers included: replaces all
			c[k] = deepCopy(v)
		}
	}
	c["updatedAt"] = now.UTC().Format(skipcallTime)
	c["lastModificationSource"] = "API"
	return deepCopy(c).(map[string]any), true
}

// PutContact seeds contact id (a uuid), replacing any contact with that id.
// fields use the API's names (firstName, city, phoneNumbers, customFields,
// callCount, lastModificationSource...) and override the defaults (empty
// names, null text fields, no phones); fields that cannot be encoded as JSON
// are ignored. No validation is made.
func (s *Skipcall) PutContact(id string, fields map[string]any) {
	id, _ = canonicalID(id)
	norm, err := normalize(fields)
	if err != nil {
		norm = map[string]any{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.newContact(id, s.now())
	for k, v := range norm {
		c[k] = v
	}
	c["id"] = id
	s.contacts[id] = c
}

// Contact returns a deep copy of contact id as the API answers it, and
// whether it exists.
func (s *Skipcall) Contact(id string) (map[string]any, bool) {
	id, _ = canonicalID(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.contacts[id]
	if c == nil {
		return nil, false
	}
	return deepCopy(c).(map[string]any), true
}

// SetKeyStatus makes requests with key answer status with error code, for
// example 403 PLAN_NOT_ELIGIBLE or SUBSCRIPTION_REQUIRED, or 401 UNAUTHORIZED
// for a revoked key. An empty code takes the status's default. Status 0
// clears it.
func (s *Skipcall) SetKeyStatus(key string, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if status == 0 {
		delete(s.keyStatus, key)
		return
	}
	if code == "" {
		code = skipcallCode(status)
	}
	s.keyStatus[key] = keyStatus{status: status, code: code}
}

// PatchCount returns how many PATCHes were applied to contact id (answered
// 200).
func (s *Skipcall) PatchCount(id string) int {
	id, _ = canonicalID(id)
	return s.patchCount(id)
}

// limiter is a fixed-window request counter per key.
type limiter struct {
	limit  int
	window time.Duration

	mu      sync.Mutex
	windows map[string]*window
	history []Window // ended windows, oldest first, see Windows
}

type window struct {
	start   time.Time
	count   int // requests admitted
	limited int // requests refused with 429
}

// maxWindows bounds the limiter's memory: past it, expired windows are
// dropped.
const maxWindows = 10_000

// take returns key's remaining requests and window end at now, counting one
// request if consume is set; ok is false when the window was already full.
func (l *limiter) take(key string, now time.Time, consume bool) (remaining int, reset time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.windows[key]
	if w == nil || !now.Before(w.start.Add(l.window)) {
		old := w
		w = &window{start: now}
		if consume {
			if old != nil {
				l.closeWindow(key, old)
			}
			if len(l.windows) >= maxWindows {
				for k, o := range l.windows {
					if !now.Before(o.start.Add(l.window)) {
						l.closeWindow(k, o)
						delete(l.windows, k)
					}
				}
			}
			l.windows[key] = w
		}
	}
	ok = true
	if consume {
		if w.count >= l.limit {
			ok = false
			w.limited++
		} else {
			w.count++
		}
	}
	return max(l.limit-w.count, 0), w.start.Add(l.window), ok
}
