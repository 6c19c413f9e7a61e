package ratelimit

import (
	"net/http"
	"testing"
	"time"
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
	emb := runNATS(t)
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
