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
	"golang.org/x/sync/errgroup"

	"github.com/patchbay/patchbay/events"
	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/processor"
	"github.com/patchbay/patchbay/processor/httpcall"
	"github.com/patchbay/patchbay/processor/revyops"
	"github.com/patchbay/patchbay/processor/skipcall"
	"github.com/patchbay/patchbay/stream"
)

// IngestConfig is everything the ingest service reads from the environment.
type IngestConfig struct {
	Stream stream.Config
	Ingest ingest.Config
	Admin  AdminConfig
}

// WorkerConfig is everything the worker service reads from the environment.
type WorkerConfig struct {
	Stream    stream.Config
	Worker    processor.Config
	RevyOps   revyops.Config
	Skipcall  skipcall.Config
	AdminAddr string
	Admin     AdminConfig
}

// RunIngest runs the ingest service until ctx is done, then stops accepting
// connections, lets in-flight requests finish their publishes, and drains
// the NATS connection. ln may be nil to listen on cfg.Ingest.Addr.
func RunIngest(ctx context.Context, log *slog.Logger, cfg IngestConfig, ln net.Listener) error {
	if err := errors.Join(cfg.Admin.Validate(cfg.Ingest.AdminAddr), cfg.Ingest.Validate()); err != nil {
		return err
	}
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

// NewProviders builds the provider clients for the worker; reg (may be nil)
// receives their metrics.
func NewProviders(cfg WorkerConfig, log *slog.Logger, reg prometheus.Registerer) (map[events.Target]processor.Target, error) {
	conns := cfg.Worker.Concurrency
	report := []httpcall.Option{httpcall.WithLogger(log), httpcall.WithRegisterer(reg)}
	rc, err := revyops.New(cfg.RevyOps, nil, conns, report...)
	if err != nil {
		return nil, err
	}
	sc, err := skipcall.New(cfg.Skipcall, nil, conns, report...)
	if err != nil {
		return nil, err
	}
	return map[events.Target]processor.Target{
		events.TargetRevyOps:  {Provider: rc, RatePerMinute: cfg.RevyOps.RatePerMinute},
		events.TargetSkipcall: {Provider: sc, RatePerMinute: cfg.Skipcall.RatePerMinute},
	}, nil
}

// NewWorker connects nothing: it builds the provider clients and the worker
// on js and nc, registering metrics with reg.
func NewWorker(log *slog.Logger, cfg WorkerConfig, js jetstream.JetStream, nc *nats.Conn, reg prometheus.Registerer) (*processor.Worker, error) {
	targets, err := NewProviders(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	return processor.New(cfg.Worker, processor.Deps{JS: js, Conn: nc, Stream: cfg.Stream, Targets: targets, Logger: log, Registerer: reg})
}

// RunWorker runs the worker until ctx is done, then drains in-flight
// deliveries (bounded by the drain timeout) and the NATS connection.
func RunWorker(ctx context.Context, log *slog.Logger, cfg WorkerConfig) error {
	// Refuse bad settings before waiting for NATS.
	if err := errors.Join(cfg.Admin.Validate(cfg.AdminAddr), cfg.Worker.Validate(), cfg.RevyOps.Validate(), cfg.Skipcall.Validate()); err != nil {
		return err
	}
	nc, js, err := Connect(ctx, log, cfg.Stream, "patchbay-worker")
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := NewRegistry()
	w, err := NewWorker(log, cfg, js, nc, reg)
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
	g.Go(func() error { return Admin{Addr: cfg.AdminAddr, Config: cfg.Admin, Registry: reg}.Serve(gctx, log) })
	return g.Wait()
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
