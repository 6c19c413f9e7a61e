package processor_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/dlq"
	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/pbtest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/ratelimit"
	"github.com/patchbay/patchbay/stream"
)

// TestWorkerRoomFollowsConcurrency: a worker holds up to four messages per
// delivery goroutine of a target, never fewer than 512.
func TestWorkerRoomFollowsConcurrency(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ concurrency, room int }{{1, 512}, {128, 512}, {129, 516}, {1000, 4000}} {
		if got := (processor.Config{Concurrency: c.concurrency}).Room(); got != c.room {
			t.Errorf("Room with Concurrency %d = %d, want %d", c.concurrency, got, c.room)
		}
	}
}

// TestWorkerBudgetConfig: a target's budget as Config.BudgetConfig documents
// it: no limit of ours without a plan rate, a minute's window by default, a
// reset margin of at most an eighth of the window, and credential probes
// from CredentialsPause backing off to 16 times it.
func TestWorkerBudgetConfig(t *testing.T) {
	t.Parallel()
	cfg := pbtest.WorkerConfig()
	cfg.CredentialsPause = 3 * time.Second
	sc := pbtest.StreamConfig("nats://unused")
	for _, c := range []struct {
		perMinute int
		window    time.Duration
		limit     int
		wantWin   time.Duration
		margin    time.Duration
	}{
		{0, 0, ratelimit.Unlimited, time.Minute, time.Second},
		{-1, -time.Second, ratelimit.Unlimited, time.Minute, time.Second},
		{1, 2 * time.Second, 1, 2 * time.Second, 250 * time.Millisecond},
		{600, 10 * time.Second, 600, 10 * time.Second, time.Second},
	} {
		got := cfg.BudgetConfig(sc, events.TargetSkipcall, "key", c.perMinute, c.window)
		if got.Limit != c.limit || got.Window != c.wantWin || got.ResetMargin != c.margin {
			t.Errorf("BudgetConfig(perMinute %d, window %s): limit %d, window %s, reset margin %s; want %d, %s, %s",
				c.perMinute, c.window, got.Limit, got.Window, got.ResetMargin, c.limit, c.wantWin, c.margin)
		}
		if got.ProbeInitial != cfg.CredentialsPause || got.ProbeMax != 16*cfg.CredentialsPause {
			t.Errorf("credential probes from %s to %s, want from CredentialsPause %s to 16 times it", got.ProbeInitial, got.ProbeMax, cfg.CredentialsPause)
		}
		if got.Name != "skipcall" || got.Key != "key" || got.Replicas != sc.Replicas {
			t.Errorf("budget names target %q, key %q, replicas %d", got.Name, got.Key, got.Replicas)
		}
	}
}

// TestWorkerDeclaresWhatItsConfigSays: the consumer and buckets a worker
// declares carry its configuration: the ack wait and the room as the
// consumer's limit of unacknowledged messages, attempt counts kept an hour
// longer than MaxRetryAge, field clocks kept for StateTTL (or its default).
func TestWorkerDeclaresWhatItsConfigSays(t *testing.T) {
	t.Parallel()
	for _, stateTTL := range []time.Duration{0, 100 * time.Hour} {
		t.Run(stateTTL.String(), func(t *testing.T) {
			t.Parallel()
			s := pbtest.Start(t, pbtest.Options{})
			cfg := pbtest.WorkerConfig()
			cfg.Concurrency = 200
			cfg.MaxRetryAge = 3 * time.Hour
			cfg.StateTTL = stateTTL
			s.StartWorker(cfg)
			var info *jetstream.ConsumerInfo
			pbtest.Eventually(t, waitFor, "the worker's consumer", func() bool {
				var err error
				info, err = tryConsumerInfo(s, "skipcall")
				return err == nil
			})
			if info.Config.AckWait != cfg.AckWait || info.Config.MaxAckPending != cfg.Room() {
				t.Errorf("consumer with ack wait %s and max ack pending %d, want %s and the room %d",
					info.Config.AckWait, info.Config.MaxAckPending, cfg.AckWait, cfg.Room())
			}
			wantState := stateTTL
			if wantState == 0 {
				wantState = processor.DefaultStateTTL
			}
			for _, b := range []struct {
				suffix string
				ttl    time.Duration
			}{{"ATTEMPTS", cfg.MaxRetryAge + time.Hour}, {"STATE", wantState}} {
				ttl := bucketTTL(t, s, s.Stream.KVBucket(b.suffix))
				if ttl != b.ttl {
					t.Errorf("bucket %s keeps its keys for %s, want %s", b.suffix, ttl, b.ttl)
				}
			}
		})
	}
}

