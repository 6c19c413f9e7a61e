package lease_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/lease"
	"github.com/patchbay/patchbay/stream/embedded"
)

// connect returns a client of its own on emb, closed at cleanup.
func connect(t testing.TB, emb *embedded.Server) jetstream.JetStream {
	t.Helper()
	return natstest.Connect(t, emb, t.Name())
}

func newLeases(t testing.TB, js jetstream.JetStream, cfg lease.Config) *lease.Leases {
	t.Helper()
	l, err := lease.New(natstest.Context(t), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// acquireEventually polls Acquire until it succeeds; it fails the test on
// any error but ErrHeld, and when ctx ends.
func acquireEventually(t *testing.T, ctx context.Context, l *lease.Leases, key string) *lease.Lease {
	t.Helper()
	for {
		le, err := l.Acquire(ctx, key)
		if err == nil {
			return le
		}
		if !errors.Is(err, lease.ErrHeld) {
			t.Fatalf("acquire %s: %v", key, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("acquire %s: still held when the test's time ran out", key)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestAcquireExclusiveUnderRace(t *testing.T) {
	ctx := natstest.Context(t)
	js := natstest.JetStream(t)
	// Two Leases values share the bucket, as two worker processes would.
	ls := []*lease.Leases{newLeases(t, js, lease.Config{}), newLeases(t, js, lease.Config{})}
	const goroutines, wantAcquired = 16, 200
	var holders, acquired, held, violations atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := ls[g%len(ls)]
			for acquired.Load() < wantAcquired {
				le, err := l.Acquire(ctx, "skipcall.0b7e4c6a-1f2d-4e3a-9b8c-7d6e5f4a3b2c")
				if errors.Is(err, lease.ErrHeld) {
					held.Add(1)
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				if holders.Add(1) != 1 {
					violations.Add(1)
				}
				acquired.Add(1)
				time.Sleep(200 * time.Microsecond) // the work done under the lease, widening the window
				holders.Add(-1)
				if err := le.Release(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if v := violations.Load(); v != 0 {
		t.Fatalf("%d times two holders had the lease at once", v)
	}
	if held.Load() == 0 {
		t.Fatalf("no Acquire ever found the lease held: the race was not exercised")
	}
	t.Logf("%d acquisitions, %d refused as held", acquired.Load(), held.Load())
}

func TestDifferentKeysIndependent(t *testing.T) {
	ctx := natstest.Context(t)
	l := newLeases(t, natstest.JetStream(t), lease.Config{})
	a, err := l.Acquire(ctx, "skipcall.a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Acquire(ctx, "skipcall.b")
	if err != nil {
		t.Fatalf("another key while a is held: %v", err)
	}
	if _, err := l.Acquire(ctx, "skipcall.a"); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("a again: err = %v, want ErrHeld", err)
	}
	for _, le := range []*lease.Lease{a, b} {
		if err := le.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Released: free again at once (over the release's marker).
	again, err := l.Acquire(ctx, "skipcall.a")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if again.Key() != "skipcall.a" {
		t.Fatalf("Key = %q", again.Key())
	}
	if _, err := l.Acquire(ctx, "bad key"); err == nil || errors.Is(err, lease.ErrHeld) {
		t.Fatalf("invalid key: err = %v", err)
	}
}

func TestExpiryFreesKey(t *testing.T) {
	ctx := natstest.Context(t)
	const ttl = time.Second
	l := newLeases(t, natstest.JetStream(t), lease.Config{TTL: ttl, Margin: 300 * time.Millisecond})
	before := time.Now()
	dead, err := l.Acquire(ctx, "revyops.42") // its holder "dies": never released
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	if d := dead.Deadline(); d.Before(before.Add(700*time.Millisecond)) || d.After(after.Add(700*time.Millisecond)) {
		t.Fatalf("Deadline %s not Acquire's start + TTL - margin (between %s and %s)", d, before.Add(700*time.Millisecond), after.Add(700*time.Millisecond))
	}
	next := acquireEventually(t, ctx, l, "revyops.42")
	// The server measures the TTL from its store time, after before.
	if waited := time.Since(before); waited < ttl {
		t.Fatalf("the lease was free after %s, before its TTL %s", waited, ttl)
	}
	if !time.Now().Before(next.Deadline()) {
		t.Fatalf("a fresh lease's deadline %s has passed", next.Deadline())
	}
}

func TestReleaseOfExpiredLeaseLeavesNewHolder(t *testing.T) {
	ctx := natstest.Context(t)
	l := newLeases(t, natstest.JetStream(t), lease.Config{TTL: time.Second})
	old, err := l.Acquire(ctx, "skipcall.c")
	if err != nil {
		t.Fatal(err)
	}
	cur := acquireEventually(t, ctx, l, "skipcall.c") // after old expired
	if err := old.Release(ctx); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("release of the expired lease: err = %v, want ErrLost", err)
	}
	if _, err := l.Acquire(ctx, "skipcall.c"); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("the new holder's lease was freed by the old holder's release: err = %v", err)
	}
	if err := cur.Release(ctx); err != nil {
		t.Fatalf("new holder's release: %v", err)
	}
	if _, err := l.Acquire(ctx, "skipcall.c"); err != nil {
		t.Fatalf("after the new holder's release: %v", err)
	}
}

func TestReleaseOfExpiredUntakenLease(t *testing.T) {
	ctx := natstest.Context(t)
	js := natstest.JetStream(t)
	l := newLeases(t, js, lease.Config{TTL: time.Second})
	le, err := l.Acquire(ctx, "skipcall.d")
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, lease.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := kv.Get(ctx, "skipcall.d"); errors.Is(err, jetstream.ErrKeyNotFound) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("the lease never expired")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := le.Release(ctx); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("release after expiry: err = %v, want ErrLost", err)
	}
	if _, err := l.Acquire(ctx, "skipcall.d"); err != nil {
		t.Fatalf("acquire after expiry: %v", err)
	}
}

func TestBucketConfig(t *testing.T) {
	ctx := natstest.Context(t)
	js := natstest.JetStream(t)
	newLeases(t, js, lease.Config{TTL: 7 * time.Second})
	kv, err := js.KeyValue(ctx, lease.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
	if info.Config.Replicas != 1 || !info.Config.AllowMsgTTL || st.LimitMarkerTTL() != 7*time.Second || st.History() != 1 {
		t.Fatalf("bucket: replicas %d, AllowMsgTTL %v, LimitMarkerTTL %s, history %d",
			info.Config.Replicas, info.Config.AllowMsgTTL, st.LimitMarkerTTL(), st.History())
	}
	// Replicas are passed as configured: one server cannot hold 3.
	if _, err := lease.New(ctx, js, lease.Config{Bucket: "LEASES_R3", Replicas: 3}); err == nil {
		t.Fatal("3 replicas on a single server: no error")
	}
	for name, cfg := range map[string]lease.Config{
		"TTL below 1s":     {TTL: 500 * time.Millisecond},
		"TTL not seconds":  {TTL: 1500 * time.Millisecond},
		"margin above TTL": {TTL: time.Second, Margin: 2 * time.Second},
		"replicas 6":       {Replicas: 6},
	} {
		if _, err := lease.New(ctx, js, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
