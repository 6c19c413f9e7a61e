package processor_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestStoppedSoloWorkerLeavesItsLeaseGroup guards "a stopping worker gives
// its target's solo lease and its member key up, so that a replacement
// need not wait for the lease TTL": once a lone worker holds the solo
// lease of skipcall, stopping it leaves no key of the target's lease group
// in the bucket by the time Run has returned.
func TestStoppedSoloWorkerLeavesItsLeaseGroup(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	cfg := pbtest.WorkerConfig() // a lone worker takes the solo lease by default
	w := startObserved(t, s, cfg, nil)

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var kv jetstream.KeyValue
	pbtest.Eventually(t, waitFor, "the leases bucket declared", func() bool {
		var err error
		kv, err = s.JS.KeyValue(ctx, s.Stream.KVBucket("LEASES"))
		return err == nil
	})
	const group = "_group.skipcall."
	pbtest.Eventually(t, waitFor, "the lone worker holding skipcall's solo lease", func() bool {
		_, err := kv.Get(ctx, group+"solo")
		return err == nil
	})
	if keys := groupKeys(t, ctx, kv, group); len(keys) != 2 {
		t.Fatalf("keys of skipcall's lease group while solo: %q, want the member key and the solo key", keys)
	}

	if err := w.Stop(); err != nil {
		t.Fatalf("worker: %v", err)
	}
	if keys := groupKeys(t, ctx, kv, group); len(keys) != 0 {
		t.Fatalf("keys of skipcall's lease group after the worker stopped: %q, want none (a replacement would wait for their TTL)", keys)
	}
}

// groupKeys returns the live keys of kv that start with prefix.
func groupKeys(t *testing.T, ctx context.Context, kv jetstream.KeyValue, prefix string) []string {
	t.Helper()
	lister, err := kv.ListKeysFiltered(ctx, prefix+">")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range lister.Keys() {
		e, err := kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
			continue
		case err != nil:
			t.Fatal(err)
		}
		keys = append(keys, e.Key())
	}
	return keys
}
