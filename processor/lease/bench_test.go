package lease_test

import (
	"fmt"
	"testing"

	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/lease"
)

// BenchmarkKVCreateDeleteFloor is a bare KV Create and Purge on the embedded
// server: the two round trips a lease cannot avoid.
func BenchmarkKVCreateDeleteFloor(b *testing.B) {
	ctx := natstest.Context(b)
	js := natstest.JetStream(b)
	newLeases(b, js, lease.Config{})
	kv, err := js.KeyValue(ctx, lease.DefaultBucket)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		key := fmt.Sprintf("floor.c%d", i)
		i++
		if _, err := kv.Create(ctx, key, nil); err != nil {
			b.Fatal(err)
		}
		if err := kv.Purge(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAcquireRelease is one lease per event: Acquire then Release,
// over 1000 contacts (so most Acquires create over a release marker).
func BenchmarkAcquireRelease(b *testing.B) {
	ctx := natstest.Context(b)
	l := newLeases(b, natstest.JetStream(b), lease.Config{})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		le, err := l.Acquire(ctx, fmt.Sprintf("skipcall.c%d", i%1000))
		i++
		if err != nil {
			b.Fatal(err)
		}
		if err := le.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