// bucketTTL waits for the KV bucket name and returns its TTL.
func bucketTTL(t *testing.T, s *pbtest.Stack, name string) time.Duration {
	t.Helper()
	var ttl time.Duration
	pbtest.Eventually(t, waitFor, "bucket "+name, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		kv, err := s.JS.KeyValue(ctx, name)
		if err != nil {
			return false
		}
		st, err := kv.Status(ctx)
		if err != nil {
			return false
		}
		ttl = st.TTL()
		return true
	})
	return ttl
}

// TestWorkerSetupRetriesArePaced: a worker that cannot declare its
// consumers (here the events stream is missing, as while NATS elects its
// leaders) tries again after 500 ms, then 1 s, ... rather than hammering
// NATS in a loop, warning of each failed try by its number, and starts
// delivering once the stream is there.
func TestWorkerSetupRetriesArePaced(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.JS.DeleteStream(ctx, s.Stream.EventsStream); err != nil {
		t.Fatal(err)
	}
	// Each setup begins by removing the legacy consumer: count those requests.
	var mu sync.Mutex
	var tries []time.Time
	sub, err := s.NC.Subscribe("$JS.API.CONSUMER.DELETE."+s.Stream.EventsStream+"."+s.Stream.Consumer, func(*nats.Msg) {
		mu.Lock()
		tries = append(tries, time.Now())
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := s.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	logs := recordLogs(s)
	s.StartWorker(pbtest.WorkerConfig())
	pbtest.Eventually(t, waitFor, "three tries to set the worker up", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(tries) >= 3
	})
	mu.Lock()
	gap := tries[2].Sub(tries[0])
	mu.Unlock()
	if gap < 1400*time.Millisecond {
		t.Fatalf("three setup tries within %s, want the second after 500 ms and the third 1 s later", gap)
	}
	// Each failed try is logged before the next, numbered from 1.
	for try := range 2 {
		expectLog(t, logs, slog.LevelWarn, logSetupRetry, map[string]string{"try": strconv.Itoa(try + 1), "err": ""})
	}

	if err := stream.Ensure(ctx, s.JS, s.Stream); err != nil {
		t.Fatal(err)
	}
	uuid := "e3e3e3e3-2222-4333-8444-555555555555"
	s.Skipcall.PutContact(uuid, map[string]any{"firstName": "A", "lastName": "B"})
	s.PostEvent(skipEvent("setup-1", uuid, map[string]any{"city": "Wien"}))
	pbtest.Eventually(t, waitFor, "the event applied once the stream is there", func() bool {
		c, _ := s.Skipcall.Contact(uuid)
		return c["city"] == "Wien"
	})
}

// failingCalls fails every PATCH with a transient error, without a call.
type failingCalls struct{}

func (failingCalls) Patch(context.Context, *events.Event) (processor.Result, error) {
	return processor.Result{}, errors.New("connection reset (test)")
}

// TestWorkerRunWatchesMaxDeliveries: a running worker listens for
// JetStream's MAX_DELIVERIES advisory. When an operator caps the consumer's
// deliveries and JetStream gives up on an event, the worker dead-letters it
// instead of leaving it stranded in the stream.
func TestWorkerRunWatchesMaxDeliveries(t *testing.T) {
	t.Parallel()
	s := pbtest.Start(t, pbtest.Options{})
	cfg := pbtest.WorkerConfig()
	cfg.MaxAttempts = 100 // the worker itself would retry for long
	startObserved(t, s, cfg, func(tg events.Target, p processor.Provider) processor.Provider {
		if tg != events.TargetSkipcall {
			return p
		}
		return failingCalls{}
	})
	var info *jetstream.ConsumerInfo
	pbtest.Eventually(t, waitFor, "the worker's consumer", func() bool {
		var err error
		info, err = tryConsumerInfo(s, "skipcall")
		return err == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cc := info.Config
	cc.MaxDeliver = 1 // as an operator might
	if _, err := s.JS.CreateOrUpdateConsumer(ctx, s.Stream.EventsStream, cc); err != nil {
		t.Fatal(err)
	}
	uuid := "e4e4e4e4-2222-4333-8444-555555555555"
	s.PostEvent(skipEvent("stranded-1", uuid, map[string]any{"city": "Enns"}))
	pbtest.Eventually(t, waitFor, "the stranded event dead-lettered", func() bool {
		ls := dlqLetters(t, s)
		return len(ls) == 1 && ls[0].Reason == dlq.ReasonMaxDeliveries && ls[0].EventID == "stranded-1"
	})
}
