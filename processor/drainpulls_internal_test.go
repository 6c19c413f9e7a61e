package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/ratelimit"
	"github.com/patchbay/patchbay/stream"
)

// appliedProvider applies every event at once: the worker's own costs,
// and NATS's, are all a drain measures.
type appliedProvider struct{}

func (appliedProvider) Patch(context.Context, *events.Event) (Result, error) {
	return Result{Status: 200}, nil
}

// drainStats is what drainBacklog saw on the wire.
type drainStats struct {
	firstPull, firstAck, drained time.Duration  // from Run's start
	stall                        time.Duration  // longest span without an ack floor moving, polled every 100 ms as the bench does
	pulls                        map[string]int // consumer → pull requests
	batch                        map[string]int // consumer → messages asked for
	acks                         int
	held                         float64 // events held by a delivery (a lease group not joined yet, ...)
}

// total is the number of pull requests of every consumer.
func (s drainStats) total() (pulls, asked int) {
	for c, n := range s.pulls {
		pulls += n
		asked += s.batch[c]
	}
	return pulls, asked
}

// of is the number of pull requests of the consumers whose names start
// with prefix.
func (s drainStats) of(prefix string) int {
	n := 0
	for c, v := range s.pulls {
		if strings.HasPrefix(c, prefix) {
			n += v
		}
	}
	return n
}

func (s drainStats) String() string {
	pulls, asked := s.total()
	var per []string
	for c, n := range s.pulls {
		per = append(per, fmt.Sprintf("%s=%d", c, n))
	}
	return fmt.Sprintf("first pull %s, first ack %s, longest stall %s, %.0f held, drained %s; %d pull requests (%.1f per 1000 acks, %.0f messages asked each), %d acks; %s",
		s.firstPull.Round(time.Millisecond), s.firstAck.Round(time.Millisecond), s.stall.Round(time.Millisecond), s.held, s.drained.Round(time.Millisecond),
		pulls, 1000*float64(pulls)/float64(max(s.acks, 1)), float64(asked)/float64(max(pulls, 1)), s.acks, strings.Join(per, " "))
}

