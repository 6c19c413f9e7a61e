package ratelimit

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/natstest"
)

func TestParseHeadersStrictWithUnits(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		reset string
		want  time.Time
		ok    bool
	}{
		{"30", now.Add(30 * time.Second), true},              // seconds from now
		{"1800000060", time.Unix(1_800_000_060, 0), true},    // unix seconds
		{"1800000060000", time.Unix(1_800_000_060, 0), true}, // unix milliseconds
		{"10abc", time.Time{}, false},
		{"-5", time.Time{}, false},
		{"+5", time.Time{}, false},
		{"", time.Time{}, false},
	} {
		h := http.Header{}
		if tc.reset != "" {
			h.Set("X-RateLimit-Reset", tc.reset)
		}
		o, ok := parseHeaders(h, now)
		if ok != tc.ok || !o.Reset.Equal(tc.want) {
			t.Errorf("reset %q: got %v, %v; want %v, %v", tc.reset, o.Reset, ok, tc.want, tc.ok)
		}
	}
}

// TestImplausibleResetIgnored: a reset sent in milliseconds where seconds
// were meant (here a year ahead) must not pause the target for a year.
func TestImplausibleResetIgnored(t *testing.T) {
	emb := natstest.Server(t)
	b := replicas(t, emb, 1, testConfig(10, 2*time.Second))[0]
	ctx := testContext(t)
	if _, err := b.TryTake(ctx); err != nil {
		t.Fatal(err)
	}
	far := time.Now().Add(365 * 24 * time.Hour)
	if err := b.Observe(ctx, Observation{Limit: 10, Remaining: 0, Reset: far}); err != nil {
		t.Fatal(err)
	}
	if until, why := b.Blocked(); until.After(time.Now().Add(time.Hour)) {
		t.Fatalf("blocked until %v (%s) after an implausible reset", until, why)
	}
}

// staleDeadline is a context whose deadline has passed but whose Done has
// not fired yet: what a goroutine sees right after its process resumed
// from SIGSTOP, before the runtime ran the context's timer.
type staleDeadline struct {
	context.Context
	dl time.Time
}

func (c staleDeadline) Deadline() (time.Time, bool) { return c.dl, true }

func TestTransportRefusesPastDeadline(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	emb := natstest.Server(t)
	b := replicas(t, emb, 1, testConfig(10, 2*time.Second))[0]
	ctx := staleDeadline{Context: context.Background(), dl: time.Now().Add(-time.Second)}
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Transport(nil).RoundTrip(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RoundTrip past the deadline: %v, want context.DeadlineExceeded", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the server after the deadline", n)
	}
}
