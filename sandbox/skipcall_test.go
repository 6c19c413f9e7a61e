package sandbox_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchbay/patchbay/processor/openapi"
	"github.com/patchbay/patchbay/sandbox"
)

const (
	skipKey = "sk_test_sandbox"
	skipID  = "0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c"
	skipURL = "/v1/contacts/" + skipID
)

var skipAuth = map[string]string{"Authorization": "Bearer " + skipKey}

func newSkipcall(t *testing.T, cfg sandbox.SkipcallConfig) (*sandbox.Skipcall, *httptest.Server) {
	t.Helper()
	if cfg.APIKeys == nil {
		cfg.APIKeys = []string{skipKey}
	}
	s, err := sandbox.NewSkipcall(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func TestSkipcallPatchAppliesAndGetShows(t *testing.T) {
	s, srv := newSkipcall(t, sandbox.SkipcallConfig{})
	v := newResponseValidator(t, openapi.LoadSkipcall)
	s.PutContact(skipID, map[string]any{
		"firstName": "Old", "lastName": "Name", "city": "Lyon",
		"phoneNumbers": []string{"+33600000000", "+33600000001"},
		"customFields": map[string]string{"size": "10", "industry": "Retail"},
	})
	r := call(t, srv, http.MethodPatch, skipURL, skipAuth,
		`{"firstName":"Ada","email":"ada@example.com","allowPhoneCalls":true,"phoneNumbers":["+33612345678"],"customFields":{"industry":"Tech"}}`)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	v.check(t, r)
	for k, want := range map[string]string{
		"firstName": "Ada", "lastName": "Name", "city": "Lyon", "email": "ada@example.com",
		"allowPhoneCalls": "true", "phoneNumbers": "[+33612345678]",
		"customFields": "map[industry:Tech size:10]", "lastModificationSource": "API", "id": skipID,
	} {
		if got := fmt.Sprint(r.body[k]); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	g := call(t, srv, http.MethodGet, "/v1/contacts/"+strings.ToUpper(skipID), skipAuth, "")
	if g.status != http.StatusOK || fmt.Sprint(g.body) != fmt.Sprint(r.body) {
		t.Fatalf("GET %d: %s\nPATCH answered %s", g.status, g.raw, r.raw)
	}
	if n := s.PatchCount(skipID); n != 1 {
		t.Errorf("PatchCount = %d, want 1", n)
	}
	rq := lastRequest(t, s.Requests())
	if rq.Method != http.MethodGet || rq.Header.Get("Authorization") != "Bearer "+skipKey {
		t.Errorf("recorded %+v", rq)
	}
}

func TestSkipcallRejectsInvalid(t *testing.T) {
	phones := make([]string, 21)
	for i := range phones {
		phones[i] = fmt.Sprintf(`"+3361234567%d"`, i%10)
	}
	for _, tc := range []struct{ name, body string }{
		{"wrong type", `{"firstName":5}`},
		{"boolean as string", `{"allowPhoneCalls":"yes"}`},
		{"empty name", `{"firstName":""}`},
		{"name too long", `{"firstName":"` + strings.Repeat("x", 101) + `"}`},
		{"company too long", `{"company":"` + strings.Repeat("x", 201) + `"}`},
		{"unknown field", `{"firstName":"A","nickname":"x"}`},
		{"bad phone", `{"phoneNumbers":["0612345678"]}`},
		{"phone with spaces", `{"phoneNumbers":["+33 6 12 34 56 78"]}`},
		{"phone too long", `{"phoneNumbers":["+1234567890123456"]}`},
		{"no phones", `{"phoneNumbers":[]}`},
		{"too many phones", `{"phoneNumbers":[` + strings.Join(phones, ",") + `]}`},
		{"custom field not a string", `{"customFields":{"size":50}}`},
		{"no body", ``},
		{"malformed JSON", `{"firstName":`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, srv := newSkipcall(t, sandbox.SkipcallConfig{})
			s.PutContact(skipID, map[string]any{"firstName": "Keep", "lastName": "Me"})
			h := map[string]string{"Authorization": skipAuth["Authorization"], "Content-Type": "application/json"}
			r := call(t, srv, http.MethodPatch, skipURL, h, tc.body)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", r.status, r.raw)
			}
			if code, st := errorCode(t, r); code != "BAD_REQUEST" || st != 400 {
				t.Errorf("error %s %v", code, st)
			}
			if rq := lastRequest(t, s.Requests()); rq.SpecErr == "" || rq.Status != http.StatusBadRequest {
				t.Errorf("recorded status %d SpecErr %q", rq.Status, rq.SpecErr)
			}
			if c, _ := s.Contact(skipID); c["firstName"] != "Keep" || s.PatchCount(skipID) != 0 {
				t.Errorf("state changed: %v", c)
			}
		})
	}
}

func TestSkipcallAuth(t *testing.T) {
	for _, tc := range []struct {
		name     string
		keys     []string
		auth     string
		status   int // SetKeyStatus for the key, if any
		code     string
		want     int
		wantCode string
	}{
		{name: "no header", want: 401, wantCode: "UNAUTHORIZED"},
		{name: "basic scheme", auth: "Basic " + skipKey, want: 401, wantCode: "UNAUTHORIZED"},
		{name: "not a Skipcall key", auth: "Bearer abc", want: 401, wantCode: "UNAUTHORIZED"},
		{name: "unknown key", auth: "Bearer sk_live_other", want: 401, wantCode: "UNAUTHORIZED"},
		{name: "accepted key", auth: "Bearer " + skipKey, want: 200},
		{name: "lower-case scheme", auth: "bearer " + skipKey, want: 200},
		{name: "any well-formed key", keys: []string{}, auth: "Bearer sk_live_anything", want: 200},
		{name: "any well-formed key, not malformed ones", keys: []string{}, auth: "Bearer sk_prod_x", want: 401, wantCode: "UNAUTHORIZED"},
		{name: "plan not eligible", auth: "Bearer " + skipKey, status: 403, code: "PLAN_NOT_ELIGIBLE", want: 403, wantCode: "PLAN_NOT_ELIGIBLE"},
		{name: "subscription required", auth: "Bearer " + skipKey, status: 403, code: "SUBSCRIPTION_REQUIRED", want: 403, wantCode: "SUBSCRIPTION_REQUIRED"},
		{name: "revoked", auth: "Bearer " + skipKey, status: 401, want: 401, wantCode: "UNAUTHORIZED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, srv := newSkipcall(t, sandbox.SkipcallConfig{APIKeys: tc.keys})
			s.PutContact(skipID, map[string]any{"firstName": "A", "lastName": "B"})
			if tc.status != 0 {
				s.SetKeyStatus(skipKey, tc.status, tc.code)
			}
			h := map[string]string{}
			if tc.auth != "" {
				h["Authorization"] = tc.auth
			}
			r := call(t, srv, http.MethodPatch, skipURL, h, `{"firstName":"C"}`)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.raw)
			}
			if tc.want == 200 {
				return
			}
			if code, st := errorCode(t, r); code != tc.wantCode || int(st) != tc.want {
				t.Errorf("error %s %v, want %s %d", code, st, tc.wantCode, tc.want)
			}
			if tc.wantCode == "UNAUTHORIZED" && string(r.raw) != `{"error":{"code":"UNAUTHORIZED","message":"Invalid or revoked API key","status":401}}` {
				t.Errorf("body %s", r.raw)
			}
			if c, _ := s.Contact(skipID); c["firstName"] != "A" {
				t.Error("state changed")
			}
			if tc.status != 0 {
				s.SetKeyStatus(skipKey, 0, "")
				if r := call(t, srv, http.MethodPatch, skipURL, h, `{"firstName":"C"}`); r.status != 200 {
					t.Fatalf("after clearing the key status: %d", r.status)
				}
			}
		})
	}
}

