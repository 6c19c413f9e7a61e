// Package crashtest runs patchbay's real binaries as separate processes
// against a real NATS JetStream server and the sandbox providers, all on
// loopback, kills and restarts them, and checks that nothing acknowledged is
// lost. The fast variant runs in 'go test ./...'; PATCHBAY_CRASH_LONG=1
// makes every scenario bigger. 'go test -short' skips the package.
package crashtest

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/proc"
	"github.com/patchbay/patchbay/sandbox"
	"github.com/patchbay/patchbay/stream"
	"github.com/patchbay/patchbay/stream/embedded"
)

const (
	token = "crash-test-token-0123456789"
	skKey = "sk_test_crashtest"
)

var bin string // the patchbay binary, built once in TestMain

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "patchbay-crashtest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	root, err := proc.ModuleRoot()
	if err == nil {
		// The build gets the whole test timeout (-timeout), not a fixed
		// budget of its own: on a busy machine with cold caches it can take
		// minutes. m.Run's alarm starts only after it.
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if d := testTimeout(); d > 0 {
			ctx, cancel = context.WithTimeout(ctx, d)
		}
		start := time.Now()
		// A -race test binary gets a -race patchbay binary: the build then
		// reuses the packages just compiled for the test (a cold cache
		// compiles nats-server once, not twice), and the race detector
		// watches the processes too.
		var flags []string
		if raceEnabled {
			flags = append(flags, "-race")
		}
		bin, err = proc.Build(ctx, root, dir, flags...)
		cancel()
		if testing.Verbose() {
			fmt.Fprintf(os.Stderr, "crashtest: built the patchbay binary in %s\n", time.Since(start).Round(time.Millisecond))
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testTimeout is the value of go test's -timeout flag (0: none).
func testTimeout() time.Duration {
	if f := flag.Lookup("test.timeout"); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			if d, ok := g.Get().(time.Duration); ok {
				return d
			}
		}
	}
	return 0
}

// budget is how long t may still wait for something: until shortly before
// its deadline (-timeout), so a failure says what it waited for instead of
// the test binary panicking; without a deadline, an hour.
func budget(t *testing.T) time.Duration {
	dl, ok := t.Deadline()
	if !ok {
		return time.Hour
	}
	left := time.Until(dl)
	return left - min(left/10, 30*time.Second)
}

// size returns n, or long when PATCHBAY_CRASH_LONG is set.
func size(n, long int) int {
	if os.Getenv("PATCHBAY_CRASH_LONG") != "" {
		return long
	}
	return n
}

// ackWait is the worker's ack wait in the suite.
const ackWait = 2 * time.Second

// leaseTTL is the worker's per-contact lease in the suite: a worker that
// dies holding a contact's lease blocks that contact for up to this long
// (at least 5/4 of the slowest call the suite makes, 2.5 s).
const leaseTTL = 4 * time.Second

// fetchExpiry is how long the worker's pull request waits at the server
// (processor's fetchExpiry): a request lost when NATS restarts or a leader
// moves goes unnoticed for up to this long.
const fetchExpiry = 5 * time.Second

// guardSlack is what the stall guard allows beyond the ack wait: a provider
// call, a backoff step, a process start, a busy machine. The stall it is
// there to catch lasted 30 s.
const guardSlack = 5 * time.Second

// rig is one scenario's world: NATS, the Skipcall sandbox, ingest and worker
// processes, and a guard over the worker's progress.
type rig struct {
	t        *testing.T
	storeDir string
	natsPort int
	url      string // NATS URL(s) the processes and the guard use
	nats     *embedded.Server
	guard    *proc.Progress
	limit    time.Duration       // the guard's limit; ackWait + guardSlack unless a test sets it before arming
	js       jetstream.JetStream // the test's own connection (guard, queueing)
	armed    bool                // the guard was armed at least once
	// workerStopped is set while the test itself stops the worker.
	workerStopped bool
	sk            *sandbox.Skipcall
	skURL         string
	ingAddr       string
	ingest        *proc.Process
	worker        *proc.Process
	accepted      sync.Map // event index -> true once ingest answered 202
	got503        atomic.Int64
	noRetry       atomic.Int64 // 503s without Retry-After
}

