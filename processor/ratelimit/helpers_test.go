package ratelimit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/sandbox"
	"github.com/patchbay/patchbay/stream/embedded"
)

// testKey is the Skipcall key the sandbox accepts in these tests.
const testKey = "sk_test_Zq9xSecretKeyMaterial"

// connect opens a NATS connection of its own, as a worker replica would.

// testConfig is a Skipcall budget with a scaled window.
func testConfig(limit int, window time.Duration) Config {
	return Config{
		Name: "skipcall", Key: testKey, Limit: limit, Window: window,
		ResetMargin: window / 8, ProbeInitial: 200 * time.Millisecond, ProbeMax: 800 * time.Millisecond,
	}
}

// replicas starts n Budgets, each on its own NATS connection.
func replicas(t testing.TB, emb *embedded.Server, n int, cfg Config) []*Budget {
	t.Helper()
	out := make([]*Budget, n)
	for i := range out {
		js := natstest.Connect(t, emb, fmt.Sprintf("replica-%d", i))
		b, err := New(testContext(t), js, cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		out[i] = b
	}
	return out
}

// testContext ends at the test's deadline (or after two minutes).
func testContext(t testing.TB) context.Context {
	deadline := time.Now().Add(2 * time.Minute)
	if tt, ok := t.(*testing.T); ok {
		if d, ok := tt.Deadline(); ok {
			deadline = d
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

// skipcall runs a sandbox Skipcall limiting testKey to limit per window.
func skipcall(t testing.TB, limit int, window time.Duration) (*sandbox.Skipcall, string) {
	t.Helper()
	s, err := sandbox.NewSkipcall(sandbox.SkipcallConfig{APIKeys: []string{testKey}, RatePerMinute: limit, RateWindow: window, AutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

// contactID is the Skipcall contact the tests patch.
const contactID = "0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c"

// patch sends one Skipcall PATCH tagged with hdr and returns the status and
// the rate-limit observation.
func patch(ctx context.Context, c *http.Client, base string, hdr map[string]string) (int, Observation, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, base+"/v1/contacts/"+contactID, strings.NewReader(`{"city":"Paris"}`))
	if err != nil {
		return 0, Observation{}, err
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, Observation{}, err
	}
	defer resp.Body.Close()
	o, _ := ParseHeaders(resp.Header)
	return resp.StatusCode, o, nil
}

// tally counts statuses concurrently.
type tally struct {
	mu sync.Mutex
	n  map[int]int
}

func (t *tally) add(status int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[int]int{}
	}
	t.n[status]++
}

func (t *tally) get(status int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n[status]
}

// eventually polls cond every few milliseconds until it holds or the test's
// context ends.
func eventually(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s: %v", what, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// testLogger writes to the test log at debug level when PATCHBAY_TEST_LOG is
// set. (internal/pbtest has the same, but it imports processor, which will
// import this package.)
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PATCHBAY_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
