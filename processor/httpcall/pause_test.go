package httpcall

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

var now = time.Unix(1_800_000_000, 0)

func TestParseReset(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want time.Time
		err  error
	}{
		{"1800000042", now.Add(42 * time.Second), nil},    // Unix seconds
		{"1800000042000", now.Add(42 * time.Second), nil}, // Unix milliseconds
		{"1800000042999", now.Add(42999 * time.Millisecond), nil},
		{"42", now.Add(42 * time.Second), nil}, // seconds from now
		{"0", now, nil},
		{"999999999", now.Add(999999999 * time.Second), nil}, // largest delta
		{"1000000000", time.Unix(1e9, 0), nil},               // smallest epoch seconds
		{"99999999999", time.Unix(99999999999, 0), nil},
		{"100000000000", time.UnixMilli(1e11), nil}, // smallest epoch ms
		{"10abc", time.Time{}, ErrMalformed},
		{"abc", time.Time{}, ErrMalformed},
		{"", time.Time{}, ErrMalformed},
		{"-5", time.Time{}, ErrMalformed},
		{"+5", time.Time{}, ErrMalformed},
		{"1.5", time.Time{}, ErrMalformed},
		{" 42", time.Time{}, ErrMalformed},
		{"0x10", time.Time{}, ErrMalformed},
		{"1e9", time.Time{}, ErrMalformed},
	} {
		got, err := ParseReset(tc.v, now)
		if !errors.Is(err, tc.err) || !got.Equal(tc.want) {
			t.Errorf("ParseReset(%q) = %v, %v; want %v, %v", tc.v, got, err, tc.want, tc.err)
		}
	}
	// Too large for any unit: far in the future, so that the cap applies.
	if got, err := ParseReset("99999999999999999999999", now); err != nil || got.Sub(now) < 100*365*24*time.Hour {
		t.Errorf("huge reset: %v, %v", got, err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	date := now.Add(90 * time.Second).UTC()
	for _, tc := range []struct {
		v    string
		want time.Time
		err  error
	}{
		{"120", now.Add(2 * time.Minute), nil},
		{"0", now, nil},
		{date.Format(http.TimeFormat), date, nil},
		{date.Format(time.RFC850), date, nil},
		{date.Format(time.ANSIC), date, nil},
		{"1800000060", now.Add(time.Minute), nil},    // a Unix time, sent where seconds belong
		{"1800000060000", now.Add(time.Minute), nil}, // in milliseconds
		{"10abc", time.Time{}, ErrMalformed},
		{"1.5", time.Time{}, ErrMalformed},
		{"-1", time.Time{}, ErrMalformed},
		{"soon", time.Time{}, ErrMalformed},
		{"2026-11-25T10:00:00Z", time.Time{}, ErrMalformed},
	} {
		got, err := ParseRetryAfter(tc.v, now)
		if !errors.Is(err, tc.err) || !got.Equal(tc.want) {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.v, got, err, tc.want, tc.err)
		}
	}
}

// TestPausesCapLogAndCount: every pause is capped at the configured maximum,
// and each implausible header is logged and counted by problem.
func TestPausesCapLogAndCount(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	p := NewPauses("skipcall", 10*time.Minute, WithLogger(log), WithRegisterer(reg))
	// A second client on the same registry shares the counter.
	q := NewPauses("revyops", 0, WithRegisterer(reg))
	h := func(k, v string) http.Header { return http.Header{k: {v}} }
	for _, tc := range []struct {
		name string
		p    *Pauses
		got  time.Time
		want time.Time
	}{
		{"plausible reset", p, p.Reset(h("X-Ratelimit-Reset", "1800000042"), now), now.Add(42 * time.Second)},
		{"reset in ms taken for seconds would be 55,000 years: read as ms", p, p.Reset(h("X-Ratelimit-Reset", "1800000600000"), now), now.Add(10 * time.Minute)},
		{"reset beyond the cap", p, p.Reset(h("X-Ratelimit-Reset", "1800003600"), now), now.Add(10 * time.Minute)},
		{"malformed reset", p, p.Reset(h("X-Ratelimit-Reset", "10abc"), now), time.Time{}},
		{"retry-after beyond the cap", p, p.RetryAfter(h("Retry-After", "86400"), now), now.Add(10 * time.Minute)},
		{"malformed retry-after", p, p.RetryAfter(h("Retry-After", "10abc"), now), time.Time{}},
		{"absent", p, p.RetryAfter(http.Header{}, now), time.Time{}},
		{"default cap is 1h", q, q.RetryAfter(h("Retry-After", "86400"), now), now.Add(time.Hour)},
		{"nil Pauses caps at 1h", nil, (*Pauses)(nil).Reset(h("X-Ratelimit-Reset", "1831536000"), now), now.Add(time.Hour)},
	} {
		if !tc.got.Equal(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	for _, c := range []struct {
		target, header, problem string
		want                    float64
	}{
		{"skipcall", "X-RateLimit-Reset", "capped", 1},
		{"skipcall", "X-RateLimit-Reset", "malformed", 1},
		{"skipcall", "Retry-After", "capped", 1},
		{"skipcall", "Retry-After", "malformed", 1},
		{"revyops", "Retry-After", "capped", 1},
	} {
		var m dto.Metric
		if err := counterOf(t, reg).WithLabelValues(c.target, c.header, c.problem).Write(&m); err != nil {
			t.Fatal(err)
		}
		got := m.GetCounter().GetValue()
		if got != c.want {
			t.Errorf("implausible{%s,%s,%s} = %v, want %v", c.target, c.header, c.problem, got, c.want)
		}
	}
	if n := strings.Count(logs.String(), "implausible rate-limit header"); n != 4 {
		t.Errorf("%d warnings logged, want 4 (one per implausible header of the logging client):\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `value="\"10abc\""`) {
		t.Errorf("the warning does not show the value:\n%s", logs.String())
	}
}

// counterOf returns the registry's implausible-header counter.
func counterOf(t *testing.T, reg *prometheus.Registry) *prometheus.CounterVec {
	t.Helper()
	var p Pauses
	WithRegisterer(reg)(&p)
	if p.counter == nil {
		t.Fatal("no counter registered")
	}
	return p.counter
}
