package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
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
	// ContactsBucket is ingest's contact map, where the admin API's replay
	// looks unmapped letters up again.
	ContactsBucket string
	Trace          tracing.Config
}

// RunIngest runs the ingest service until ctx is done, then stops accepting
// connections, lets in-flight requests finish their publishes, and drains
// the NATS connection. ln may be nil to listen on cfg.Ingest.Addr.
func RunIngest(ctx context.Context, log *slog.Logger, cfg IngestConfig, ln net.Listener) error {
	if err := errors.Join(cfg.Admin.Validate(cfg.Ingest.AdminAddr), cfg.Ingest.Validate()); err != nil {
		return err
	}
	// Listen before waiting for NATS, so a port in use fails at once.
	if ln == nil {
		var err error
		if ln, err = listen(cfg.Ingest.Addr, "ingest", "PATCHBAY_INGEST_ADDR"); err != nil {
			return err
		}
	}
	tr, err := StartTracing(ctx, log, "patchbay-ingest", cfg.Trace)
	if err != nil {
		return err
	}
	defer tr.stop()
	nc, js, err := Connect(ctx, log, cfg.Stream, "patchbay-ingest")
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer nc.Close()
	reg := NewRegistry()
	h, err := ingest.New(cfg.Ingest, js, cfg.Stream.EventsStream, cfg.Stream.SubjectPrefix, log, reg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer func() { _ = h.Close() }()
	h.TraceWith(tr.Provider)
	if err := MountSources(ctx, log, h, cfg, js, reg); err != nil {
		_ = ln.Close()
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ServeIngest(gctx, log, cfg, h, ln, nc) })
	g.Go(func() error {
		err := Admin{Addr: cfg.Ingest.AdminAddr, Config: cfg.Admin, Registry: reg, Ready: h.Ready}.Serve(gctx, log)
		return explainAddrInUse(err, cfg.Ingest.AdminAddr, "PATCHBAY_INGEST_ADMIN_ADDR")
	})
	return g.Wait()
}

