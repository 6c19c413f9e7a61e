package lww_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/lww"
)

// BenchmarkGetR3 is the worker's clock read on a 3-node cluster with an R3
// bucket: 64 concurrent readers (their reads batched as the worker's are),
// over 1000 committed contacts, with the reads proven current (one leader
// message get beside each batch) and, as the floor, without the proof (what
// b50f17e did, and what may answer from a lagging follower). The ratio of
// the two is what leader reads cost.
func BenchmarkGetR3(b *testing.B) {
	srvs := cluster(b)
	ctx := natstest.Context(b)
	js := connect(b, srvs[0])
	s := newStore(b, js, lww.StoreConfig{Bucket: "R3_BENCH_STATE", Replicas: 3})
	_, clocks, _ := lww.Merge(events.TargetSkipcall, lww.Change{Patch: benchPatch, Clock: at(0, "e")})
	for i := range 1000 {
		c := fmt.Sprintf("c%d", i)
		st, err := s.Get(ctx, events.TargetSkipcall, c)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Commit(ctx, events.TargetSkipcall, c, st, benchPatch, clocks); err != nil {
			b.Fatal(err)
		}
	}
	run := func(b *testing.B, s *lww.Store) {
		const readers = 64
		b.ReportAllocs()
		b.ResetTimer()
		var wg sync.WaitGroup
		per := (b.N + readers - 1) / readers
		for r := range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					if _, err := s.Get(ctx, events.TargetSkipcall, fmt.Sprintf("c%d", (r*per+i)%1000)); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	b.Run("proven", func(b *testing.B) { run(b, s) })
	floor := newStore(b, js, lww.StoreConfig{Bucket: "R3_BENCH_STATE", Replicas: 3})
	lww.SkipProof(floor)
	b.Run("unproven", func(b *testing.B) { run(b, floor) })
}