func TestSkipcallNotFound(t *testing.T) {
	v := newResponseValidator(t, openapi.LoadSkipcall)
	for _, tc := range []struct {
		name, method, path string
		autoCreate         bool
		want               int
	}{
		{"unknown contact", http.MethodPatch, skipURL, false, 404},
		{"unknown contact GET", http.MethodGet, skipURL, false, 404},
		{"not a uuid", http.MethodPatch, "/v1/contacts/123", false, 404},
		{"not a uuid, AutoCreate", http.MethodPatch, "/v1/contacts/123", true, 404},
		{"unknown path", http.MethodPatch, "/v1/calls/" + skipID, false, 404},
		{"trailing segment", http.MethodPatch, skipURL + "/x", false, 404},
		{"AutoCreate", http.MethodPatch, skipURL, true, 200},
		{"PUT", http.MethodPut, skipURL, false, 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, srv := newSkipcall(t, sandbox.SkipcallConfig{AutoCreate: tc.autoCreate})
			body := ""
			if tc.method != http.MethodGet {
				body = `{"firstName":"A"}`
			}
			r := call(t, srv, tc.method, tc.path, skipAuth, body)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.raw)
			}
			_, created := s.Contact(skipID)
			if tc.want == 200 {
				v.check(t, r)
				if !created || r.body["firstName"] != "A" || r.body["lastModificationSource"] != "API" {
					t.Fatalf("AutoCreate: %s", r.raw)
				}
				return
			}
			if created {
				t.Fatal("contact created")
			}
			code, _ := errorCode(t, r)
			if want := map[int]string{404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}[tc.want]; code != want {
				t.Errorf("code %s, want %s", code, want)
			}
			if tc.path == "/v1/contacts/123" && r.body["error"].(map[string]any)["message"] != "Contact not found" {
				t.Errorf("body %s", r.raw)
			}
		})
	}
}

