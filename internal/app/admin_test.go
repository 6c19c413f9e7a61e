package app

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path, token string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// TestAdminListener: pprof is off unless asked for, a configured admin
// token guards every path, and /readyz there gives the reason.
func TestAdminListener(t *testing.T) {
	reg := NewRegistry()
	down := func(context.Context) error {
		return errors.New("JetStream stream PATCHBAY_EVENTS unavailable: nats: timeout")
	}

	h := Admin{Registry: reg, Ready: down}.Handler()
	if code, _ := get(t, h, "/debug/pprof/", ""); code != http.StatusNotFound {
		t.Fatalf("pprof by default: %d, want 404", code)
	}
	if code, _ := get(t, h, "/metrics", ""); code != http.StatusOK {
		t.Fatalf("metrics without a token configured: %d", code)
	}
	if code, body := get(t, h, "/readyz", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "PATCHBAY_EVENTS unavailable") {
		t.Fatalf("admin readyz: %d %q, want 503 with the reason", code, body)
	}

	const tok = "9f2c4e1a7b3d5f60819a2b3c4d5e6f70"
	h = Admin{Config: AdminConfig{PProf: true, Token: tok}, Registry: reg}.Handler()
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/cmdline"} {
		if code, _ := get(t, h, path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d, want 401", path, code)
		}
		if code, _ := get(t, h, path, "wrong-"+tok); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d, want 401", path, code)
		}
		if code, _ := get(t, h, path, tok); code != http.StatusOK {
			t.Errorf("%s with the token: %d, want 200", path, code)
		}
	}
}

func TestAdminConfigRefusesExposure(t *testing.T) {
	const tok = "9f2c4e1a7b3d5f60819a2b3c4d5e6f70"
	for _, tc := range []struct {
		name string
		cfg  AdminConfig
		addr string
		bad  bool
	}{
		{"defaults on all interfaces", AdminConfig{}, ":9090", false},
		{"pprof on loopback", AdminConfig{PProf: true}, "127.0.0.1:9090", false},
		{"pprof on ::1", AdminConfig{PProf: true}, "[::1]:9090", false},
		{"pprof on localhost", AdminConfig{PProf: true}, "localhost:9090", false},
		{"pprof on all interfaces", AdminConfig{PProf: true}, ":9090", true},
		{"pprof on 0.0.0.0", AdminConfig{PProf: true}, "0.0.0.0:9090", true},
		{"pprof on a pod IP", AdminConfig{PProf: true}, "10.0.0.7:9090", true},
		{"pprof everywhere with a token", AdminConfig{PProf: true, Token: tok}, ":9090", false},
		{"sample token", AdminConfig{Token: "replace-with-a-long-random-token"}, ":9090", true},
		{"changeme", AdminConfig{Token: "changeme"}, "127.0.0.1:9090", true},
		{"short token", AdminConfig{Token: "a1b2c3"}, ":9090", true},
		{"admin off", AdminConfig{PProf: true}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate(tc.addr)
			if (err != nil) != tc.bad {
				t.Fatalf("Validate(%q): %v, want error: %v", tc.addr, err, tc.bad)
			}
		})
	}
}

// TestServicesRefusePlaceholdersAtStart: the production commands exit with
// a configuration error, before connecting to anything, when a credential
// is a documentation placeholder.
func TestServicesRefusePlaceholdersAtStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  string
		env  map[string]string
	}{
		{"ingest token", "ingest", map[string]string{"PATCHBAY_INGEST_TOKENS": "replace-with-a-long-random-token"}},
		{"admin token", "ingest", map[string]string{"PATCHBAY_INGEST_TOKENS": "9f2c4e1a7b3d5f60819a2b3c4d5e6f70", "PATCHBAY_ADMIN_TOKEN": "changeme-changeme"}},
		{"skipcall key", "worker", map[string]string{"PATCHBAY_SKIPCALL_API_KEY": "sk_live_replace_me", "PATCHBAY_REVYOPS_API_KEY": "9f2c4e1a7b3d5f60"}},
		{"revyops key", "worker", map[string]string{"PATCHBAY_SKIPCALL_API_KEY": "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "PATCHBAY_REVYOPS_API_KEY": "replace-me"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A NATS URL nothing listens on: reaching Connect would retry
			// for PATCHBAY_NATS_CONNECT_WAIT and log a retry.
			t.Setenv("PATCHBAY_NATS_URL", "nats://127.0.0.1:1")
			t.Setenv("PATCHBAY_NATS_CONNECT_WAIT", "5s")
			t.Setenv("PATCHBAY_REVYOPS_BASE_URL", "https://revyops.example")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out strings.Builder
			code := CLI{Stdout: &out, Stderr: &out}.Run(context.Background(), []string{tc.cmd})
			if code != 1 || strings.Contains(out.String(), "not reachable") || !strings.Contains(out.String(), "sample value") {
				t.Fatalf("exit %d, want 1 naming the sample value before connecting:\n%s", code, out.String())
			}
		})
	}
}

// TestAdminReadyzDetail: the worker's /readyz answers JSON with each
// target's state, and 503 with the reason when not ready.
func TestAdminReadyzDetail(t *testing.T) {
	detail := func() any {
		return map[string]any{"targets": []map[string]any{{"target": "skipcall", "paused": true, "kind": "credentials"}}}
	}
	h := Admin{Registry: NewRegistry(), Detail: detail}.Handler()
	code, body := get(t, h, "/readyz", "")
	if code != http.StatusOK || !strings.Contains(body, `"ready":true`) || !strings.Contains(body, `"kind":"credentials"`) {
		t.Fatalf("readyz: %d %s, want 200 with the targets' state", code, body)
	}
	down := func(context.Context) error { return errors.New("stream unavailable") }
	h = Admin{Registry: NewRegistry(), Detail: detail, Ready: down}.Handler()
	if code, body := get(t, h, "/readyz", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, `"reason":"stream unavailable"`) {
		t.Fatalf("readyz when down: %d %s", code, body)
	}
}
