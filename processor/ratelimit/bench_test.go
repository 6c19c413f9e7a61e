package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay/patchbay/internal/natstest"
)

// The benchmarks compare the cost of one slot with floors measured in the
// same run on the same embedded server:
//
//   - floor=request: a core NATS request to an echo responder, the least a
//     shared decision can cost;
//   - floor=js-publish: a plain JetStream publish (file storage), the least
//     a durable shared decision can cost;
//   - take: Budget.TryTake, one JetStream counter increment;
//   - kv-cas: the alternative design, a KV entry per window updated by
//     Get + Update(revision), retried on conflict (cas_retries/op).
//
// Each runs serially (one goroutine, the round-trip cost) and contended
// (3 connections, 32 goroutines each: three replicas at full concurrency).
//
//	go test -run '^$' -bench . -benchtime 2000x ./processor/ratelimit/
func BenchmarkSlot(b *testing.B) {
	emb := natstest.Server(b)
	conns := make([]jetstream.JetStream, 3)
	for i := range conns {
		conns[i] = natstest.Connect(b, emb, fmt.Sprintf("bench-%d", i))
	}
	ctx := context.Background()

	echo := conns[0].Conn()
	sub, err := echo.Subscribe("bench.echo", func(m *nats.Msg) { _ = m.Respond(nil) })
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := echo.Flush(); err != nil {
		b.Fatal(err)
	}
	if _, err := conns[0].CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.js"}, Storage: jetstream.FileStorage, MaxMsgs: 1000}); err != nil {
		b.Fatal(err)
	}
	cfg := Config{Name: "skipcall", Key: testKey, Limit: 1 << 40, Window: time.Hour}
	budgets := make([]*Budget, 3)
	for i := range budgets {
		if budgets[i], err = New(ctx, conns[i], cfg, nil); err != nil {
			b.Fatal(err)
		}
		defer budgets[i].Close()
	}
	kvs := make([]jetstream.KeyValue, 3)
	for i := range kvs {
		if kvs[i], err = conns[i].CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "BENCH_CAS", History: 1, Storage: jetstream.FileStorage}); err != nil {
			b.Fatal(err)
		}
	}
	var retries atomic.Int64

	ops := []struct {
		name string
		op   func(i int) error
	}{
		{"floor=request", func(i int) error {
			_, err := conns[i].Conn().Request("bench.echo", nil, 5*time.Second)
			return err
		}},
		{"floor=js-publish", func(i int) error {
			_, err := conns[i].Publish(ctx, "bench.js", nil)
			return err
		}},
		{"take", func(i int) error {
			_, err := budgets[i].TryTake(ctx)
			return err
		}},
		{"kv-cas", func(i int) error {
			n, err := casTake(ctx, kvs[i], "w", 1<<40)
			retries.Add(int64(n))
			return err
		}},
	}
	for _, o := range ops {
		b.Run(o.name+"/serial", func(b *testing.B) {
			retries.Store(0)
			for b.Loop() {
				if err := o.op(0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(retries.Load())/float64(b.N), "cas_retries/op")
		})
		b.Run(o.name+"/3x32", func(b *testing.B) {
			retries.Store(0)
			var next atomic.Int64
			b.SetParallelism(max(96/max(1, testingProcs()), 1))
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1) % 3)
				for pb.Next() {
					if err := o.op(i); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(retries.Load())/float64(b.N), "cas_retries/op")
		})
	}
}

// casTake is the KV compare-and-set alternative to the counter: read the
// window's count, write count+1 at the read revision, retry on conflict.
// It returns the number of lost compare-and-sets.
func casTake(ctx context.Context, kv jetstream.KeyValue, key string, limit int64) (int, error) {
	for lost := 0; ; lost++ {
		var n int64
		var rev uint64
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return lost, err
		default:
			n, _ = strconv.ParseInt(string(e.Value()), 10, 64)
			rev = e.Revision()
		}
		if n >= limit {
			return lost, nil
		}
		v := []byte(strconv.FormatInt(n+1, 10))
		if rev == 0 {
			_, err = kv.Create(ctx, key, v)
		} else {
			_, err = kv.Update(ctx, key, v, rev)
		}
		if err == nil || !isConflict(err) {
			return lost, err
		}
	}
}

func testingProcs() int { return runtime.GOMAXPROCS(0) }
