package processor_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/patchbay/patchbay/internal/pbtest"
)

// TestSoloWorkerTakesNoContactLeases: with Config.Solo, a lone worker
// delivers every event without writing a single per-contact lease; without
// it, every delivery writes one.
func TestSoloWorkerTakesNoContactLeases(t *testing.T) {
	t.Parallel()
	for _, solo := range []bool{true, false} {
		t.Run(fmt.Sprintf("solo=%v", solo), func(t *testing.T) {
			t.Parallel()
			s := pbtest.Start(t, pbtest.Options{})
			var writes atomic.Int64
			sub, err := s.NC.Subscribe("$KV."+s.Stream.KVBucket("LEASES")+".skipcall.>", func(*nats.Msg) { writes.Add(1) })
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := s.NC.Flush(); err != nil {
				t.Fatal(err)
			}
			cfg := pbtest.WorkerConfig()
			cfg.Solo = solo
			s.StartWorker(cfg)
			const n = 20
			for i := range n {
				uuid := fmt.Sprintf("f0f0f0f0-2222-4333-8444-%012d", i)
				s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
				s.PostEvent(skipEvent(fmt.Sprintf("solo-%d", i), uuid, map[string]any{"city": "Oslo"}))
			}
			pbtest.Eventually(t, waitFor, "every event applied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
			if err := s.NC.Flush(); err != nil {
				t.Fatal(err)
			}
			got := writes.Load()
			switch {
			case solo && got != 0:
				t.Fatalf("a lone solo worker wrote %d per-contact lease records, want 0", got)
			case !solo && got < n:
				t.Fatalf("without Solo, %d per-contact lease writes for %d deliveries", got, n)
			}
			for i := range n {
				uuid := fmt.Sprintf("f0f0f0f0-2222-4333-8444-%012d", i)
				if c, _ := s.Skipcall.Contact(uuid); c["city"] != "Oslo" {
					t.Fatalf("contact %d not applied: %v", i, c)
				}
			}
		})
	}
}
