package processor

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/internal/natstest"
	"github.com/patchbay/patchbay/processor/ratelimit"
	"github.com/patchbay/patchbay/stream"
	"github.com/patchbay/patchbay/stream/embedded"
)

// embeddedEnv is an embedded NATS server with patchbay's streams, for the
// package's internal tests (which cannot use pbtest: it imports processor).
type embeddedEnv struct {
	emb  *embedded.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	scfg stream.Config
}

// startEmbedded runs a NATS server with the events and DLQ streams until
// the test ends.
func startEmbedded(t *testing.T) *embeddedEnv {
	t.Helper()
	emb := natstest.Server(t)
	e := &embeddedEnv{emb: emb}
	e.scfg = stream.Config{SubjectPrefix: "contacts", EventsStream: "EV", DLQStream: "DLQ", Replicas: 1, DedupWindow: time.Hour, Consumer: "workers", MaxBytes: -1}
	e.nc, e.js = e.connect(t, "embedded-env")
	if err := stream.Ensure(testCtx(t), e.js, e.scfg); err != nil {
		t.Fatal(err)
	}
	return e
}

// testCtx returns a context ending a little before the test's deadline.
func testCtx(t *testing.T) context.Context { return natstest.Context(t) }

// connect opens another connection to the server, closed when the test
// ends (closing it earlier is fine).
func (e *embeddedEnv) connect(t *testing.T, name string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	js := natstest.Connect(t, e.emb, name)
	return js.Conn(), js
}

// unusedProvider is the provider of a worker whose tests call no provider.
type unusedProvider struct{}

func (unusedProvider) Patch(context.Context, *events.Event) (Result, error) {
	panic("not called")
}

// worker returns a worker on the env's connection logging to log, with a
// provider that must not be called and a real budget for every target. It
// is not running: tests call the parts they need.
func (e *embeddedEnv) worker(t *testing.T, cfg Config, log *slog.Logger) *Worker {
	t.Helper()
	targets := map[events.Target]Target{}
	for _, tg := range events.Targets() {
		b, err := ratelimit.New(testCtx(t), e.js, cfg.BudgetConfig(e.scfg, tg, "key", 0, 0), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		targets[tg] = Target{Provider: unusedProvider{}, Budget: b}
	}
	w, err := New(cfg, Deps{JS: e.js, Conn: e.nc, Stream: e.scfg, Targets: targets, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// laneOf returns w's lane of target.
func laneOf(t *testing.T, w *Worker, target events.Target) *lane {
	t.Helper()
	for _, l := range w.lanes {
		if l.target == target {
			return l
		}
	}
	t.Fatalf("no lane for %s", target)
	return nil
}

// deadLetterCount returns w's dead-letter counter of target and reason.
func deadLetterCount(t *testing.T, w *Worker, target, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := w.m.deadLetters.WithLabelValues(target, reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// errDLQRefused is what a dlqTap answers when it refuses a letter.
var errDLQRefused = errors.New("test: the dead-letter stream refuses writes")

// dlqTap is the worker's dead-letter publisher over the real JetStream,
// with a hook that runs at the point of the letter's write another replica
// or a failing NATS would act at: before is called first, then the letter
// is written (or refused, with refuse), then after is called.
type dlqTap struct {
	js     jetstream.JetStream
	refuse bool
	before func(*nats.Msg)
	after  func()
}

func (d *dlqTap) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if d.before != nil {
		d.before(msg)
	}
	var ack *jetstream.PubAck
	err := errDLQRefused
	if !d.refuse {
		ack, err = d.js.PublishMsg(ctx, msg, opts...)
	}
	if d.after != nil {
		d.after()
	}
	return ack, err
}
