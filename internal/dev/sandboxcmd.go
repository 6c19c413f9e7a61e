package dev

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/patchbay/patchbay/internal/app"
	"github.com/patchbay/patchbay/sandbox"
)

// RunSandboxes serves the two sandbox providers on their own, as dev mode
// does, on dev's RevyOps and Skipcall addresses, until ctx is done: for a
// production-like stack (deploy/compose.yaml) whose workers need
// providers to talk to. They accept the dev keys (DevRevyOpsKey,
// DevSkipcallKey) and create contacts on their first PATCH.
func RunSandboxes(ctx context.Context, log *slog.Logger, dev DevConfig) error {
	rv, err := sandbox.NewRevyOps(sandbox.RevyOpsConfig{APIKeys: []string{DevRevyOpsKey}, AutoCreate: true})
	if err != nil {
		return err
	}
	sk, err := sandbox.NewSkipcall(sandbox.SkipcallConfig{APIKeys: []string{DevSkipcallKey}, RatePerMinute: dev.SkipcallRate, AutoCreate: true})
	if err != nil {
		return err
	}
	rvLn, err := net.Listen("tcp", dev.RevyOpsAddr)
	if err != nil {
		return fmt.Errorf("sandbox revyops: %w", err)
	}
	skLn, err := net.Listen("tcp", dev.SkipcallAddr)
	if err != nil {
		_ = rvLn.Close()
		return fmt.Errorf("sandbox skipcall: %w", err)
	}
	mux := func(h http.Handler) *http.Server {
		m := http.NewServeMux()
		m.Handle("/", h)
		m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		return &http.Server{Handler: m, ReadHeaderTimeout: 5 * time.Second}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return app.Serve(gctx, log, "sandbox-revyops", mux(rv), rvLn, time.Second) })
	g.Go(func() error { return app.Serve(gctx, log, "sandbox-skipcall", mux(sk), skLn, time.Second) })
	err = g.Wait()
	if errors.Is(err, context.Canceled) || errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
