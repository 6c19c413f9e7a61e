// Package pbtest starts patchbay's real parts for tests: an embedded NATS
// JetStream server, both sandbox providers over HTTP, ingest over HTTP, and
// workers that can be started and stopped.
package pbtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/ratelimit"
	"github.com/patchbay/patchbay/processor/revyops"
	"github.com/patchbay/patchbay/processor/skipcall"
	"github.com/patchbay/patchbay/redact"
	"github.com/patchbay/patchbay/sandbox"
	"github.com/patchbay/patchbay/stream"
	"github.com/patchbay/patchbay/stream/embedded"
)

// Token is the bearer token the test ingest accepts.
const Token = "test-token-0123456789abcdef"

// Keys the sandboxes accept.
const (
	SkipcallKey = "sk_test_pbtest"
	RevyOpsKey  = "revyops-test-key"
)

// Stack is a running patchbay in one test process.
type Stack struct {
	T        testing.TB
	NATS     *embedded.Server
	NC       *nats.Conn
	JS       jetstream.JetStream
	Stream   stream.Config
	RevyOps  *sandbox.RevyOps
	Skipcall *sandbox.Skipcall
	RevyURL  string
	SkipURL  string
	Ingest   *httptest.Server
	Log      *slog.Logger
	opts     Options
}

// Options adjust a Stack.
type Options struct {
	Ingest         func(*ingest.Config)
	SkipcallRate   int
	SkipcallWindow time.Duration
	// SkipcallPlan is the rate the workers' budget assumes before the
	// sandbox's first answer (0: SkipcallRate). A plan above the sandbox's
	// rate makes the sandbox answer 429 until the headers correct it.
	SkipcallPlan int
	// Tracer, if not nil, traces ingest's requests (ingest.Handler.TraceWith).
	Tracer trace.TracerProvider
	// Registerer, if not nil, receives ingest's metrics and the rate
	// budgets' of Targets.
	Registerer prometheus.Registerer
}

// Logger returns a logger writing to the test log at debug level when
// PATCHBAY_TEST_LOG is set, and discarding otherwise.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("PATCHBAY_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// StreamConfig is the stream configuration tests use.
func StreamConfig(url string) stream.Config {
	return stream.Config{
		URL: url, SubjectPrefix: "contacts", EventsStream: "PATCHBAY_EVENTS", DLQStream: "PATCHBAY_DLQ",
		Replicas: 1, DedupWindow: 25 * time.Hour, EventsMaxAge: 0, DLQMaxAge: 0, Consumer: "patchbay-worker", MaxBytes: -1,
	}
}

