package ratelimit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/natstest"
)

// fixedWindows is a provider whose windows are fixed to the clock
// (multiples of window since the Unix epoch), unlike the sandbox's, which
// start at a key's first request. It answers 429 past limit and sends the
// Skipcall rate-limit headers (reset rounded up to the second).
type fixedWindows struct {
	limit   int
	window  time.Duration
	latency time.Duration

	mu     sync.Mutex
	cur    int64 // current window index
	count  int
	status map[int]int
}

func (f *fixedWindows) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	idx := now.UnixNano() / int64(f.window)
	f.mu.Lock()
	if idx != f.cur {
		f.cur, f.count = idx, 0
	}
	status := http.StatusOK
	if f.count >= f.limit {
		status = http.StatusTooManyRequests
	} else {
		f.count++
	}
	remaining := f.limit - f.count
	f.status[status]++
	f.mu.Unlock()
	reset := time.Unix(0, (idx+1)*int64(f.window))
	resetSec := reset.Unix()
	if reset.Nanosecond() > 0 {
		resetSec++
	}
	w.Header().Set("X-RateLimit-Limit", strconv.Itoa(f.limit))
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(resetSec, 10))
	time.Sleep(f.latency) // the request is counted on arrival, answered later
	w.WriteHeader(status)
}

// TestFixedProviderWindows: against a provider whose windows are fixed to
// the clock, a window of ours that straddles the provider's boundary is
// extended to the provider's reset by the first response after it, so the
// next window of ours does not start while the provider still counts the
// straddling requests. A trickle (three replicas, one request at a time
// each, slow answers) makes windows straddle.
func TestFixedProviderWindows(t *testing.T) {
	const (
		limit  = 12
		window = 2 * time.Second
		run    = 5 * window
	)
	f := &fixedWindows{limit: limit, window: window, latency: 400 * time.Millisecond, status: map[int]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	emb := natstest.Server(t)
	bs := replicas(t, emb, 3, testConfig(limit, window))
	ctx, cancel := context.WithTimeout(testContext(t), run)
	defer cancel()
	var wg sync.WaitGroup
	for _, b := range bs {
		hc := &http.Client{Transport: b.Transport(nil)}
		wg.Go(func() {
			for {
				g, err := b.Take(ctx)
				if err != nil {
					return
				}
				status, o, err := patch(WithGrant(context.Background(), g), hc, srv.URL, nil)
				if err != nil {
					continue
				}
				if status == http.StatusTooManyRequests {
					_ = b.Pause(context.Background(), o.Reset, "429")
				}
			}
		})
	}
	wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	t.Logf("statuses %v over %s", f.status, run)
	if n := f.status[http.StatusTooManyRequests]; n > 0 {
		t.Errorf("%d requests answered 429: our windows ran past the provider's", n)
	}
	if f.status[http.StatusOK] < 3*limit {
		t.Errorf("only %d requests accepted in %s: the budget is not used", f.status[http.StatusOK], run)
	}
}
