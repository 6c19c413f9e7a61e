// Package dev holds the commands only the all-in-one patchbay binary
// offers: dev mode (an embedded JetStream server and both sandbox providers
// in one process) and the load harness. cmd/ingest and cmd/worker do not
// import it, so production binaries link neither.
package dev

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/patchbay/patchbay/ingest"
	"github.com/patchbay/patchbay/internal/app"
	"github.com/patchbay/patchbay/redact"
	"github.com/patchbay/patchbay/sandbox"
	"github.com/patchbay/patchbay/stream/embedded"
)

// DevConfig configures dev mode (environment prefix PATCHBAY_DEV_): an
// embedded JetStream server, both sandbox providers, ingest and workers in
// one process on loopback.
type DevConfig struct {
	DataDir      string `envconfig:"DATA_DIR" default:".patchbay" desc:"where the embedded JetStream server keeps its files"`
	NATSPort     int    `envconfig:"NATS_PORT" default:"4222" desc:"embedded NATS port on 127.0.0.1 (-1: any free port)"`
	IngestAddr   string `envconfig:"INGEST_ADDR" default:"127.0.0.1:8080" desc:"ingest listen address"`
	RevyOpsAddr  string `envconfig:"REVYOPS_ADDR" default:"127.0.0.1:8081" desc:"sandbox RevyOps listen address"`
	SkipcallAddr string `envconfig:"SKIPCALL_ADDR" default:"127.0.0.1:8082" desc:"sandbox Skipcall listen address"`
	AdminAddr    string `envconfig:"ADMIN_ADDR" default:"127.0.0.1:9090" desc:"metrics and pprof listen address (pprof is on in dev mode, on loopback)"`
	Token        string `envconfig:"TOKEN" default:"dev-token-not-a-secret" desc:"bearer token ingest accepts in dev mode"`
	SkipcallRate int    `envconfig:"SKIPCALL_RATE_PER_MINUTE" default:"1000" desc:"sandbox Skipcall rate limit per key (EXPERT plan)"`
	// A slow provider, for trying the settle horizon out: a share of the
	// sandboxes' PATCHes applied only after a delay past the worker's
	// timeout.
	SandboxLateRate  float64       `envconfig:"SANDBOX_LATE_RATE" default:"0" desc:"share (0..1) of sandbox PATCHes applied late: held for SANDBOX_LATE_DELAY, then applied even though the worker gave up (a provider under load)"`
	SandboxLateDelay time.Duration `envconfig:"SANDBOX_LATE_DELAY" default:"12s" desc:"how long a late sandbox PATCH waits before it is applied (past PATCHBAY_SKIPCALL_TIMEOUT / PATCHBAY_REVYOPS_TIMEOUT)"`
}

// Dev sandbox credentials, printed at start.
const (
	DevSkipcallKey = "sk_test_patchbay_dev"
	DevRevyOpsKey  = "revyops-dev-key"
)