func TestSkipcallRateLimit(t *testing.T) {
	start := time.Date(2025, 3, 1, 12, 0, 0, 400_000_000, time.UTC) // mid-second: Reset rounds up
	clk := newClock(start)
	s, srv := newSkipcall(t, sandbox.SkipcallConfig{RatePerMinute: 3, Now: clk.Now})
	s.PutContact(skipID, map[string]any{"firstName": "A", "lastName": "B"})
	wantReset := strconv.FormatInt(start.Add(time.Minute).Unix()+1, 10)

	patch := func(i int) response {
		return call(t, srv, http.MethodPatch, skipURL, skipAuth, fmt.Sprintf(`{"city":"C%d"}`, i))
	}
	headers := func(r response, remaining string) {
		t.Helper()
		if r.header.Get("X-RateLimit-Limit") != "3" || r.header.Get("X-RateLimit-Remaining") != remaining || r.header.Get("X-RateLimit-Reset") != wantReset {
			t.Fatalf("status %d headers Limit=%q Remaining=%q Reset=%q, want 3 %s %s", r.status,
				r.header.Get("X-RateLimit-Limit"), r.header.Get("X-RateLimit-Remaining"), r.header.Get("X-RateLimit-Reset"), remaining, wantReset)
		}
	}
	for i, rem := range []string{"2", "1", "0"} {
		r := patch(i)
		if r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.raw)
		}
		headers(r, rem)
	}
	clk.Set(start.Add(30 * time.Second))
	r := patch(3)
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("4th request: %d %s", r.status, r.raw)
	}
	headers(r, "0")
	if code, st := errorCode(t, r); code != "RATE_LIMIT_EXCEEDED" || st != 429 {
		t.Errorf("error %s %v", code, st)
	}
	if ra := r.header.Get("Retry-After"); ra != "30" {
		t.Errorf("Retry-After = %q, want 30", ra)
	}
	if c, _ := s.Contact(skipID); c["city"] != "C2" || s.PatchCount(skipID) != 3 {
		t.Fatalf("a 429 touched state: city %v, %d patches", c["city"], s.PatchCount(skipID))
	}
	// Every response carries the headers: 401 (not consuming) and 404.
	other := call(t, srv, http.MethodPatch, skipURL, map[string]string{"Authorization": "Bearer sk_test_unknown"}, `{"city":"X"}`)
	if other.status != 401 || other.header.Get("X-RateLimit-Limit") != "3" || other.header.Get("X-RateLimit-Remaining") != "3" {
		t.Fatalf("401: %d headers %v", other.status, other.header)
	}
	nf := call(t, srv, http.MethodGet, "/v1/contacts/"+"11111111-2222-4333-8444-555555555555", skipAuth, "")
	if nf.status != 429 {
		t.Fatalf("GET counts against the limit too: %d", nf.status)
	}
	// Waiting until Reset leaves the window.
	reset, _ := strconv.ParseInt(wantReset, 10, 64)
	clk.Set(time.Unix(reset, 0))
	r = patch(4)
	if r.status != 200 {
		t.Fatalf("after Reset: %d %s", r.status, r.raw)
	}
	if r.header.Get("X-RateLimit-Remaining") != "2" {
		t.Fatalf("new window Remaining = %q", r.header.Get("X-RateLimit-Remaining"))
	}
	// Unlimited: no headers.
	_, srv2 := newSkipcall(t, sandbox.SkipcallConfig{})
	if r := call(t, srv2, http.MethodGet, skipURL, skipAuth, ""); r.header.Get("X-RateLimit-Limit") != "" {
		t.Fatalf("RatePerMinute 0 sent X-RateLimit-Limit %q", r.header.Get("X-RateLimit-Limit"))
	}
}

