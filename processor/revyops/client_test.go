package revyops_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/httpcall"
	"github.com/patchbay/patchbay/processor/revyops"
	"github.com/patchbay/patchbay/redact"
)

func TestClassify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	cases := []struct {
		name   string
		status int
		header http.Header
		class  processor.Class // 0: success
	}{
		{"200 applied", 200, nil, 0},
		{"400 bad data", 400, nil, processor.ClassPermanent},
		{"401 company not ours is a data error", 401, nil, processor.ClassPermanent},
		{"403 bad key is credentials", 403, nil, processor.ClassCredentials},
		{"404 unknown contact", 404, nil, processor.ClassPermanent},
		{"409 duplicate email", 409, nil, processor.ClassPermanent},
		{"429 rate limited", 429, http.Header{"Retry-After": {"7"}}, processor.ClassRateLimited},
		{"500 transient", 500, nil, processor.ClassTransient},
		{"502 transient", 502, nil, processor.ClassTransient},
		{"503 transient", 503, nil, processor.ClassTransient},
		{"408 transient", 408, nil, processor.ClassTransient},
		{"422 permanent", 422, nil, processor.ClassPermanent},
		{"499 is the last permanent 4xx", 499, nil, processor.ClassPermanent},
		{"300 is not applied", 300, nil, processor.ClassPermanent},
		{"299 applied", 299, nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.header
			if h == nil {
				h = http.Header{}
			}
			_, err := revyops.Classify(httpcall.Response{Status: tc.status, Header: h, Body: []byte(`{"detail":"why"}`)}, now, nil)
			if tc.class == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if got := processor.ClassOf(err); got != tc.class {
				t.Fatalf("class %v, want %v", got, tc.class)
			}
			pe := err.(*processor.Error)
			if pe.Message != "why" || pe.Status != tc.status {
				t.Fatalf("error %+v", pe)
			}
			if tc.status == 429 && !pe.RetryAt.Equal(now.Add(7*time.Second)) {
				t.Fatalf("retry at %v", pe.RetryAt)
			}
		})
	}
}

func TestClassifyRetryAfter(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		value string
		want  time.Time
	}{
		{"7", now.Add(7 * time.Second)},
		{"10abc", time.Time{}},
		{"-5", time.Time{}},
		{"1.5", time.Time{}},
		{"1800000060", now.Add(time.Minute)},
		{"1800000060000", now.Add(time.Minute)},
		{"86400", now.Add(time.Hour)},
		{now.Add(90 * time.Second).UTC().Format(http.TimeFormat), now.Add(90 * time.Second)},
	} {
		_, err := revyops.Classify(httpcall.Response{Status: 429, Header: http.Header{"Retry-After": {tc.value}}}, now, nil)
		pe := err.(*processor.Error)
		if !pe.RetryAt.Equal(tc.want) {
			t.Errorf("Retry-After %q: retry at %v, want %v", tc.value, pe.RetryAt, tc.want)
		}
	}
}

func TestConfigRefusesSampleKey(t *testing.T) {
	c := revyops.Config{BaseURL: "https://api.revyops.example", APIKey: "9f2c4e1a7b3d5f60", AuthHeader: "X-API-Key", AuthFormat: "%s", Timeout: time.Second}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, key := range []redact.Secret{"replace-me", "changeme", "your-api-key"} {
		c.APIKey = key
		if c.Validate() == nil {
			t.Errorf("sample key %q accepted", key)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := revyops.Config{BaseURL: "https://api.revyops.example", APIKey: "9f2c4e1a7b3d5f60", AuthHeader: "X-API-Key", AuthFormat: "%s", Timeout: time.Second}
	for name, edit := range map[string]func(*revyops.Config){
		"non-http base URL":    func(c *revyops.Config) { c.BaseURL = "ftp://x" },
		"empty key":            func(c *revyops.Config) { c.APIKey = "" },
		"empty auth header":    func(c *revyops.Config) { c.AuthHeader = "" },
		"format without %s":    func(c *revyops.Config) { c.AuthFormat = "Bearer" },
		"format with %s twice": func(c *revyops.Config) { c.AuthFormat = "%s %s" },
		"zero timeout":         func(c *revyops.Config) { c.Timeout = 0 },
		"negative timeout":     func(c *revyops.Config) { c.Timeout = -time.Second },
		"negative max pause":   func(c *revyops.Config) { c.MaxPause = -time.Second },
	} {
		bad := ok
		edit(&bad)
		if bad.Validate() == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config (zero max pause: its default): %v", err)
	}
}
