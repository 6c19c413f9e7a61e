package processor

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/logtest"
)

// fetchFailed is the warning of a pull request that failed or ended with
// an error.
const fetchFailed = "fetch"

// fetchEnv is a fetcher of revyops' consumer on an embedded server, logging
// to tap, with room and maxBatch 2; its pull requests are counted.
type fetchEnv struct {
	*embeddedEnv
	tap      *logtest.Recorder
	cons     jetstream.Consumer
	f        *fetcher
	out      chan jetstream.Msg
	requests *atomic.Int64
	first    atomic.Pointer[time.Time] // when the first pull request arrived
}

// newFetchEnv creates the consumer and the fetcher; js is the connection
// the fetcher pulls on. The fetcher is not running.
func newFetchEnv(t *testing.T, e *embeddedEnv, js jetstream.JetStream) *fetchEnv {
	t.Helper()
	ctx := testCtx(t)
	cc := e.scfg.TargetConsumerConfig("revyops", time.Minute, 16)
	if _, err := e.js.CreateOrUpdateConsumer(ctx, e.scfg.EventsStream, cc); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, e.scfg.EventsStream, cc.Durable)
	if err != nil {
		t.Fatal(err)
	}
	fe := &fetchEnv{embeddedEnv: e, cons: cons, out: make(chan jetstream.Msg), requests: new(atomic.Int64)}
	sub, err := e.nc.Subscribe("$JS.API.CONSUMER.MSG.NEXT."+e.scfg.EventsStream+"."+cc.Durable, func(*nats.Msg) {
		now := time.Now()
		fe.first.CompareAndSwap(nil, &now)
		fe.requests.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var log *slog.Logger
	fe.tap, log = logtest.New()
	fe.f = newFetcher(cons, 2, 2, log)
	return fe
}

// run runs the fetcher until stop is called; stop returns once run has.
func (fe *fetchEnv) run(t *testing.T) (done <-chan struct{}, stop func()) {
	ctx, cancel := context.WithCancel(testCtx(t))
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		fe.f.run(ctx, fe.out)
	}()
	stop = func() {
		cancel()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("the fetcher did not stop 10 s after its context ended")
		}
	}
	t.Cleanup(stop)
	return ch, stop
}

// awaitRequests polls until the consumer has received n pull requests.
func (fe *fetchEnv) awaitRequests(t *testing.T, n int64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for fe.requests.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d pull requests after %s, want %d", fe.requests.Load(), d, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFetchWarnsOnlyWhenABatchFails: a pull request that is filled, or that
// expires with nothing to deliver, is routine and logs nothing; one that
// ends with an error (here the consumer is deleted under it) is logged as
// a warning with the cause.
func TestFetchWarnsOnlyWhenABatchFails(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t)
	fe := newFetchEnv(t, e, e.js)
	_, stop := fe.run(t)
	for _, id := range []string{"1", "2"} {
		if _, err := e.js.Publish(testCtx(t), "contacts.patch.revyops."+id, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		select {
		case m := <-fe.out:
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no message fetched 10 s after it was published")
		}
	}
	fe.f.release(2)
	// The batch of 2 was full; the next request finds nothing and expires
	// after fetchExpiry; the one after it shows that it has ended.
	fe.awaitRequests(t, 3, fetchExpiry+15*time.Second)
	if rs := fe.tap.Records(fetchFailed); len(rs) != 0 {
		t.Fatalf("routine pull requests logged: %+v", rs)
	}

	if err := e.js.DeleteConsumer(testCtx(t), e.scfg.EventsStream, e.scfg.TargetConsumer("revyops")); err != nil {
		t.Fatal(err)
	}
	r := fe.tap.Await(t, 10*time.Second, fetchFailed, 1)[0]
	if err, _ := r.Attrs["err"].Any().(error); r.Level != slog.LevelWarn || !errors.Is(err, jetstream.ErrConsumerDeleted) {
		t.Fatalf("logged %+v, want a warning with the consumer's deletion", r)
	}
	stop()
	t.Logf("%d warnings, %d pull requests", len(fe.tap.Records(fetchFailed)), fe.requests.Load())
}

// TestFailedPullRequestIsLoggedAndRetried: a pull request that cannot be
// sent (here the fetcher's connection is closed) is logged as a warning with
// the cause, and tried again a quarter of a second later, for as long as the
// fetcher runs.
func TestFailedPullRequestIsLoggedAndRetried(t *testing.T) {
	t.Parallel()
	e := startEmbedded(t)
	nc, js := e.connect(t, "fetcher")
	fe := newFetchEnv(t, e, js)
	done, stop := fe.run(t)
	fe.awaitRequests(t, 1, 10*time.Second)
	nc.Close()

	rs := fe.tap.Await(t, 10*time.Second, fetchFailed, 3)
	for _, r := range rs[1:3] { // the first may be the end of the request that was out
		if err, _ := r.Attrs["err"].Any().(error); r.Level != slog.LevelWarn || !errors.Is(err, nats.ErrConnectionClosed) {
			t.Fatalf("logged %+v, want a warning with the closed connection", r)
		}
	}
	if gap := rs[2].Time.Sub(rs[1].Time); gap < 250*time.Millisecond {
		t.Fatalf("failed pull requests %s apart, want at least 250ms", gap)
	}
	select {
	case <-done:
		t.Fatal("the fetcher stopped after failed pull requests, with its context alive")
	default:
	}
	stop()
}

// TestGatherWaitsOnlyBelowAQuarter: with less than a quarter of the largest
// batch free, gather waits gatherWait for more room before the pull request
// goes out; with that much free, it takes what is free.
func TestGatherWaitsOnlyBelowAQuarter(t *testing.T) {
	t.Parallel()
	for _, free := range []int{0, 2, 3, 15} {
		f := &fetcher{room: make(chan struct{}, 16), maxBatch: 16}
		f.release(free)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		got := f.gather(ctx)
		ended := ctx.Err()
		cancel()
		if got != free {
			t.Errorf("%d free: gather took %d", free, got)
		}
		if ended != nil {
			t.Errorf("%d free: gather waited until its context ended, not gatherWait", free)
		}
		// run holds one slot, so gather has a quarter (4) with 3 free.
		if waited := time.Since(start); free < 3 && waited < gatherWait {
			t.Errorf("%d free: gather returned after %s, want at least %s", free, waited, gatherWait)
		}
	}
}
