package httpcall

import (
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxPause caps a provider-imposed pause when a client sets no cap.
const DefaultMaxPause = time.Hour

// ErrMalformed is returned for a rate-limit header that is neither an
// unsigned integer nor, for Retry-After, an HTTP date.
var ErrMalformed = errors.New("httpcall: malformed rate-limit header")

// Integer values are read by magnitude, since providers differ in what they
// send: below 1e9 a number of seconds from now (1e9 s is 31 years, so no
// epoch time since 2001 is this small), from 1e9 Unix seconds, from 1e11
// Unix milliseconds (1e11 s would be the year 5138; 1e11 ms is 1973).
const (
	epochSeconds = 1e9
	epochMillis  = 1e11
)

// ParseReset reads an X-RateLimit-Reset value: digits only, in delta
// seconds, Unix seconds or Unix milliseconds by magnitude (see above).
// Anything else, "10abc", "-5" or "1.5" included, is ErrMalformed.
func ParseReset(v string, now time.Time) (time.Time, error) {
	n, err := parseUint(v)
	if err != nil {
		return time.Time{}, err
	}
	return instant(n, now), nil
}

// ParseRetryAfter reads a Retry-After value (RFC 9110 §10.2.3): an HTTP
// date, or digits read as ParseReset reads them (delta seconds, as the RFC
// says, unless the magnitude shows a Unix time). Anything else is
// ErrMalformed.
func ParseRetryAfter(v string, now time.Time) (time.Time, error) {
	if n, err := parseUint(v); err == nil {
		return instant(n, now), nil
	}
	if t, err := http.ParseTime(v); err == nil {
		return t, nil
	}
	return time.Time{}, ErrMalformed
}

// parseUint accepts ASCII digits only; a value too large for uint64 reads
// as the largest one (the provider means "a long time"; the cap applies).
func parseUint(v string) (uint64, error) {
	if v == "" {
		return 0, ErrMalformed
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, ErrMalformed
		}
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return math.MaxUint64, nil
	}
	return n, nil
}

func instant(n uint64, now time.Time) time.Time {
	const maxSecs = 1 << 33 // 272 years: no overflow below, capped anyway
	switch {
	case n < epochSeconds:
		return now.Add(time.Duration(n) * time.Second)
	case n < epochMillis:
		return time.Unix(int64(n), 0)
	case n < math.MaxInt64:
		return time.UnixMilli(int64(n))
	}
	return now.Add(maxSecs * time.Second)
}

// Pauses reads the pauses a provider imposes through its response headers,
// strictly, and caps each at a maximum. A malformed header, or one asking
// for longer than the cap, is logged and counted in
// patchbay_worker_provider_header_implausible_total{target,header,problem}.
// A nil *Pauses reads with DefaultMaxPause and neither logs nor counts.
type Pauses struct {
	target  string
	max     time.Duration
	log     *slog.Logger
	counter *prometheus.CounterVec
}

// Option configures a Pauses.
type Option func(*Pauses)

// WithLogger logs implausible headers to log.
func WithLogger(log *slog.Logger) Option { return func(p *Pauses) { p.log = log } }

// WithRegisterer counts implausible headers in reg. Several clients may
// share one registry: they share the counter.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(p *Pauses) {
		if reg == nil {
			return
		}
		c := prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchbay_worker_provider_header_implausible_total",
			Help: "Rate-limit headers (Retry-After, X-RateLimit-Reset) that were malformed or asked for a pause beyond the cap, by target, header and problem (malformed, capped).",
		}, []string{"target", "header", "problem"})
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				c, _ = are.ExistingCollector.(*prometheus.CounterVec)
			} else {
				c = nil
			}
		}
		p.counter = c
	}
}

// NewPauses returns a Pauses for target capping every pause at max
// (DefaultMaxPause if max ≤ 0).
func NewPauses(target string, max time.Duration, opts ...Option) *Pauses {
	if max <= 0 {
		max = DefaultMaxPause
	}
	p := &Pauses{target: target, max: max}
	for _, o := range opts {
		o(p)
	}
	return p
}

// RetryAfter returns when the Retry-After header of h lets requests resume,
// capped at now + the maximum pause; zero when it is absent or malformed.
func (p *Pauses) RetryAfter(h http.Header, now time.Time) time.Time {
	return p.read(h, "Retry-After", "Retry-After", ParseRetryAfter, now)
}

// Reset returns when the X-RateLimit-Reset header of h says the window
// resets, capped at now + the maximum pause; zero when it is absent or
// malformed.
func (p *Pauses) Reset(h http.Header, now time.Time) time.Time {
	return p.read(h, "X-RateLimit-Reset", "X-Ratelimit-Reset", ParseReset, now)
}

// read reads header name, whose canonical form (the key http.Header holds
// it under) is key: Get of the canonical form finds the same value without
// allocating the canonical copy on every response.
func (p *Pauses) read(h http.Header, name, key string, parse func(string, time.Time) (time.Time, error), now time.Time) time.Time {
	v := h.Get(key)
	if v == "" {
		return time.Time{}
	}
	max := DefaultMaxPause
	if p != nil {
		max = p.max
	}
	t, err := parse(v, now)
	if err != nil {
		p.implausible(name, v, "malformed")
		return time.Time{}
	}
	if t.Sub(now) > max {
		p.implausible(name, v, "capped")
		return now.Add(max)
	}
	return t
}

func (p *Pauses) implausible(header, value, problem string) {
	if p == nil {
		return
	}
	if p.counter != nil {
		p.counter.WithLabelValues(p.target, header, problem).Inc()
	}
	if p.log != nil {
		if len(value) > 64 {
			value = value[:64] + "…"
		}
		p.log.Warn("provider sent an implausible rate-limit header", "provider", p.target, "header", header,
			"value", strconv.Quote(value), "problem", problem, "max_pause", p.max)
	}
}