func TestSkipcallFaults(t *testing.T) {
	s, srv := newSkipcall(t, sandbox.SkipcallConfig{})
	s.PutContact(skipID, map[string]any{"firstName": "A", "lastName": "B"})
	patch := func() response { return call(t, srv, http.MethodPatch, skipURL, skipAuth, `{"firstName":"C"}`) }

	s.FailNext(2, http.StatusServiceUnavailable)
	for i := range 2 {
		r := patch()
		if code, _ := errorCode(t, r); r.status != 503 || code != "SERVICE_UNAVAILABLE" {
			t.Fatalf("forced failure %d: %d %s", i, r.status, r.raw)
		}
	}
	if r := patch(); r.status != 200 {
		t.Fatalf("after FailNext(2): %d", r.status)
	}

	s.FailNext(-1, 0)
	for i := range 5 {
		r := patch()
		if code, _ := errorCode(t, r); r.status != 500 || code != "INTERNAL_SERVER_ERROR" {
			t.Fatalf("FailNext(-1) request %d: %d %s", i, r.status, r.raw)
		}
	}
	s.FailNext(0, 0)
	if r := patch(); r.status != 200 {
		t.Fatalf("after FailNext(0, 0): %d", r.status)
	}

	s.SetFaults(sandbox.Faults{ErrorRate: 1})
	if r := patch(); r.status != 500 {
		t.Fatalf("ErrorRate 1: %d", r.status)
	}
	if r := call(t, srv, http.MethodGet, skipURL, skipAuth, ""); r.status != 200 {
		t.Fatalf("faults hit a GET: %d", r.status)
	}
	s.SetFaults(sandbox.Faults{ErrorRate: 0.5, ErrorStatus: http.StatusBadGateway})
	failed := 0
	const n = 400
	for range n {
		switch r := patch(); r.status {
		case http.StatusBadGateway:
			failed++
		case http.StatusOK:
		default:
			t.Fatalf("status %d", r.status)
		}
	}
	if failed < n/4 || failed > 3*n/4 { // binomial(400, 0.5): outside [100, 300] is ~1e-24
		t.Fatalf("ErrorRate 0.5 failed %d of %d", failed, n)
	}
	s.SetFaults(sandbox.Faults{})
	if got, want := s.PatchCount(skipID), 2+(n-failed); got != want {
		t.Fatalf("PatchCount = %d, want %d", got, want)
	}
}

