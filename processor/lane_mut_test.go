package processor_test

import (
	"context"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestLaneStoppedWorkerLeavesItsLeaseGroup: a worker that stops gives its
// target's lease group up at once (its member key and its solo lease), so
// the worker that replaces it delivers at once instead of waiting up to
// LeaseTTL (30 s here) for the keys to expire.
func TestLaneStoppedWorkerLeavesItsLeaseGroup(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	cfg := pbtest.WorkerConfig() // solo leases, LeaseTTL 30 s
	uuid := "e2e2e2e2-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})

	first := startObserved(t, s, cfg, nil)
	s.PostEvent(skipEvent("leave-1", uuid, map[string]any{"city": "Graz"}))
	pbtest.Eventually(t, waitFor, "the first worker's delivery", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["city"] == "Graz"
	})
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := s.JS.KeyValue(ctx, s.Stream.KVBucket("LEASES"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeysFiltered(ctx, "_group.>")
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for k := range keys.Keys() {
		left = append(left, k)
	}
	if len(left) != 0 {
		t.Fatalf("a stopped worker left its lease group keys behind until their TTL: %v", left)
	}

	// Its replacement delivers well within the 30 s lease TTL.
	startObserved(t, s, cfg, nil)
	s.PostEvent(skipEvent("leave-2", uuid, map[string]any{"city": "Linz"}))
	pbtest.Eventually(t, 5*time.Second, "the replacement worker's delivery", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["city"] == "Linz"
	})
}
