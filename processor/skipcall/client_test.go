package skipcall_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/httpcall"
	"github.com/patchbay/patchbay/processor/skipcall"
	"github.com/patchbay/patchbay/redact"
)

func TestClassify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	reset := now.Add(42 * time.Second)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	cases := []struct {
		name    string
		status  int
		header  http.Header
		body    string
		class   processor.Class // 0: success
		code    string
		retryAt time.Time
		pause   time.Time
	}{
		{"200 applied", 200, nil, `{}`, 0, "", time.Time{}, time.Time{}},
		{"200 with window used up pauses", 200, hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1800000042"), `{}`, 0, "", time.Time{}, reset},
		{"400 permanent", 400, nil, `{"error":{"code":"BAD_REQUEST","message":"firstName too long","status":400}}`, processor.ClassPermanent, "BAD_REQUEST", time.Time{}, time.Time{}},
		{"401 bad key is credentials, not the event", 401, nil, `{"error":{"code":"UNAUTHORIZED","message":"Invalid or revoked API key","status":401}}`, processor.ClassCredentials, "UNAUTHORIZED", time.Time{}, time.Time{}},
		{"403 plan not eligible is credentials", 403, nil, `{"error":{"code":"PLAN_NOT_ELIGIBLE","message":"x","status":403}}`, processor.ClassCredentials, "PLAN_NOT_ELIGIBLE", time.Time{}, time.Time{}},
		{"404 permanent", 404, nil, ``, processor.ClassPermanent, "", time.Time{}, time.Time{}},
		{"429 waits for reset", 429, hdr("X-RateLimit-Reset", "1800000042"), `{"error":{"code":"RATE_LIMIT_EXCEEDED"}}`, processor.ClassRateLimited, "RATE_LIMIT_EXCEEDED", reset, time.Time{}},
		{"429 later Retry-After wins", 429, hdr("X-RateLimit-Reset", "1800000042", "Retry-After", "60"), ``, processor.ClassRateLimited, "", now.Add(time.Minute), time.Time{}},
		{"429 reset in milliseconds", 429, hdr("X-RateLimit-Reset", "1800000042000"), ``, processor.ClassRateLimited, "", reset, time.Time{}},
		{"429 reset in seconds from now", 429, hdr("X-RateLimit-Reset", "42"), ``, processor.ClassRateLimited, "", reset, time.Time{}},
		{"429 reset a year away is capped at 1h", 429, hdr("X-RateLimit-Reset", "1831536000"), ``, processor.ClassRateLimited, "", now.Add(time.Hour), time.Time{}},
		{"429 malformed reset is ignored", 429, hdr("X-RateLimit-Reset", "10abc"), ``, processor.ClassRateLimited, "", time.Time{}, time.Time{}},
		{"429 malformed reset, valid Retry-After", 429, hdr("X-RateLimit-Reset", "1800000042.5", "Retry-After", "42"), ``, processor.ClassRateLimited, "", reset, time.Time{}},
		{"429 Retry-After 10abc is not 10 s", 429, hdr("Retry-After", "10abc"), ``, processor.ClassRateLimited, "", time.Time{}, time.Time{}},
		{"200 window used up, reset in ms", 200, hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1800000042000"), `{}`, 0, "", time.Time{}, reset},
		{"200 window used up, reset capped", 200, hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "99999999999999999999"), `{}`, 0, "", time.Time{}, now.Add(time.Hour)},
		{"200 remaining 00 is not 0", 200, hdr("X-RateLimit-Remaining", "00x", "X-RateLimit-Reset", "1800000042"), `{}`, 0, "", time.Time{}, time.Time{}},
		{"500 transient", 500, nil, `not json`, processor.ClassTransient, "", time.Time{}, time.Time{}},
		{"503 transient", 503, nil, ``, processor.ClassTransient, "", time.Time{}, time.Time{}},
		{"408 transient", 408, nil, ``, processor.ClassTransient, "", time.Time{}, time.Time{}},
		{"422 permanent", 422, nil, ``, processor.ClassPermanent, "", time.Time{}, time.Time{}},
		{"403 subscription required is credentials", 403, nil, `{"error":{"code":"SUBSCRIPTION_REQUIRED","message":"x","status":403}}`, processor.ClassCredentials, "SUBSCRIPTION_REQUIRED", time.Time{}, time.Time{}},
		{"499 is the last permanent 4xx", 499, nil, ``, processor.ClassPermanent, "", time.Time{}, time.Time{}},
		{"300 is not applied", 300, nil, ``, processor.ClassPermanent, "", time.Time{}, time.Time{}},
		{"429 without headers retries now", 429, nil, ``, processor.ClassRateLimited, "", time.Time{}, time.Time{}},
		{"429 earlier Retry-After loses to the reset", 429, hdr("X-RateLimit-Reset", "1800000042", "Retry-After", "5"), ``, processor.ClassRateLimited, "", reset, time.Time{}},
		{"200 with requests left does not pause", 200, hdr("X-RateLimit-Remaining", "1", "X-RateLimit-Reset", "1800000042"), `{}`, 0, "", time.Time{}, time.Time{}},
		{"200 with a malformed reset does not pause", 200, hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "soon"), `{}`, 0, "", time.Time{}, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.header
			if h == nil {
				h = http.Header{}
			}
			res, err := skipcall.Classify(httpcall.Response{Status: tc.status, Header: h, Body: []byte(tc.body)}, now, nil)
			if tc.class == 0 {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if !res.PauseUntil.Equal(tc.pause) {
					t.Fatalf("pause %v, want %v", res.PauseUntil, tc.pause)
				}
				return
			}
			if got := processor.ClassOf(err); got != tc.class {
				t.Fatalf("class %v, want %v", got, tc.class)
			}
			pe := err.(*processor.Error)
			if pe.Status != tc.status || pe.Code != tc.code || !pe.RetryAt.Equal(tc.retryAt) {
				t.Fatalf("error %+v", pe)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	ok := skipcall.Config{BaseURL: "https://api-public.skipcall.app", APIKey: "sk_live_abc", Timeout: time.Second}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := ok
	bad.APIKey = "pk_live_abc"
	if bad.Validate() == nil {
		t.Fatal("a key without sk_live_/sk_test_ must be refused")
	}
	for _, key := range []string{"sk_live_replace_me", "sk_live_changeme", "sk_test_xxxxxxxx"} {
		bad = ok
		bad.APIKey = redact.Secret(key)
		if bad.Validate() == nil {
			t.Fatalf("the sample key %q must be refused", key)
		}
	}
	bad = ok
	bad.BaseURL = "ftp://x"
	if bad.Validate() == nil {
		t.Fatal("a non-http base URL must be refused")
	}
	for _, edit := range []func(*skipcall.Config){
		func(c *skipcall.Config) { c.Timeout = 0 },
		func(c *skipcall.Config) { c.Timeout = -time.Second },
		func(c *skipcall.Config) { c.MaxPause = -time.Second },
		func(c *skipcall.Config) { c.RateWindow = -time.Second },
	} {
		bad = ok
		edit(&bad)
		if bad.Validate() == nil {
			t.Fatalf("timeout %s, max pause %s, rate window %s must be refused", bad.Timeout, bad.MaxPause, bad.RateWindow)
		}
	}
	ok.MaxPause, ok.RateWindow = 0, 0 // their defaults
	if err := ok.Validate(); err != nil {
		t.Fatalf("zero max pause and rate window stand for their defaults: %v", err)
	}
}
