package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/internal/tracing"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/httpcall"
	"github.com/patchbay/patchbay/processor/ratelimit"
	"github.com/patchbay/patchbay/processor/revyops"
	"github.com/patchbay/patchbay/processor/skipcall"
	"github.com/patchbay/patchbay/stream"
)

// IngestConfig is everything the ingest service reads from the environment.
type IngestConfig struct {
	Stream stream.Config
	Ingest ingest.Config
	Admin  AdminConfig
	Trace  tracing.Config
}

// WorkerConfig is everything the worker service reads from the environment.
type WorkerConfig struct {
	Stream    stream.Config
	Worker    processor.Config
	RevyOps   revyops.Config
	Skipcall  skipcall.Config
	AdminAddr string
	Admin     AdminConfig
	Trace     tracing.Config
}

// RunIngest runs the ingest service until ctx is done, then stops accepting
// connections, lets in-flight requests finish their publishes, and drains
// the NATS connection. ln may be nil to listen on cfg.Ingest.Addr.
func RunIngest(ctx context.Context, log *slog.Logger, cfg IngestConfig, ln net.Listener) error {
	if err := errors.Join(cfg.Admin.Validate(cfg.Ingest.AdminAddr), cfg.Ingest.Validate()); err != nil {
		return err
	}
	tr, err := StartTracing(ctx, log, "patchbay-ingest", cfg.Trace)
	if err != nil {
		return err
	}
	defer tr.stop()
	nc, js, err := Connect(ctx, log, cfg.Stream, "patchbay-ingest")
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := NewRegistry()
	h, err := ingest.New(cfg.Ingest, js, cfg.Stream.EventsStream, cfg.Stream.SubjectPrefix, log, reg)
	if err != nil {
		return err
	}
	defer func() { _ = h.Close() }()
	h.TraceWith(tr.Provider)
	if err := MountSources(ctx, log, h, cfg, js, reg); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ServeIngest(gctx, log, cfg, h, ln, nc) })
	g.Go(func() error {
		return Admin{Addr: cfg.Ingest.AdminAddr, Config: cfg.Admin, Registry: reg, Ready: h.Ready}.Serve(gctx, log)
	})
	return g.Wait()
}

// ServeIngest serves h on ln (nil: listen on cfg.Ingest.Addr) until ctx is
// done, then shuts the server down within the shutdown timeout and, when nc
// is not nil, drains it.
func ServeIngest(ctx context.Context, log *slog.Logger, cfg IngestConfig, h *ingest.Handler, ln net.Listener, nc *nats.Conn) error {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Ingest.Addr); err != nil {
			return fmt.Errorf("ingest: listen: %w", err)
		}
	}
	err := Serve(ctx, log, "ingest", h.Server(), ln, cfg.Ingest.ShutdownTimeout)
	if nc != nil {
		// Every request has returned: flush what is left on the wire.
		_ = nc.Drain()
	}
	return err
}

// NewProviders builds the provider clients for the worker, each sending
// through its key's rate budget, shared with every other replica through
// js; reg (may be nil) receives their metrics and log their implausible
// rate-limit headers. Call the returned close when the worker has stopped.
func NewProviders(ctx context.Context, js jetstream.JetStream, log *slog.Logger, reg prometheus.Registerer, cfg WorkerConfig) (map[events.Target]processor.Target, func(), error) {
	conns := cfg.Worker.Concurrency
	var budgets []*ratelimit.Budget
	closeAll := func() {
		for _, b := range budgets {
			b.Close()
		}
	}
	budget := func(t events.Target, key string, perMinute int, window time.Duration) (*ratelimit.Budget, error) {
		bc := cfg.Worker.BudgetConfig(cfg.Stream, t, key, perMinute, window)
		bc.Registerer = reg
		b, err := ratelimit.New(ctx, js, bc, log)
		if err != nil {
			return nil, fmt.Errorf("worker: %s rate budget: %w", t, err)
		}
		budgets = append(budgets, b)
		return b, nil
	}
	rb, err := budget(events.TargetRevyOps, cfg.RevyOps.APIKey.Reveal(), cfg.RevyOps.RatePerMinute, 0)
	if err != nil {
		return nil, nil, err
	}
	sb, err := budget(events.TargetSkipcall, cfg.Skipcall.APIKey.Reveal(), cfg.Skipcall.RatePerMinute, cfg.Skipcall.RateWindow)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	report := []httpcall.Option{httpcall.WithLogger(log), httpcall.WithRegisterer(reg)}
	rc, err := revyops.New(cfg.RevyOps, processor.WithBudget(nil, rb, cfg.RevyOps.Timeout, conns), conns, report...)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	sc, err := skipcall.New(cfg.Skipcall, processor.WithBudget(nil, sb, cfg.Skipcall.Timeout, conns), conns, report...)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return map[events.Target]processor.Target{
		events.TargetRevyOps:  {Provider: rc, Budget: rb},
		events.TargetSkipcall: {Provider: sc, Budget: sb},
	}, closeAll, nil
}