// RunDev runs the whole pipeline in this process until ctx is done. It is
// the README's first command.
func RunDev(ctx context.Context, log *slog.Logger, dev DevConfig, wcfg app.WorkerConfig, icfg app.IngestConfig) error {
	dir, err := filepath.Abs(filepath.Join(dev.DataDir, "nats"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	emb, err := embedded.Run(embedded.Config{StoreDir: dir, Port: dev.NATSPort})
	if err != nil {
		return err
	}
	defer emb.Shutdown()
	log.Info("embedded NATS JetStream", "url", emb.ClientURL(), "store", dir)

	rv, err := sandbox.NewRevyOps(sandbox.RevyOpsConfig{APIKeys: []string{DevRevyOpsKey}, AutoCreate: true})
	if err != nil {
		return err
	}
	sk, err := sandbox.NewSkipcall(sandbox.SkipcallConfig{APIKeys: []string{DevSkipcallKey}, RatePerMinute: dev.SkipcallRate, AutoCreate: true})
	if err != nil {
		return err
	}
	if dev.SandboxLateRate < 0 || dev.SandboxLateRate > 1 || dev.SandboxLateDelay < 0 {
		return fmt.Errorf("dev: sandbox late rate %g must be in 0..1 and its delay not negative", dev.SandboxLateRate)
	}
	if dev.SandboxLateRate > 0 {
		late := sandbox.Faults{LateRate: dev.SandboxLateRate, LateDelay: dev.SandboxLateDelay}
		rv.SetFaults(late)
		sk.SetFaults(late)
		log.Warn("sandboxes apply a share of PATCHes late", "rate", dev.SandboxLateRate, "delay", dev.SandboxLateDelay)
	}
	rvLn, err := net.Listen("tcp", dev.RevyOpsAddr)
	if err != nil {
		return fmt.Errorf("sandbox revyops: %w", err)
	}
	skLn, err := net.Listen("tcp", dev.SkipcallAddr)
	if err != nil {
		return fmt.Errorf("sandbox skipcall: %w", err)
	}
	ingLn, err := net.Listen("tcp", dev.IngestAddr)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}

	scfg := wcfg.Stream
	scfg.URL = emb.ClientURL()
	wcfg.Stream, icfg.Stream = scfg, scfg
	wcfg.RevyOps.BaseURL = "http://" + rvLn.Addr().String()
	wcfg.RevyOps.APIKey = redact.Secret(DevRevyOpsKey)
	wcfg.Skipcall.BaseURL = "http://" + skLn.Addr().String()
	wcfg.Skipcall.APIKey = redact.Secret(DevSkipcallKey)
	wcfg.Skipcall.RatePerMinute = dev.SkipcallRate
	icfg.Ingest.Tokens = append(icfg.Ingest.Tokens, redact.Secret(dev.Token))

	tr, err := app.StartTracing(ctx, log, "patchbay-dev", icfg.Trace)
	if err != nil {
		return err
	}
	defer tr.Stop()
	nc, js, err := app.Connect(ctx, log, scfg, "patchbay-dev")
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := app.NewRegistry()
	w, closeBudgets, err := app.NewWorker(ctx, log.With("service", "worker"), wcfg, js, nc, reg, tr.Provider)
	if err != nil {
		return err
	}
	defer closeBudgets()
	h, err := ingest.New(icfg.Ingest, js, scfg.EventsStream, scfg.SubjectPrefix, log.With("service", "ingest"), reg)
	if err != nil {
		return err
	}
	defer func() { _ = h.Close() }()
	h.TraceWith(tr.Provider)
	if err := app.MountSources(ctx, log.With("service", "ingest"), h, icfg, js, reg); err != nil {
		return err
	}
	store := app.NewDLQStore(js, scfg, icfg.Ingest.ContactsBucket)
	con, err := app.NewConsole(log.With("service", "console"), store, scfg, app.AdminConfig{}, js, w)
	if err != nil {
		return err
	}
	admin := app.Admin{Addr: dev.AdminAddr, Config: app.AdminConfig{PProf: true}, Registry: reg, Ready: h.Ready,
		Log: log.With("service", "admin"), DeadLetters: store, Console: con, Routes: app.OperatorRoutes(js, scfg, log)}
	// Listen here rather than in admin.Serve, so that the recorded address
	// is the bound one (a port of 0 in the configuration is not).
	var adminLn net.Listener
	if dev.AdminAddr != "" {
		if err := admin.Config.Validate(dev.AdminAddr); err != nil {
			return err
		}
		if adminLn, err = net.Listen("tcp", dev.AdminAddr); err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		admin.Addr = adminLn.Addr().String()
	}

	recordDev(log, app.DevInfo{PID: os.Getpid(), NATSURL: emb.ClientURL(), IngestAddr: ingLn.Addr().String(),
		AdminAddr: admin.Addr, RevyOpsAddr: rvLn.Addr().String(), SkipcallAddr: skLn.Addr().String(), StartedAt: time.Now().UTC()})
	defer func() {
		if err := app.RemoveDevInfo(os.Getpid()); err != nil {
			log.Warn("could not remove the dev file", "err", err)
		}
	}()

	g, gctx := errgroup.WithContext(ctx)
	sandboxServer := func(h http.Handler) *http.Server {
		return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	}
	// A sandbox's shutdown may outlast its grace for the worker's spare
	// connections, dialled and never used (net/http waits up to 5s for
	// those): nothing is lost then, so it is not an error.
	serveSandbox := func(name string, h http.Handler, ln net.Listener) error {
		err := app.Serve(gctx, log, name, sandboxServer(h), ln, time.Second)
		if errors.Is(err, context.DeadlineExceeded) {
			return nil
		}
		return err
	}
	g.Go(func() error { return serveSandbox("sandbox-revyops", rv, rvLn) })
	g.Go(func() error { return serveSandbox("sandbox-skipcall", sk, skLn) })
	g.Go(func() error { return app.ServeIngest(gctx, log.With("service", "ingest"), icfg, h, ingLn, nil) })
	g.Go(func() error { return w.Run(gctx) })
	if adminLn != nil {
		g.Go(func() error {
			srv := &http.Server{Handler: admin.Handler(), ReadHeaderTimeout: 5 * time.Second}
			return app.Serve(gctx, log, "admin", srv, adminLn, 2*time.Second)
		})
	}

	fmt.Fprintf(os.Stderr, `
patchbay dev is running (Ctrl-C to stop)
  ingest:            http://%s/v1/events   (Authorization: Bearer %s)
  sandbox RevyOps:   http://%s   (X-API-Key: %s)
  sandbox Skipcall:  http://%s   (Authorization: Bearer %s)
  NATS JetStream:    %s   (streams %s, %s)
  metrics, pprof:    http://%s/metrics
  console:           http://%s%s
`, ingLn.Addr(), dev.Token, rvLn.Addr(), DevRevyOpsKey, skLn.Addr(), DevSkipcallKey, emb.ClientURL(), scfg.EventsStream, scfg.DLQStream, admin.Addr, admin.Addr, app.ConsolePath)

	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// recordDev writes info where operator commands look for a running dev
// (app.FindDev), so that 'patchbay dlq list' and the rest need no
// PATCHBAY_NATS_URL beside it. A dev that cannot write the file still runs:
// it says so, and the commands then ask for the variable.
func recordDev(log *slog.Logger, info app.DevInfo) {
	path, err := app.DevFilePath()
	if err == nil {
		err = app.WriteDevInfo(info)
	}
	if err != nil {
		log.Warn("operator commands will not find this dev by themselves: set PATCHBAY_NATS_URL for them", "err", err, "url", info.NATSURL)
		return
	}
	log.Info("dev addresses recorded for operator commands", "dev_file", path)
}