// drainBacklog stores n single-contact Skipcall events in a stream
// created with partitions (0: none), runs a worker with both targets and
// cfg until the stream is empty, and reports the pull requests and acks
// it sent, seen by a subscriber on the JetStream API subjects.
func drainBacklog(t *testing.T, partitions, n, pad int, cfg Config) drainStats {
	t.Helper()
	emb := natstest.Server(t)
	scfg := stream.Config{SubjectPrefix: "contacts", EventsStream: "EV", DLQStream: "DLQ", Replicas: 1, DedupWindow: time.Hour, Consumer: "workers", MaxBytes: -1, Partitions: partitions}
	js := natstest.Connect(t, emb, "drain")
	ctx := testCtx(t)
	if err := stream.Ensure(ctx, js, scfg); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for i := range n {
		ev := events.Event{ID: fmt.Sprintf("evt-%08d", i), Target: events.TargetSkipcall,
			ContactID: fmt.Sprintf("0b6c7c8e-6f1d-4a53-9d6e-%012x", i), OccurredAt: at.Add(time.Duration(i) * time.Millisecond),
			Patch: json.RawMessage(`{"city":"London","customFields":{"notes":"` + strings.Repeat("n", pad) + `"}}`)}
		data, err := ev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishAsync(ev.Subject(scfg.SubjectPrefix), data, jetstream.WithMsgID(ev.ID)); err != nil {
			t.Fatal(err)
		}
		// In rounds of 500 acknowledged publishes: a busy machine's server
		// acknowledges slower than this loop publishes, and nats.go fails a
		// publish once too many are outstanding.
		if (i+1)%500 == 0 || i == n-1 {
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				t.Fatal("events not stored")
			}
		}
	}

	watch := natstest.Connect(t, emb, "watch").Conn()
	var mu sync.Mutex
	st := drainStats{pulls: map[string]int{}, batch: map[string]int{}}
	var start time.Time
	apiPrefix := "$JS.API.CONSUMER.MSG.NEXT." + scfg.EventsStream + "."
	if _, err := watch.Subscribe(apiPrefix+"*", func(m *nats.Msg) {
		var req struct {
			Batch int `json:"batch"`
		}
		_ = json.Unmarshal(m.Data, &req)
		mu.Lock()
		defer mu.Unlock()
		if st.firstPull == 0 {
			st.firstPull = time.Since(start)
		}
		c := strings.TrimPrefix(m.Subject, apiPrefix)
		if traceStart && time.Since(start) < 400*time.Millisecond {
			t.Logf("%s pull %s batch %d %s", time.Since(start).Round(time.Millisecond), c, req.Batch, m.Data)
		}
		st.pulls[c]++
		st.batch[c] += req.Batch
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Subscribe("$JS.ACK."+scfg.EventsStream+".>", func(m *nats.Msg) {
		if len(m.Data) > 0 && string(m.Data) != "+ACK" {
			return // InProgress, Nak
		}
		mu.Lock()
		defer mu.Unlock()
		if st.acks == 0 {
			if traceStart {
				t.Logf("%s first ack %s", time.Since(start).Round(time.Millisecond), m.Subject)
			}
			st.firstAck = time.Since(start)
		}
		st.acks++
	}); err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}

	wjs := natstest.Connect(t, emb, "worker")
	targets := map[events.Target]Target{}
	for _, tg := range events.Targets() {
		b, err := ratelimit.New(ctx, wjs, cfg.BudgetConfig(scfg, tg, "key", 0, 0), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		targets[tg] = Target{Provider: appliedProvider{}, Budget: b}
	}
	reg := prometheus.NewRegistry()
	w, err := New(cfg, Deps{JS: wjs, Conn: wjs.Conn(), Stream: scfg, Targets: targets, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	mu.Lock()
	start = time.Now()
	mu.Unlock()
	go func() { done <- w.Run(rctx) }()
	s, err := js.Stream(ctx, scfg.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	// As the bench observes a worker: every 100 ms, whether any
	// consumer's ack floor moved, until the stream is empty.
	floors := map[string]uint64{}
	lastMove := start
	var stall time.Duration
	for {
		if Wait(ctx, 100*time.Millisecond) != nil {
			t.Fatal("not drained")
		}
		for c := range s.ListConsumers(ctx).Info() {
			if f, ok := floors[c.Name]; !ok || f != c.AckFloor.Stream {
				if c.AckFloor.Stream > 0 {
					lastMove = time.Now()
				}
				floors[c.Name] = c.AckFloor.Stream
			}
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stall = max(stall, time.Since(lastMove))
		if info.State.Msgs == 0 {
			break
		}
	}
	drained := time.Since(start)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	st.drained, st.stall = drained, stall
	st.held = testutil.ToFloat64(w.m.deliveries.WithLabelValues("skipcall", "held"))
	out := st
	out.pulls, out.batch = map[string]int{}, map[string]int{}
	for c, v := range st.pulls {
		out.pulls[c], out.batch[c] = v, st.batch[c]
	}
	return out
}

// traceStart logs the pull requests of a drain's first 400 ms.
var traceStart = false

// drainConfig is the worker's default configuration.
func drainConfig() Config {
	return Config{Concurrency: 256, AckWait: 30 * time.Second, MaxAttempts: 12, MaxRetryAge: 24 * time.Hour,
		BackoffInitial: time.Second, BackoffMax: 10 * time.Minute, CredentialsPause: time.Minute, HoldLimit: 5 * time.Second,
		DrainTimeout: 20 * time.Second, Coalesce: 1000, ReadAhead: 10240}
}

// TestBacklogDrain drains a backlog of 10,000 single-contact events with
// and without partitions (the bench's worker row, in one process). It
// guards two things. No delivery is held for the lease group: the
// fetchers start once the worker has joined it, so the first messages,
// which each consumer's ack floor waits for, are not held for a retry
// (200 ms without an ack floor moving at every start before). And the
// four partitions' fetchers send at most twice the pull requests of the
// one consumer without partitions (before: two and a half to three times,
// as they split the freed room between them).
func TestBacklogDrain(t *testing.T) {
	t.Parallel()
	const n = 10000
	one := drainBacklog(t, 0, n, 0, drainConfig())
	four := drainBacklog(t, 4, n, 0, drainConfig())
	t.Logf("without partitions: %s", one)
	t.Logf("4 partitions: %s", four)
	for _, st := range []drainStats{one, four} {
		if st.acks != n {
			t.Errorf("%d acks, want %d", st.acks, n)
		}
		if st.held != 0 {
			t.Errorf("%.0f events held at start (the lease group not joined yet)", st.held)
		}
	}
	// The Skipcall lane's (the other one idles in both layouts).
	p1, p4 := one.of("workers-skipcall"), four.of("workers-skipcall")
	if p4 > 2*p1 {
		t.Errorf("4 partitions sent %d pull requests, without partitions %d: more than twice", p4, p1)
	}
}

// TestDrainMeasure logs what a drain of PATCHBAY_DRAIN_EVENTS events of
// about 1 KiB costs, with and without partitions: a measurement, run with
// -run DrainMeasure -v.
func TestDrainMeasure(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("PATCHBAY_DRAIN_EVENTS"))
	if err != nil {
		t.Skip("a measurement: set PATCHBAY_DRAIN_EVENTS")
	}
	for _, p := range []int{0, 4} {
		st := drainBacklog(t, p, n, 900, drainConfig())
		t.Logf("partitions %d: %s", p, st)
	}
}