// NewWorker builds the provider clients and the worker on js and nc,
// registering metrics with reg. Call the returned close when the worker has
// stopped.
func NewWorker(ctx context.Context, log *slog.Logger, cfg WorkerConfig, js jetstream.JetStream, nc *nats.Conn, reg prometheus.Registerer, tp ...trace.TracerProvider) (*processor.Worker, func(), error) {
	targets, closeBudgets, err := NewProviders(ctx, js, log, reg, cfg)
	if err != nil {
		return nil, nil, err
	}
	var tracer trace.TracerProvider
	if len(tp) > 0 {
		tracer = tp[0]
	}
	w, err := processor.New(cfg.Worker, processor.Deps{JS: js, Conn: nc, Stream: cfg.Stream, Targets: targets, Logger: log, Registerer: reg, TracerProvider: tracer})
	if err != nil {
		closeBudgets()
		return nil, nil, err
	}
	return w, closeBudgets, nil
}

// RunWorker runs the worker until ctx is done, then drains in-flight
// deliveries (bounded by the drain timeout) and the NATS connection.
func RunWorker(ctx context.Context, log *slog.Logger, cfg WorkerConfig) error {
	// Refuse bad settings before waiting for NATS.
	if err := errors.Join(cfg.Admin.Validate(cfg.AdminAddr), cfg.Worker.Validate(), validateProviders(cfg)); err != nil {
		return err
	}
	tr, err := StartTracing(ctx, log, "patchbay-worker", cfg.Trace)
	if err != nil {
		return err
	}
	defer tr.stop()
	nc, js, err := Connect(ctx, log, cfg.Stream, "patchbay-worker")
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := NewRegistry()
	// The rate budgets read their records from NATS at start: while NATS is
	// unreachable or electing leaders, keep trying rather than exit.
	var w *processor.Worker
	var closeBudgets func()
	for try := 1; ; try++ {
		w, closeBudgets, err = NewWorker(ctx, log, cfg, js, nc, reg, tr.Provider)
		if err == nil {
			break
		}
		if errors.Is(err, ratelimit.ErrConfig) || ctx.Err() != nil {
			return err
		}
		log.Warn("worker: could not set up the rate budgets; retrying", "err", err, "try", try)
		if processor.Wait(ctx, min(time.Duration(try)*500*time.Millisecond, 5*time.Second)) != nil {
			return nil
		}
	}
	defer closeBudgets()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := w.Run(gctx)
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		drainConn(dctx, nc)
		return err
	})
	detail := func() any { return map[string]any{"targets": w.States()} }
	g.Go(func() error {
		return Admin{Addr: cfg.AdminAddr, Config: cfg.Admin, Registry: reg, Detail: detail, Routes: OperatorRoutes(js, cfg.Stream, log)}.Serve(gctx, log)
	})
	return g.Wait()
}

// validateProviders checks the provider configuration before anything is
// dialled, so a typo fails at once with a clear message.
func validateProviders(cfg WorkerConfig) error {
	if err := cfg.RevyOps.Validate(); err != nil {
		return err
	}
	return cfg.Skipcall.Validate()
}

// drainConn drains nc and waits for it to close or ctx to end.
func drainConn(ctx context.Context, nc *nats.Conn) {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		return
	}
	select {
	case <-closed:
	case <-ctx.Done():
	}
}
