package revyops_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/revyops"
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
			_, err := revyops.Classify(processor.Response{Status: tc.status, Header: h, Body: []byte(`{"detail":"why"}`)}, now)
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
