package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/ratelimit"
	"github.com/patchbay/patchbay/processor/revyops"
	"github.com/patchbay/patchbay/processor/skipcall"
	"github.com/patchbay/patchbay/stream"
)

// IngestConfig is everything the ingest service reads from the environment.
type IngestConfig struct {
	Stream stream.Config
	Ingest ingest.Config
}

// WorkerConfig is everything the worker service reads from the environment.
type WorkerConfig struct {
	Stream    stream.Config
	Worker    processor.Config
	RevyOps   revyops.Config
	Skipcall  skipcall.Config
	AdminAddr string
}

// RunIngest runs the ingest service until ctx is done, then stops accepting
// connections, lets in-flight requests finish their publishes, and drains
// the NATS connection. ln may be nil to listen on cfg.Ingest.Addr.
func RunIngest(ctx context.Context, log *slog.Logger, cfg IngestConfig, ln net.Listener) error {
	nc, js, err := connect(ctx, log, cfg.Stream, "patchbay-ingest")
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := newRegistry()
	return runIngestOn(ctx, log, cfg, js, ln, reg, true, nc)
}

func runIngestOn(ctx context.Context, log *slog.Logger, cfg IngestConfig, js jetstream.JetStream, ln net.Listener, reg *prometheus.Registry, admin bool, nc *nats.Conn) error {
	h, err := ingest.New(cfg.Ingest, js, cfg.Stream.EventsStream, cfg.Stream.SubjectPrefix, log, reg)
	if err != nil {
		return err
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Ingest.Addr); err != nil {
			return fmt.Errorf("ingest: listen: %w", err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := serve(gctx, log, "ingest", h.Server(), ln, cfg.Ingest.ShutdownTimeout)
		if nc != nil {
			// Every request has returned: flush what is left on the wire.
			_ = nc.Drain()
		}
		return err
	})
	if admin {
		g.Go(func() error { return serveAdmin(gctx, log, cfg.Ingest.AdminAddr, reg) })
	}
	return g.Wait()
}

// NewProviders builds the provider clients for the worker, each sending
// through its key's rate budget, shared with every other replica through
// js. Call the returned close when the worker has stopped.
func NewProviders(ctx context.Context, js jetstream.JetStream, log *slog.Logger, reg prometheus.Registerer, cfg WorkerConfig) (map[events.Target]processor.Target, func(), error) {
	conns := cfg.Worker.Concurrency
	var budgets []*ratelimit.Budget
	closeAll := func() {
		for _, b := range budgets {
			b.Close()
		}
	}
	budget := func(t events.Target, key string, perMinute int) (*ratelimit.Budget, error) {
		bc := cfg.Worker.BudgetConfig(cfg.Stream, t, key, perMinute, 0)
		bc.Registerer = reg
		b, err := ratelimit.New(ctx, js, bc, log.With("provider", string(t)))
		if err != nil {
			return nil, fmt.Errorf("worker: %s rate budget: %w", t, err)
		}
		budgets = append(budgets, b)
		return b, nil
	}
	rb, err := budget(events.TargetRevyOps, cfg.RevyOps.APIKey.Reveal(), cfg.RevyOps.RatePerMinute)
	if err != nil {
		return nil, nil, err
	}
	sb, err := budget(events.TargetSkipcall, cfg.Skipcall.APIKey.Reveal(), cfg.Skipcall.RatePerMinute)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	rc, err := revyops.New(cfg.RevyOps, processor.WithBudget(nil, rb, cfg.RevyOps.Timeout, conns), conns)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	sc, err := skipcall.New(cfg.Skipcall, processor.WithBudget(nil, sb, cfg.Skipcall.Timeout, conns), conns)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return map[events.Target]processor.Target{
		events.TargetRevyOps:  {Provider: rc, Budget: rb},
		events.TargetSkipcall: {Provider: sc, Budget: sb},
	}, closeAll, nil
}

// RunWorker runs the worker until ctx is done, then drains in-flight
// deliveries (bounded by the drain timeout) and the NATS connection.
func RunWorker(ctx context.Context, log *slog.Logger, cfg WorkerConfig) error {
	if err := validateProviders(cfg); err != nil {
		return err
	}
	nc, js, err := connect(ctx, log, cfg.Stream, "patchbay-worker")
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := newRegistry()
	targets, closeBudgets, err := NewProviders(ctx, js, log, reg, cfg)
	if err != nil {
		return err
	}
	defer closeBudgets()
	w, err := processor.New(cfg.Worker, processor.Deps{JS: js, Conn: nc, Stream: cfg.Stream, Targets: targets, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := w.Run(gctx)
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		drainConn(dctx, nc)
		return err
	})
	g.Go(func() error { return serveAdmin(gctx, log, cfg.AdminAddr, reg) })
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
