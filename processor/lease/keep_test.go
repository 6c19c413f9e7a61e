package lease_test

import (
	"errors"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/lease"
)

// TestKeepRenewsTheLeaseUntilItExpires: a kept lease outlives the TTL it
// was acquired with (another holder still gets ErrHeld past it), then
// expires on its own; keeping a lease that is no longer the holder's is
// ErrLost.
func TestKeepRenewsTheLeaseUntilItExpires(t *testing.T) {
	ctx := natstest.Context(t)
	js := natstest.JetStream(t)
	const ttl = 2 * time.Second
	a, b := newLeases(t, js, lease.Config{TTL: ttl}), newLeases(t, js, lease.Config{TTL: ttl})
	first, err := a.Acquire(ctx, "contact.kept")
	if err != nil {
		t.Fatal(err)
	}
	acquired := time.Now()
	time.Sleep(ttl / 2) // the scenario itself: keep it half-way through its TTL
	kept, err := first.Keep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !kept.Expiry().After(first.Expiry()) || kept.Key() != first.Key() {
		t.Fatalf("kept lease expires %s, the acquired one %s", kept.Expiry(), first.Expiry())
	}
	// Past the first TTL (and the server's expiry tick), the key is still held.
	for time.Since(acquired) < ttl+ttl/4 {
		if _, err := b.Acquire(ctx, "contact.kept"); !errors.Is(err, lease.ErrHeld) {
			t.Fatalf("%s after the acquire, %s after the keep: acquire = %v, want ErrHeld", time.Since(acquired), ttl/2, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	taken := acquireEventually(t, ctx, b, "contact.kept")
	if since := time.Since(acquired); since < ttl+ttl/2-100*time.Millisecond {
		t.Fatalf("taken again %s after the acquire: the keep did not last a TTL", since)
	}
	if _, err := kept.Keep(ctx); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("keep of a lease taken by another holder = %v, want ErrLost", err)
	}
	if err := taken.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