func TestFaultLatency(t *testing.T) {
	s, srv := newSkipcall(t, sandbox.SkipcallConfig{})
	s.PutContact(skipID, map[string]any{"firstName": "A", "lastName": "B"})

	s.SetFaults(sandbox.Faults{Latency: 50 * time.Millisecond})
	began := time.Now()
	if r := call(t, srv, http.MethodPatch, skipURL, skipAuth, `{"city":"Slow"}`); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if d := time.Since(began); d < 50*time.Millisecond {
		t.Fatalf("answered after %v, before the injected latency", d)
	}

	// A client that leaves during the latency changes nothing.
	s.SetFaults(sandbox.Faults{Latency: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPatch, skipURL, strings.NewReader(`{"city":"Gone"}`))
	req.Header.Set("Authorization", "Bearer "+skipKey)
	req.Header.Set("Content-Type", "application/json")
	s.ServeHTTP(httptest.NewRecorder(), req)
	if c, _ := s.Contact(skipID); c["city"] != "Slow" {
		t.Fatalf("city = %v", c["city"])
	}
	if rq := lastRequest(t, s.Requests()); rq.Status != sandbox.StatusClientClosed {
		t.Fatalf("recorded status %d", rq.Status)
	}
}

func TestContactIsDeepCopy(t *testing.T) {
	s, _ := newSkipcall(t, sandbox.SkipcallConfig{})
	s.PutContact(skipID, map[string]any{"firstName": "A", "phoneNumbers": []string{"+33600000000"}, "customFields": map[string]string{"k": "v"}})
	c, _ := s.Contact(skipID)
	c["firstName"] = "X"
	c["phoneNumbers"].([]any)[0] = "+1000"
	c["customFields"].(map[string]any)["k"] = "changed"
	again, _ := s.Contact(skipID)
	if fmt.Sprintf("%v %v %v", again["firstName"], again["phoneNumbers"], again["customFields"]) != "A [+33600000000] map[k:v]" {
		t.Fatalf("Contact shares state: %v", again)
	}

	r, _ := newRevyOps(t, sandbox.RevyOpsConfig{})
	r.PutContact(1, map[string]any{"first_name": "A", "contact_custom_fields": map[string]any{"k": "v"}})
	rc, _ := r.Contact(1)
	rc["first_name"] = "X"
	rc["contact_custom_fields"].([]any)[0].(map[string]any)["field_value"] = "changed"
	rAgain, _ := r.Contact(1)
	if rAgain["first_name"] != "A" || rAgain["contact_custom_fields"].([]any)[0].(map[string]any)["field_value"] != "v" {
		t.Fatalf("Contact shares state: %v", rAgain)
	}
}

func TestRequestsBounded(t *testing.T) {
	s, _ := newSkipcall(t, sandbox.SkipcallConfig{})
	const extra = 5
	for i := range sandbox.MaxRequests + extra {
		s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/nowhere?n="+strconv.Itoa(i), nil))
	}
	rs := s.Requests()
	if len(rs) != sandbox.MaxRequests {
		t.Fatalf("kept %d requests, want %d", len(rs), sandbox.MaxRequests)
	}
	if rs[0].RawQuery != "n="+strconv.Itoa(extra) || rs[len(rs)-1].RawQuery != "n="+strconv.Itoa(sandbox.MaxRequests+extra-1) {
		t.Fatalf("kept %s .. %s", rs[0].RawQuery, rs[len(rs)-1].RawQuery)
	}
}

func TestConcurrentPatches(t *testing.T) {
	s, srv := newSkipcall(t, sandbox.SkipcallConfig{RatePerMinute: 1000})
	s.PutContact(skipID, map[string]any{"firstName": "A", "lastName": "B"})
	s.SetFaults(sandbox.Faults{ErrorRate: 0.1})
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				r := call(t, srv, http.MethodPatch, skipURL, skipAuth, fmt.Sprintf(`{"city":"G%dI%d","customFields":{"g%d":"%d"}}`, g, i, g, i))
				_ = s.Requests()
				_, _ = s.Contact(skipID)
				if r.status == 200 {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if n := s.PatchCount(skipID); n != ok {
		t.Fatalf("PatchCount = %d, 200 answers = %d", n, ok)
	}
}

func TestNewSkipcallRejectsBadConfig(t *testing.T) {
	for _, cfg := range []sandbox.SkipcallConfig{
		{APIKeys: []string{"not-a-key"}},
		{RatePerMinute: -1},
		{RateWindow: -time.Second},
	} {
		if _, err := sandbox.NewSkipcall(cfg); err == nil {
			t.Errorf("NewSkipcall(%+v) accepted", cfg)
		}
	}
	if _, err := sandbox.NewRevyOps(sandbox.RevyOpsConfig{APIKeys: []string{""}}); err == nil {
		t.Error("NewRevyOps accepted an empty key")
	}
}

func BenchmarkSkipcallPatch(b *testing.B) {
	// Each reading of the clock is a minute later, so every request opens a
	// fresh rate-limit window and the benchmark measures the 200 path.
	var minutes atomic.Int64
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return base.Add(time.Duration(minutes.Add(1)) * time.Minute) }
	s, err := sandbox.NewSkipcall(sandbox.SkipcallConfig{APIKeys: []string{skipKey}, RatePerMinute: 1000, Now: now})
	if err != nil {
		b.Fatal(err)
	}
	s.PutContact(skipID, map[string]any{"firstName": "A", "lastName": "B"})
	body := []byte(`{"firstName":"Ada","city":"Paris","phoneNumbers":["+33612345678"],"customFields":{"industry":"Tech"}}`)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPatch, skipURL, strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+skipKey)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