func newRig(t *testing.T) *rig {
	t.Helper()
	if testing.Short() {
		t.Skip("process-level fault tests are skipped with -short")
	}
	r := &rig{t: t, storeDir: t.TempDir(), limit: ackWait + guardSlack}
	addr, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	r.natsPort, _ = strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
	r.url = fmt.Sprintf("nats://127.0.0.1:%d", r.natsPort)
	r.startNATS()
	t.Cleanup(func() {
		if r.nats != nil {
			r.nats.Shutdown()
		}
	})
	r.sk, err = sandbox.NewSkipcall(sandbox.SkipcallConfig{APIKeys: []string{skKey}, AutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r.sk)
	t.Cleanup(srv.Close)
	r.skURL = srv.URL
	if r.ingAddr, err = proc.FreeAddr(); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) startNATS() {
	r.t.Helper()
	emb, err := embedded.Run(embedded.Config{StoreDir: r.storeDir, Port: r.natsPort})
	if err != nil {
		r.t.Fatal(err)
	}
	r.nats = emb
}

func (r *rig) stopNATS() {
	r.nats.Shutdown()
	r.nats = nil
}

func (r *rig) natsURL() string { return r.url }

// arm starts the stall guard: from now on, until disarm, the worker must move
// the ack floor of every consumer of the events stream at least every ack
// wait + guardSlack while messages are pending. Scenarios arm it only while a
// worker runs, NATS serves and the provider answers.
func (r *rig) arm() {
	r.t.Helper()
	if r.guard == nil {
		// No consumer names: every consumer of the stream is watched, so a
		// split into one consumer per target is guarded too.
		var err error
		r.guard, err = proc.WatchProgress(context.Background(), r.jetStream(), proc.ProgressConfig{Stream: "PATCHBAY_EVENTS", Limit: r.limit})
		if err != nil {
			r.t.Fatal(err)
		}
		r.t.Cleanup(r.guard.Stop)
	}
	r.guard.Arm()
	r.armed = true
}

// jetStream returns the test's own JetStream connection, opened on first use.
func (r *rig) jetStream() jetstream.JetStream {
	r.t.Helper()
	if r.js == nil {
		nc, err := stream.Connect(context.Background(), r.natsURL(), "", "crashtest-observer")
		if err != nil {
			r.t.Fatal(err)
		}
		r.t.Cleanup(nc.Close)
		if r.js, err = jetstream.New(nc); err != nil {
			r.t.Fatal(err)
		}
	}
	return r.js
}

// armAfterKill arms the stall guard for the window after a worker died: what
// it held comes back after the ack wait, and the contacts it held wait for
// their leases to expire, so progress may pause for ack wait + lease TTL.
func (r *rig) armAfterKill() {
	r.t.Helper()
	r.arm()
	r.guard.ArmFor(ackWait + leaseTTL + guardSlack)
}

// armAfterNATSFault arms the stall guard for the window after NATS came back
// or a leader moved: a pull request lost with the old connection or leader
// is replaced after fetchExpiry, and deliveries whose acks were lost come
// back after the ack wait.
func (r *rig) armAfterNATSFault() {
	r.t.Helper()
	r.arm()
	r.guard.ArmFor(ackWait + fetchExpiry + guardSlack)
}

// disarm stops the stall guard before a deliberate fault.
func (r *rig) disarm() {
	if r.guard != nil {
		r.guard.Disarm()
	}
}

// pending returns the events not yet acknowledged: the events stream has
// work-queue retention, so an acknowledged event leaves it.
func (r *rig) pending(ctx context.Context) (uint64, error) {
	s, err := r.js.Stream(ctx, "PATCHBAY_EVENTS")
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// settle waits until cond holds; it gives up early once the events stream
// has had nothing pending for ack wait + guardSlack (nothing more will be
// delivered), and at the latest shortly before the test's deadline.
func (r *rig) settle(cond func() bool) bool {
	stop := time.Now().Add(budget(r.t))
	var idle time.Time
	for !cond() {
		r.checkWorker()
		now := time.Now()
		if now.After(stop) {
			return false
		}
		if r.js != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			n, err := r.pending(ctx)
			cancel()
			switch {
			case err != nil || n > 0:
				idle = time.Time{}
			case idle.IsZero():
				idle = now
			case now.Sub(idle) > ackWait+guardSlack:
				return cond()
			}
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	return true
}

func (r *rig) startIngest(extra map[string]string) {
	r.t.Helper()
	env := map[string]string{
		"PATCHBAY_NATS_URL": r.natsURL(), "PATCHBAY_INGEST_ADDR": r.ingAddr, "PATCHBAY_INGEST_ADMIN_ADDR": "",
		"PATCHBAY_INGEST_TOKENS": token, "PATCHBAY_INGEST_PUBLISH_TIMEOUT": "2s", "PATCHBAY_LOG_LEVEL": "warn",
	}
	for k, v := range extra {
		env[k] = v
	}
	p, err := proc.Start(bin, "ingest", []string{"ingest"}, env)
	if err != nil {
		r.t.Fatal(err)
	}
	r.ingest = p
	r.t.Cleanup(p.Kill)
	ctx, cancel := context.WithTimeout(context.Background(), budget(r.t))
	defer cancel()
	if err := proc.WaitHTTP(ctx, "http://"+r.ingAddr+"/readyz", 200); err != nil {
		r.t.Fatalf("%v\n%s", err, p.Output())
	}
}

// providerEnv points a worker at the sandbox with no client-side rate limit;
// everything else is the worker's default.
func (r *rig) providerEnv() map[string]string {
	return map[string]string{
		"PATCHBAY_NATS_URL": r.natsURL(), "PATCHBAY_WORKER_ADMIN_ADDR": "",
		"PATCHBAY_REVYOPS_BASE_URL": r.skURL, "PATCHBAY_REVYOPS_API_KEY": "unused",
		"PATCHBAY_SKIPCALL_BASE_URL": r.skURL, "PATCHBAY_SKIPCALL_API_KEY": skKey, "PATCHBAY_SKIPCALL_RATE_PER_MINUTE": "0",
		"PATCHBAY_LOG_LEVEL": "warn",
	}
}

// startWorker starts a worker with the suite's short ack wait and backoff,
// and extra on top.
func (r *rig) startWorker(extra map[string]string) {
	r.t.Helper()
	env := r.providerEnv()
	for k, v := range map[string]string{
		"PATCHBAY_WORKER_ACK_WAIT": ackWait.String(), "PATCHBAY_WORKER_BACKOFF_INITIAL": "100ms", "PATCHBAY_WORKER_BACKOFF_MAX": "1s",
		"PATCHBAY_WORKER_CONCURRENCY": "16", "PATCHBAY_WORKER_DRAIN_TIMEOUT": "5s", "PATCHBAY_WORKER_LEASE_TTL": leaseTTL.String(),
	} {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	r.startWorkerEnv(env)
}

// startWorkerEnv starts a worker with exactly env.
func (r *rig) startWorkerEnv(env map[string]string) {
	r.t.Helper()
	p, err := proc.Start(bin, "worker", []string{"worker"}, env)
	if err != nil {
		r.t.Fatal(err)
	}
	r.worker, r.workerStopped = p, false
	r.t.Cleanup(p.Kill)
}

func contactID(i int) string { return fmt.Sprintf("c0ffee00-0000-4000-8000-%012d", i) }

func eventBody(i int) []byte {
	b, _ := json.Marshal(map[string]any{
		"id": "ev-" + strconv.Itoa(i), "target": "skipcall", "contact_id": contactID(i),
		"occurred_at": "2026-11-25T10:00:00Z", "patch": map[string]any{"city": "C" + strconv.Itoa(i)},
	})
	return b
}

var client = &http.Client{Timeout: 5 * time.Second}

// post sends event i until ingest answers 202 or deadline passes, as a
// webhook sender does: on no answer, 5xx or 503 it retries with the same id.
func (r *rig) post(ctx context.Context, i int) {
	body := eventBody(i)
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+r.ingAddr+"/v1/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusAccepted:
				r.accepted.Store(i, true)
				return
			case http.StatusServiceUnavailable:
				r.got503.Add(1)
				if resp.Header.Get("Retry-After") == "" {
					r.noRetry.Add(1)
				}
			default:
				r.t.Errorf("event %d: unexpected status %d", i, resp.StatusCode)
				return
			}
		}
		select { // the client's retry pause, not synchronisation
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// load posts events [from, to) with conc senders.
func (r *rig) load(ctx context.Context, from, to, conc int) *sync.WaitGroup {
	var wg sync.WaitGroup
	next := make(chan int)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r.post(ctx, i)
			}
		}()
	}
	go func() {
		defer close(next)
		for i := from; i < to; i++ {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	return &wg
}

func (r *rig) applied(i int) bool {
	c, ok := r.sk.Contact(contactID(i))
	return ok && c["city"] == "C"+strconv.Itoa(i)
}

func (r *rig) countApplied(n int) int {
	k := 0
	for i := range n {
		if r.applied(i) {
			k++
		}
	}
	return k
}

// report checks the invariants over events [0, n) — everything accepted is
// applied, and the stall guard saw no span without progress — and logs the
// scenario's row.
func (r *rig) report(name string, n int, recovery time.Duration) {
	r.t.Helper()
	r.settle(func() bool {
		lost := 0
		r.accepted.Range(func(k, _ any) bool {
			if !r.applied(k.(int)) {
				lost++
			}
			return true
		})
		return lost == 0
	})
	accepted, lost, dupes := 0, 0, 0
	r.accepted.Range(func(k, _ any) bool {
		accepted++
		if !r.applied(k.(int)) {
			lost++
		}
		if r.sk.PatchCount(contactID(k.(int))) > 1 {
			dupes++
		}
		return true
	})
	stall := "—"
	if r.guard != nil {
		stall = r.guard.Longest().Length.Round(100 * time.Millisecond).String()
	}
	row := fmt.Sprintf("| %s | %d | %d | %d | %d | %d | %d | %s | %s |", name, n, accepted, r.countApplied(n), r.got503.Load(), lost, dupes, recovery.Round(time.Millisecond), stall)
	r.t.Log("| scenario | sent | 202 | applied | 503s | lost | re-applied (same value) | recovery | longest stall |")
	r.t.Log(row)
	if f := os.Getenv("PATCHBAY_CRASH_REPORT"); f != "" {
		if fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintln(fh, row)
			fh.Close()
		}
	}
	r.checkGuard()
	if lost != 0 {
		r.t.Fatalf("%d events acknowledged with 202 were never applied", lost)
	}
	if r.noRetry.Load() != 0 {
		r.t.Fatalf("%d 503 answers without Retry-After", r.noRetry.Load())
	}
}

// checkGuard fails the test if the stall guard saw a span without progress
// longer than its limit, or saw nothing at all while armed.
func (r *rig) checkGuard() {
	r.t.Helper()
	if !r.armed {
		return
	}
	if polls, err := r.guard.Polls(); polls == 0 {
		r.t.Errorf("the stall guard never read the consumers (last error: %v)", err)
	}
	if err := r.guard.Err(); err != nil {
		r.t.Errorf("the worker stopped making progress:\n%v\nworker output:\n%s", err, tail(r.worker))
	}
}

// tail returns the last lines p printed.
func tail(p *proc.Process) string {
	if p == nil {
		return ""
	}
	out := p.Output()
	if len(out) > 4000 {
		out = "…" + out[len(out)-4000:]
	}
	return out
}

func (r *rig) acceptedCount() int {
	k := 0
	r.accepted.Range(func(_, _ any) bool { k++; return true })
	return k
}

// waitUntil polls cond until it holds, failing the test shortly before its
// deadline, or at once if the worker process died by itself.
func (r *rig) waitUntil(what string, cond func() bool) {
	r.t.Helper()
	d := budget(r.t)
	deadline := time.Now().Add(d)
	for !cond() {
		r.checkWorker()
		if time.Now().After(deadline) {
			r.t.Fatalf("still waiting for %s after %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkWorker fails the test if the current worker process exited without
// being told to.
func (r *rig) checkWorker() {
	r.t.Helper()
	if r.worker != nil && r.worker.Exited() && !r.workerStopped {
		r.t.Fatalf("the worker exited by itself: %v\n%s", r.worker.Wait(time.Second), tail(r.worker))
	}
}

// TestWorkerSIGKILL kills the worker in the middle of a stream of deliveries
// and restarts it: unacknowledged deliveries come back after the ack wait.
func TestWorkerSIGKILL(t *testing.T) {
	r := newRig(t)
	n := size(300, 5000)
	r.startIngest(nil)
	r.sk.SetFaults(sandbox.Faults{Latency: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), budget(t))
	defer cancel()
	r.load(ctx, 0, n, 16).Wait()
	r.startWorker(nil)
	// Armed once the worker delivers: a race-built worker on a busy machine
	// took 10 s to set up its consumers and buckets.
	r.waitUntil("the worker delivering", func() bool { return r.countApplied(n) > 0 })
	r.arm()
	r.waitUntil("a third applied", func() bool { return r.countApplied(n) >= n/3 })
	r.disarm()
	r.workerStopped = true
	r.worker.Kill()
	killedAt := time.Now()
	if r.countApplied(n) == n {
		t.Fatal("everything was applied before the kill; the scenario proves nothing")
	}
	r.startWorker(nil)
	r.armAfterKill()
	r.settle(func() bool { return r.countApplied(n) == n })
	r.report("worker SIGKILL mid-stream", n, time.Since(killedAt))
}

// TestIngestSIGKILL kills ingest under load and restarts it; senders retry
// unanswered requests with the same id, and JetStream deduplicates them.
func TestIngestSIGKILL(t *testing.T) {
	r := newRig(t)
	n := size(600, 10000)
	r.startIngest(nil)
	r.startWorker(nil)
	r.arm() // the worker keeps going while ingest dies
	ctx, cancel := context.WithTimeout(context.Background(), budget(t))
	defer cancel()
	wg := r.load(ctx, 0, n, 16)
	r.waitUntil("a third accepted", func() bool { return r.acceptedCount() >= n/3 })
	r.ingest.Kill()
	killedAt := time.Now()
	r.startIngest(nil)
	recovery := time.Since(killedAt)
	wg.Wait()
	r.report("ingest SIGKILL under load", n, recovery)
	for i := range n {
		if c := r.sk.PatchCount(contactID(i)); c > 1 {
			// A retried request whose first try was stored must be deduplicated.
			t.Fatalf("event %d applied %d times: a retried webhook was stored twice", i, c)
		}
	}
}

// TestNATSOutage stops the NATS server under load and starts it again on the
// same port and store: ingest answers 503 with Retry-After meanwhile and
// both processes reconnect by themselves.
func TestNATSOutage(t *testing.T) {
	r := newRig(t)
	n := size(600, 10000)
	outage := time.Duration(size(3, 10)) * time.Second
	r.startIngest(nil)
	r.startWorker(nil)
	r.arm()
	ctx, cancel := context.WithTimeout(context.Background(), budget(t))
	defer cancel()
	wg := r.load(ctx, 0, n, 16)
	r.waitUntil("a third accepted", func() bool { return r.acceptedCount() >= n/3 })
	r.disarm()
	r.stopNATS()
	time.Sleep(outage) // the fault itself
	r.startNATS()
	back := time.Now()
	r.armAfterNATSFault() // the worker must find its way back by itself
	rctx, rcancel := context.WithTimeout(context.Background(), budget(t))
	defer rcancel()
	if err := proc.WaitHTTP(rctx, "http://"+r.ingAddr+"/readyz", 200); err != nil {
		t.Fatalf("ingest did not recover: %v\n%s", err, r.ingest.Output())
	}
	recovery := time.Since(back)
	wg.Wait()
	if r.got503.Load() == 0 {
		t.Fatal("no 503 during the outage: the scenario did not reach ingest")
	}
	if r.ingest.Exited() || r.worker.Exited() {
		t.Fatalf("a process died during the outage\ningest:\n%s\nworker:\n%s", r.ingest.Output(), r.worker.Output())
	}
	r.report(fmt.Sprintf("NATS down %s under load", outage), n, recovery)
}

// TestGracefulShutdown sends SIGTERM to the worker with slow deliveries in
// flight and to ingest under load: both exit 0 within their grace periods,
// and whatever was in flight is delivered after a restart.
func TestGracefulShutdown(t *testing.T) {
	r := newRig(t)
	n := size(3000, 20000)
	r.startIngest(map[string]string{"PATCHBAY_INGEST_SHUTDOWN_TIMEOUT": "5s"})
	r.sk.SetFaults(sandbox.Faults{Latency: 200 * time.Millisecond})
	r.startWorker(nil)
	r.arm()
	ctx, cancel := context.WithTimeout(context.Background(), budget(t))
	defer cancel()
	wg := r.load(ctx, 0, n, 8)
	r.waitUntil("requests under way", func() bool { return r.acceptedCount() >= 50 })

	start := time.Now()
	if err := r.ingest.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := r.ingest.Wait(15 * time.Second); err != nil {
		t.Fatalf("ingest after SIGTERM: %v\n%s", err, r.ingest.Output())
	}
	if r.acceptedCount() >= n {
		t.Fatal("all events were accepted before ingest stopped; it was not under load")
	}
	t.Logf("ingest exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))

	r.waitUntil("deliveries under way", func() bool { return r.countApplied(n) >= 10 })
	r.disarm()
	start = time.Now()
	r.workerStopped = true
	if err := r.worker.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := r.worker.Wait(15 * time.Second); err != nil {
		t.Fatalf("worker after SIGTERM: %v\n%s", err, r.worker.Output())
	}
	t.Logf("worker exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))

	r.startIngest(nil)
	r.sk.SetFaults(sandbox.Faults{})
	r.startWorker(nil)
	r.arm()
	restarted := time.Now()
	wg.Wait()
	r.report("SIGTERM ingest and worker under load", n, time.Since(restarted))
}

// TestProviderOutage makes the provider answer 503 for a while: events are
// retried with backoff, none is dead-lettered, and the retries show in the
// worker's metrics.
func TestProviderOutage(t *testing.T) {
	r := newRig(t)
	n := size(200, 2000)
	outage := time.Duration(size(3, 60)) * time.Second
	admin, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	r.startIngest(nil)
	r.sk.FailNext(-1, http.StatusServiceUnavailable)
	r.startWorker(map[string]string{"PATCHBAY_WORKER_ADMIN_ADDR": admin, "PATCHBAY_WORKER_BACKOFF_MAX": "2s", "PATCHBAY_WORKER_MAX_ATTEMPTS": "1000"})
	ctx, cancel := context.WithTimeout(context.Background(), budget(t))
	defer cancel()
	r.load(ctx, 0, n, 16).Wait()
	time.Sleep(outage) // the fault itself
	r.sk.FailNext(0, 0)
	back := time.Now()
	r.arm() // armed only once the provider answers
	r.settle(func() bool { return r.countApplied(n) == n })
	recovery := time.Since(back)

	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	_, _ = metrics.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`patchbay_worker_deliveries_total{outcome="retry",target="skipcall"}`, `patchbay_worker_retry_delay_seconds_count{class="transient",target="skipcall"}`} {
		if !strings.Contains(metrics.String(), want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
	if strings.Contains(metrics.String(), "patchbay_worker_dead_letters_total{") {
		t.Fatal("an outage shorter than the retry age dead-lettered events")
	}
	r.report(fmt.Sprintf("provider 503 for %s", outage), n, recovery)
}