// ServeIngest serves h on ln (nil: listen on cfg.Ingest.Addr) until ctx is
// done, then shuts the server down within the shutdown timeout and, when nc
// is not nil, drains it.
func ServeIngest(ctx context.Context, log *slog.Logger, cfg IngestConfig, h *ingest.Handler, ln net.Listener, nc *nats.Conn) error {
	if ln == nil {
		var err error
		if ln, err = listen(cfg.Ingest.Addr, "ingest", "PATCHBAY_INGEST_ADDR"); err != nil {
			return err
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
//
// Only the targets cfg enables (EnabledTargets) get a client; a target
// absent from the map is disabled and its events stay queued.
func NewProviders(ctx context.Context, js jetstream.JetStream, log *slog.Logger, reg prometheus.Registerer, cfg WorkerConfig) (map[events.Target]processor.Target, func(), error) {
	enabled, err := cfg.EnabledTargets()
	if err != nil {
		return nil, nil, err
	}
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
	report := []httpcall.Option{httpcall.WithLogger(log), httpcall.WithRegisterer(reg)}
	targets := make(map[events.Target]processor.Target, len(enabled))
	for _, t := range enabled {
		var tg processor.Target
		var err error
		switch t {
		case events.TargetRevyOps:
			if tg.Budget, err = budget(t, cfg.RevyOps.APIKey.Reveal(), cfg.RevyOps.RatePerMinute, 0); err == nil {
				tg.Provider, err = revyops.New(cfg.RevyOps, processor.WithBudget(nil, tg.Budget, cfg.RevyOps.Timeout, conns), conns, report...)
			}
			tg.SettleHorizon = settleHorizon(log, "revyops", cfg.RevyOps.SettleHorizon, cfg.RevyOps.Horizon(), cfg.Worker)
		case events.TargetSkipcall:
			if tg.Budget, err = budget(t, cfg.Skipcall.APIKey.Reveal(), cfg.Skipcall.RatePerMinute, cfg.Skipcall.RateWindow); err == nil {
				tg.Provider, err = skipcall.New(cfg.Skipcall, processor.WithBudget(nil, tg.Budget, cfg.Skipcall.Timeout, conns), conns, report...)
			}
			tg.SettleHorizon = settleHorizon(log, "skipcall", cfg.Skipcall.SettleHorizon, cfg.Skipcall.Horizon(), cfg.Worker)
		}
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		targets[t] = tg
	}
	return targets, closeAll, nil
}

// settleHorizon returns a provider's settle horizon: horizon (set, or twice
// its timeout), at most what the worker's lease covers. A horizon set
// beyond that is refused by validateProviders; the default is capped, with
// a warning: a request applied later than the cap can leave an older value.
func settleHorizon(log *slog.Logger, provider string, set, horizon time.Duration, w processor.Config) time.Duration {
	most := w.MaxSettleHorizon()
	if set == 0 && horizon > most {
		log.Warn("settle horizon capped at two thirds of the lease TTL, below twice the provider's timeout: a request the provider applies later than that can leave an older value; raise PATCHBAY_WORKER_LEASE_TTL",
			"provider", provider, "horizon", most, "twice_timeout", horizon, "lease_ttl_for_it", horizon*3/2)
		return most
	}
	return horizon
}

// validateHorizons refuses a settle horizon set beyond what the worker's
// lease covers (two thirds of LEASE_TTL).
func validateHorizons(cfg WorkerConfig) error {
	most := cfg.Worker.MaxSettleHorizon()
	for _, h := range []struct {
		env string
		set time.Duration
	}{{"PATCHBAY_REVYOPS_SETTLE_HORIZON", cfg.RevyOps.SettleHorizon}, {"PATCHBAY_SKIPCALL_SETTLE_HORIZON", cfg.Skipcall.SettleHorizon}} {
		if h.set > most {
			return fmt.Errorf("worker: %s %s is longer than the lease covers: at most two thirds of PATCHBAY_WORKER_LEASE_TTL (%s); raise the lease TTL to %s or more",
				h.env, h.set, most, (h.set*3/2+time.Second-1)/time.Second*time.Second)
		}
	}
	return nil
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
	logTargets(log, cfg)
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
	closeBudgets = sync.OnceFunc(closeBudgets)
	defer closeBudgets()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := w.Run(gctx)
		// The budgets' watches stop before the connection drains, so a
		// normal shutdown does not log them losing it.
		closeBudgets()
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		drainConn(dctx, nc)
		return err
	})
	detail := func() any { return map[string]any{"targets": w.States()} }
	store := NewDLQStore(js, cfg.Stream, cfg.ContactsBucket)
	con, err := NewConsole(log, store, cfg.Stream, cfg.Admin, js, w)
	if err != nil {
		return err
	}
	g.Go(func() error {
		err := Admin{Addr: cfg.AdminAddr, Config: cfg.Admin, Registry: reg, Detail: detail, Log: log,
			DeadLetters: store, Console: con, Routes: OperatorRoutes(js, cfg.Stream, log)}.Serve(gctx, log)
		return explainAddrInUse(err, cfg.AdminAddr, "PATCHBAY_WORKER_ADMIN_ADDR")
	})
	return g.Wait()
}

// validateProviders checks the provider configuration before anything is
// dialled, so a typo fails at once with a clear message.
func validateProviders(cfg WorkerConfig) error {
	if _, err := cfg.EnabledTargets(); err != nil {
		return err
	}
	return validateHorizons(cfg)
}

// EnabledTargets returns the targets this worker delivers to: those whose
// API key is set (PATCHBAY_REVYOPS_API_KEY, PATCHBAY_SKIPCALL_API_KEY).
// The key is what a target cannot run without, so setting it is what
// enables the target, and no second list has to agree with it. Each
// enabled target's settings are validated. It returns an error when no
// target is enabled, or when RevyOps has a base URL but no key (half a
// configuration is a mistake, not a choice); the error names the
// variables to set.
func (cfg WorkerConfig) EnabledTargets() ([]events.Target, error) {
	var out []events.Target
	var errs []error
	if cfg.RevyOps.APIKey != "" {
		out = append(out, events.TargetRevyOps)
		errs = append(errs, cfg.RevyOps.Validate())
	} else if cfg.RevyOps.BaseURL != "" {
		errs = append(errs, errors.New("worker: PATCHBAY_REVYOPS_BASE_URL is set but PATCHBAY_REVYOPS_API_KEY is not: set the key to deliver to RevyOps, or unset the URL"))
	}
	if cfg.Skipcall.APIKey != "" {
		out = append(out, events.TargetSkipcall)
		errs = append(errs, cfg.Skipcall.Validate())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("worker: no target enabled: set PATCHBAY_SKIPCALL_API_KEY, or PATCHBAY_REVYOPS_BASE_URL and PATCHBAY_REVYOPS_API_KEY, or both")
	}
	return out, nil
}

// logTargets says at start which targets this worker delivers to, and for
// each disabled one why and what becomes of its events.
func logTargets(log *slog.Logger, cfg WorkerConfig) {
	enabled, err := cfg.EnabledTargets()
	if err != nil {
		return
	}
	on := map[events.Target]bool{}
	for _, t := range enabled {
		on[t] = true
	}
	for _, t := range events.Targets() {
		if on[t] {
			log.Info("target enabled", "target", t)
			continue
		}
		log.Warn("target disabled: its API key is not set; its events stay queued in the stream (not delivered, not dead-lettered) until a worker with the key runs",
			"target", t, "set", targetKeyVar(t), "consumer", cfg.Stream.TargetConsumer(string(t)))
	}
}

// targetKeyVar is the variable that enables target t.
func targetKeyVar(t events.Target) string {
	return "PATCHBAY_" + strings.ToUpper(string(t)) + "_API_KEY"
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
