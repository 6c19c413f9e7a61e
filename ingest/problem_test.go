package ingest_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestProblemHeaders: a 401 names its scheme in WWW-Authenticate (RFC 9110
// requires it), other problems do not; Retry-After is sent only where a
// retry is the answer (503), never on a 4xx the client must fix first.
func TestProblemHeaders(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	do := func(name string, hdr map[string]string, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, s.Ingest.URL+"/v1/events", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		resp.Body.Close()
		return resp
	}
	json := map[string]string{"Content-Type": "application/json"}
	bearer := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + pbtest.Token}
	for _, tc := range []struct {
		name     string
		hdr      map[string]string
		body     string
		status   int
		wwwAuth  bool
		retryHdr bool
	}{
		{"no credentials", json, `{}`, http.StatusUnauthorized, true, false},
		{"invalid event", bearer, `{"id":"x"}`, http.StatusUnprocessableEntity, false, false},
		{"malformed JSON", bearer, `{`, http.StatusBadRequest, false, false},
	} {
		resp := do(tc.name, tc.hdr, tc.body)
		if resp.StatusCode != tc.status {
			t.Fatalf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		if got := resp.Header.Get("WWW-Authenticate"); (got == `Bearer realm="patchbay"`) != tc.wwwAuth || (got != "") != tc.wwwAuth {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, got)
		}
		if got := resp.Header.Get("Retry-After"); (got != "") != tc.retryHdr {
			t.Errorf("%s: Retry-After %q", tc.name, got)
		}
	}
}

// TestRequestsCountedByStatus: patchbay_ingest_requests_total labels the
// statuses ingest answers by their code and anything else by its class
// (a 200 from /healthz is "2xx").
func TestRequestsCountedByStatus(t *testing.T) {
	s := pbtest.Start(t, pbtest.Options{})
	reg := prometheus.NewRegistry()
	h, err := ingest.New(pbtest.IngestConfig(), s.JS, s.Stream.EventsStream, s.Stream.SubjectPrefix, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for _, path := range []string{"/healthz", "/nowhere"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := `
# HELP patchbay_ingest_requests_total Ingest HTTP requests by status code.
# TYPE patchbay_ingest_requests_total counter
patchbay_ingest_requests_total{code="2xx"} 1
patchbay_ingest_requests_total{code="404"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "patchbay_ingest_requests_total"); err != nil {
		t.Fatal(err)
	}
}
