package processor_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/lease"
	"github.com/patchbay/patchbay/processor/lww"
	"github.com/patchbay/patchbay/processor/ratelimit"
)

// TestKVOutageHoldsThenResumes guards "NATS KV unavailable to the worker
// (state, lease, budget): nothing is sent, the events are held and tried
// again" for each of the three, with events queued during the outage: the
// running worker fetches them and tries them again and again (its held
// counter grows), sends nothing, dead-letters nothing and acknowledges
// nothing; once the bucket is back (created again, as a replica that
// starts does), the same worker applies every event exactly once.
func TestKVOutageHoldsThenResumes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts pbtest.Options
		// workers is how many workers run (0: one).
		workers int
		// ready, if set, waits until the workers are in the mode the
		// case is about.
		ready func(t *testing.T, s *pbtest.Stack)
		// remove makes the store unavailable; restore brings it back the
		// way a starting replica declares it.
		remove, restore func(t *testing.T, s *pbtest.Stack, cfg processor.Config)
	}{
		{
			// Two workers, as replicas run: neither is alone on the
			// target, so every delivery takes its contact's lease. (A
			// lone worker's solo lease lets it send until that lease's
			// own deadline: the documented exception.)
			name:    "lease bucket, two workers",
			workers: 2,
			ready:   bothShared,
			remove: func(t *testing.T, s *pbtest.Stack, _ processor.Config) {
				deleteKV(t, s, s.Stream.KVBucket("LEASES"))
			},
			restore: func(t *testing.T, s *pbtest.Stack, _ processor.Config) {
				if _, err := lease.New(context.Background(), s.JS, lease.Config{Bucket: s.Stream.KVBucket("LEASES"), TTL: processor.DefaultLeaseTTL}); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "state bucket",
			remove: func(t *testing.T, s *pbtest.Stack, _ processor.Config) {
				deleteKV(t, s, s.Stream.KVBucket("STATE"))
			},
			restore: func(t *testing.T, s *pbtest.Stack, _ processor.Config) {
				if _, err := lww.NewStore(context.Background(), s.JS, lww.StoreConfig{Bucket: s.Stream.KVBucket("STATE"), TTL: processor.DefaultStateTTL}); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "rate budget bucket and counters",
			// A plan limit, so the budget counts every request in NATS.
			opts: pbtest.Options{SkipcallRate: 1000},
			remove: func(t *testing.T, s *pbtest.Stack, cfg processor.Config) {
				deleteBudget(t, s, cfg, 0)
			},
			restore: func(t *testing.T, s *pbtest.Stack, cfg processor.Config) {
				restoreBudget(t, s, cfg, 0)
			},
		},
		{
			name: "rate budget, its window ending during the outage",
			// Windows of 2 s: the window running when the records go away
			// ends during the outage, so the budget must start a new one
			// in the recreated bucket.
			opts: pbtest.Options{SkipcallRate: 1000, SkipcallWindow: 2 * time.Second},
			remove: func(t *testing.T, s *pbtest.Stack, cfg processor.Config) {
				deleteBudget(t, s, cfg, 2*time.Second)
			},
			restore: func(t *testing.T, s *pbtest.Stack, cfg processor.Config) {
				restoreBudget(t, s, cfg, 2*time.Second)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := pbtest.Start(t, tc.opts)
			const n = 3
			ids := make([]string, n+1)
			for i := range ids {
				ids[i] = fmt.Sprintf("b0b0b0b0-2222-4333-8444-%012d", i)
				s.Skipcall.PutContact(ids[i], map[string]any{"firstName": "A", "lastName": "B"})
			}
			cfg := pbtest.WorkerConfig()
			cfg.MaxAttempts = 1 // an outage that used up an attempt would dead-letter at once
			ws := []*observedWorker{startObserved(t, s, cfg, nil)}
			for len(ws) < tc.workers {
				ws = append(ws, startObserved(t, s, cfg, nil))
			}
			held := func() float64 {
				n := 0.0
				for _, w := range ws {
					n += w.deliveries(t, "skipcall", "held")
				}
				return n
			}
			if tc.ready != nil {
				tc.ready(t, s)
			}
			s.PostEvent(skipEvent("before", ids[0], map[string]any{"city": "Graz"}))
			pbtest.Eventually(t, waitFor, "the first event applied while every store works", func() bool {
				return s.StreamMsgs(s.Stream.EventsStream) == 0
			})

			tc.remove(t, s, cfg)
			before := held()
			for i := 1; i <= n; i++ {
				s.PostEvent(skipEvent(fmt.Sprintf("during-%d", i), ids[i], map[string]any{"city": "Linz"}))
			}
			// Until the worker has tried and held every event at least
			// twice, nothing may reach the provider, the dead-letter
			// stream, or be acknowledged.
			deadline := time.Now().Add(waitFor)
			for held() < before+2*n {
				if time.Now().After(deadline) {
					t.Fatalf("the workers held the events %.0f times in %s, want at least %d: they are not trying them", held()-before, waitFor, 2*n)
				}
				for i := 1; i <= n; i++ {
					if c := s.Skipcall.PatchCount(ids[i]); c != 0 {
						t.Fatalf("contact %d PATCHed while the %s was unavailable: the worker must fail closed", i, tc.name)
					}
				}
				if ls := dlqLetters(t, s); len(ls) != 0 {
					t.Fatalf("%d dead letters while the %s was unavailable: an outage is not the event's fault: %+v", len(ls), tc.name, ls[0])
				}
				if m := s.StreamMsgs(s.Stream.EventsStream); m != n {
					t.Fatalf("the events stream holds %d events during the outage, want the %d held ones", m, n)
				}
				time.Sleep(20 * time.Millisecond)
			}

			tc.restore(t, s, cfg)
			pbtest.Eventually(t, waitFor, "the held events applied by the same worker once the "+tc.name+" is back", func() bool {
				for i := 1; i <= n; i++ {
					if c, _ := s.Skipcall.Contact(ids[i]); c["city"] != "Linz" {
						return false
					}
				}
				return true
			})
			pbtest.Eventually(t, waitFor, "events stream emptied", func() bool { return s.StreamMsgs(s.Stream.EventsStream) == 0 })
			for i := 1; i <= n; i++ {
				if c := s.Skipcall.PatchCount(ids[i]); c != 1 {
					t.Errorf("contact %d PATCHed %d times, want 1", i, c)
				}
			}
			if ls := dlqLetters(t, s); len(ls) != 0 {
				t.Fatalf("%d dead letters: %+v", len(ls), ls[0])
			}
		})
	}
}

func deleteKV(t *testing.T, s *pbtest.Stack, bucket string) {
	t.Helper()
	if err := s.JS.DeleteKeyValue(context.Background(), bucket); err != nil {
		t.Fatalf("delete bucket %s: %v", bucket, err)
	}
}

// deleteBudget deletes the Skipcall budget's bucket and counter stream.
func deleteBudget(t *testing.T, s *pbtest.Stack, cfg processor.Config, window time.Duration) {
	t.Helper()
	bc := cfg.BudgetConfig(s.Stream, events.TargetSkipcall, pbtest.SkipcallKey, 0, window)
	deleteKV(t, s, bc.Bucket)
	if err := s.JS.DeleteStream(context.Background(), bc.CounterStream); err != nil {
		t.Fatalf("delete %s: %v", bc.CounterStream, err)
	}
}

// restoreBudget declares the Skipcall budget's bucket and counter stream
// again, as a starting replica does.
func restoreBudget(t *testing.T, s *pbtest.Stack, cfg processor.Config, window time.Duration) {
	t.Helper()
	b, err := ratelimit.New(context.Background(), s.JS, cfg.BudgetConfig(s.Stream, events.TargetSkipcall, pbtest.SkipcallKey, 0, window), nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
}

// bothShared waits until the Skipcall lease group has two members and no
// solo lease: the first worker, alone at its start, has handed its solo
// lease over, so both take each contact's lease for every delivery.
func bothShared(t *testing.T, s *pbtest.Stack) {
	t.Helper()
	prefix := "_group." + string(events.TargetSkipcall) + "."
	pbtest.Eventually(t, waitFor, "two members in the lease group and no solo lease", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		kv, err := s.JS.KeyValue(ctx, s.Stream.KVBucket("LEASES"))
		if err != nil {
			return false
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return false
		}
		members, solo := 0, false
		for k := range keys.Keys() {
			switch {
			case k == prefix+"solo":
				solo = true
			case strings.HasPrefix(k, prefix+"member."):
				members++
			}
		}
		return members == 2 && !solo
	})
}
