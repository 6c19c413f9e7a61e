package crashtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/sandbox"
)

// concurrency wraps a provider and records the most requests it saw in
// flight at once for one contact.
type concurrency struct {
	h        http.Handler
	mu       sync.Mutex
	inflight map[string]int
	max      int
}

func (c *concurrency) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	c.mu.Lock()
	c.inflight[id]++
	c.max = max(c.max, c.inflight[id])
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.inflight[id]--
		c.mu.Unlock()
	}()
	c.h.ServeHTTP(w, r)
}

// TestSlowProvider: calls longer than the client timeout are retried until
// the provider is fast again; calls longer than the ack wait but within the
// timeout are kept alive with InProgress and never run twice in parallel.
func TestSlowProvider(t *testing.T) {
	r := newRig(t)
	cc := &concurrency{h: r.sk, inflight: map[string]int{}}
	srv := httptest.NewServer(cc)
	t.Cleanup(srv.Close)
	r.skURL = srv.URL
	n := size(40, 400)
	r.startIngest(nil)

	// Phase 1: 5 s answers, 2 s client timeout.
	r.sk.SetFaults(sandbox.Faults{Latency: 5 * time.Second})
	r.startWorker(map[string]string{"PATCHBAY_SKIPCALL_TIMEOUT": "2s", "PATCHBAY_WORKER_MAX_ATTEMPTS": "1000", "PATCHBAY_WORKER_BACKOFF_MAX": "500ms"})
	ctx, cancel := context.WithTimeout(context.Background(), budget(t))
	defer cancel()
	r.load(ctx, 0, n/2, 8).Wait()
	time.Sleep(3 * time.Second) // the fault itself: let timeouts happen
	if got := r.countApplied(n / 2); got != 0 {
		t.Fatalf("%d events applied through a provider slower than the timeout", got)
	}
	r.sk.SetFaults(sandbox.Faults{})
	r.arm() // armed only once the provider answers within the timeout
	r.settle(func() bool { return r.countApplied(n/2) == n/2 })
	r.disarm()
	r.workerStopped = true
	r.worker.Kill()

	// Phase 2: 2.5 s answers, 10 s timeout, 1 s ack wait: InProgress must
	// keep JetStream from handing the same event to a second delivery.
	r.sk.SetFaults(sandbox.Faults{Latency: 2500 * time.Millisecond})
	cc.mu.Lock()
	cc.max = 0
	cc.mu.Unlock()
	r.startWorker(map[string]string{"PATCHBAY_SKIPCALL_TIMEOUT": "10s", "PATCHBAY_WORKER_ACK_WAIT": "1s"})
	// 2.5 s calls answer within the timeout: progress at least every call,
	// once the killed worker's solo lease on the target has expired.
	r.armAfterKill()
	start := time.Now()
	r.load(ctx, n/2, n, 8).Wait()
	r.settle(func() bool { return r.countApplied(n) == n })
	cc.mu.Lock()
	most := cc.max
	cc.mu.Unlock()
	if most > 1 {
		t.Fatalf("a contact saw %d requests in flight at once: a slow call was redelivered in parallel", most)
	}
	r.report("provider 5 s (2 s timeout), then 2.5 s (1 s ack wait)", n, time.Since(start))
}

// TestOverload offers far more than ingest may hold in flight: it sheds
// with 503 + Retry-After instead of falling over, its memory stays bounded,
// and it serves normally afterwards.
func TestOverload(t *testing.T) {
	r := newRig(t)
	n := size(4000, 40000)
	r.startIngest(map[string]string{"PATCHBAY_INGEST_MAX_IN_FLIGHT": "4"})
	r.startWorker(nil)
	r.arm()
	ctx, cancel := context.WithTimeout(context.Background(), budget(t))
	defer cancel()
	start := time.Now()
	r.load(ctx, 0, n, 128).Wait()
	took := time.Since(start)
	if r.got503.Load() == 0 {
		t.Fatal("no request was shed: the overload did not reach ingest's limit")
	}
	_, peak, err := r.ingest.RSS()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("overload: %d events from 128 senders in %s, %d shed with 503, ingest peak RSS %.1f MiB", n, took.Round(time.Millisecond), r.got503.Load(), float64(peak)/(1<<20))
	// The race detector's shadow memory multiplies a process's RSS (5–10×
	// per the Go documentation), so a race-built ingest gets that margin.
	limit := uint64(100 << 20)
	if raceEnabled {
		limit *= 8
	}
	if uint64(peak) > limit {
		t.Fatalf("ingest peak RSS %d MiB under overload, limit %d MiB", peak>>20, limit>>20)
	}
	if r.ingest.Exited() {
		t.Fatalf("ingest died under overload:\n%s", r.ingest.Output())
	}
	r.report("128 senders vs MAX_IN_FLIGHT=4", n, took)
}