// Start runs NATS, both sandboxes and ingest; workers are started with StartWorker.
func Start(t testing.TB, o Options) *Stack {
	t.Helper()
	emb, err := embedded.Run(embedded.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	s := &Stack{T: t, NATS: emb, Stream: StreamConfig(emb.ClientURL()), Log: Logger(t), opts: o}
	s.NC, err = stream.Connect(context.Background(), emb.ClientURL(), "", "pbtest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.NC.Close)
	if s.JS, err = jetstream.New(s.NC); err != nil {
		t.Fatal(err)
	}
	if err := stream.Ensure(context.Background(), s.JS, s.Stream); err != nil {
		t.Fatal(err)
	}
	s.RevyOps, err = sandbox.NewRevyOps(sandbox.RevyOpsConfig{APIKeys: []string{RevyOpsKey}})
	if err != nil {
		t.Fatal(err)
	}
	s.Skipcall, err = sandbox.NewSkipcall(sandbox.SkipcallConfig{APIKeys: []string{SkipcallKey}, RatePerMinute: o.SkipcallRate, RateWindow: o.SkipcallWindow})
	if err != nil {
		t.Fatal(err)
	}
	rs := httptest.NewServer(s.RevyOps)
	t.Cleanup(rs.Close)
	ss := httptest.NewServer(s.Skipcall)
	t.Cleanup(ss.Close)
	s.RevyURL, s.SkipURL = rs.URL, ss.URL

	icfg := IngestConfig()
	if o.Ingest != nil {
		o.Ingest(&icfg)
	}
	h, err := ingest.New(icfg, s.JS, s.Stream.EventsStream, s.Stream.SubjectPrefix, s.Log, o.Registerer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() }) // after the server below is closed
	h.TraceWith(o.Tracer)
	s.Ingest = httptest.NewServer(h)
	t.Cleanup(s.Ingest.Close)
	return s
}

// IngestConfig is the ingest configuration tests start from.
func IngestConfig() ingest.Config {
	return ingest.Config{
		MaxBodyBytes: 1 << 20, MaxBatch: 1000, PublishTimeout: 2 * time.Second, MaxInFlight: 1024,
		Tokens: []redact.Secret{Token}, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		SignedMaxBodyBytes: 256 << 10, SignedReadTimeout: 5 * time.Second, MaxUnverified: 64,
		WriteTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 1 << 16, ShutdownTimeout: 5 * time.Second,
	}
}

// WorkerConfig is a worker configuration with fast retries for tests.
func WorkerConfig() processor.Config {
	return processor.Config{
		Concurrency: 8, AckWait: 5 * time.Second, MaxAttempts: 4, MaxRetryAge: time.Hour,
		BackoffInitial: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		CredentialsPause: 200 * time.Millisecond, HoldLimit: 500 * time.Millisecond, DrainTimeout: 2 * time.Second, Coalesce: 50,
	}
}

// Worker is a running worker.
type Worker struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// Stop cancels the worker and waits for Run to return; it may be called
// more than once.
func (w *Worker) Stop() error {
	w.once.Do(func() {
		w.cancel()
		w.err = <-w.done
	})
	return w.err
}

// Targets returns provider clients aimed at the stack's sandboxes, each
// with its shared rate budget in the stack's NATS (Skipcall at the rate the
// stack's options gave the sandbox).
func (s *Stack) Targets(cfg processor.Config, timeout time.Duration) map[events.Target]processor.Target {
	s.T.Helper()
	budget := func(t events.Target, key string, perMinute int) *ratelimit.Budget {
		bc := cfg.BudgetConfig(s.Stream, t, key, perMinute, s.opts.SkipcallWindow)
		bc.Registerer = s.opts.Registerer
		b, err := ratelimit.New(context.Background(), s.JS, bc, s.Log)
		if err != nil {
			s.T.Fatal(err)
		}
		s.T.Cleanup(b.Close)
		return b
	}
	rb := budget(events.TargetRevyOps, RevyOpsKey, 0)
	plan := s.opts.SkipcallPlan
	if plan == 0 {
		plan = s.opts.SkipcallRate
	}
	sb := budget(events.TargetSkipcall, SkipcallKey, plan)
	rc, err := revyops.New(revyops.Config{BaseURL: s.RevyURL, APIKey: RevyOpsKey, AuthHeader: "X-API-Key", AuthFormat: "%s", Timeout: timeout},
		processor.WithBudget(nil, rb, timeout, 16), 16)
	if err != nil {
		s.T.Fatal(err)
	}
	sc, err := skipcall.New(skipcall.Config{BaseURL: s.SkipURL, APIKey: SkipcallKey, Timeout: timeout}, processor.WithBudget(nil, sb, timeout, 16), 16)
	if err != nil {
		s.T.Fatal(err)
	}
	return map[events.Target]processor.Target{
		events.TargetRevyOps:  {Provider: rc, Budget: rb},
		events.TargetSkipcall: {Provider: sc, Budget: sb},
	}
}

// StartWorker runs a worker with cfg until the test ends or Stop is called.
func (s *Stack) StartWorker(cfg processor.Config) *Worker {
	s.T.Helper()
	w, err := processor.New(cfg, processor.Deps{JS: s.JS, Conn: s.NC, Stream: s.Stream, Targets: s.Targets(cfg, 2*time.Second), Logger: s.Log})
	if err != nil {
		s.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wk := &Worker{cancel: cancel, done: make(chan error, 1)}
	go func() { wk.done <- w.Run(ctx) }()
	s.T.Cleanup(func() { _ = wk.Stop() })
	return wk
}

// Post sends body to ingest with the test token and returns status and body.
func (s *Stack) Post(body []byte, hdr map[string]string) (int, []byte) {
	s.T.Helper()
	req, err := http.NewRequest(http.MethodPost, s.Ingest.URL+"/v1/events", bytes.NewReader(body))
	if err != nil {
		s.T.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+Token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.T.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// PostEvent posts one event and fails the test unless it is accepted.
func (s *Stack) PostEvent(ev map[string]any) {
	s.T.Helper()
	b, _ := json.Marshal(ev)
	if code, body := s.Post(b, nil); code != http.StatusAccepted {
		s.T.Fatalf("POST event: %d %s", code, body)
	}
}

// StreamMsgs returns how many messages a stream holds.
func (s *Stack) StreamMsgs(name string) uint64 {
	s.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	str, err := s.JS.Stream(ctx, name)
	if err != nil {
		s.T.Fatal(err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		s.T.Fatal(err)
	}
	return info.State.Msgs
}

// Eventually polls cond every 10ms until it holds or d passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
