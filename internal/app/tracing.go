package app

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/patchbay/patchbay/internal/tracing"
)

// Tracing is a process's tracing, started by StartTracing.
type Tracing struct {
	*tracing.Tracing
	log *slog.Logger
}

// StartTracing sets up the tracing cfg and the standard OTEL_* variables
// ask for (off when they ask for none), as service; log says whether it is
// on. Stop it when the process stops, so the last spans are exported.
func StartTracing(ctx context.Context, log *slog.Logger, service string, cfg tracing.Config) (Tracing, error) {
	t, err := tracing.Setup(ctx, service, cfg, os.Getenv, os.Stderr)
	if err != nil {
		return Tracing{}, err
	}
	if t.Provider != nil {
		log.Info("tracing on", "service", service, "exporter", os.Getenv("OTEL_TRACES_EXPORTER"), "file", cfg.File)
	}
	return Tracing{Tracing: t, log: log}, nil
}

// stop flushes and stops the tracing, within 5 seconds.
func (t Tracing) stop() {
	if t.Tracing == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		t.log.Warn("tracing: the last spans may not have been exported", "err", err)
	}
}

// Stop is stop for other packages (dev mode).
func (t Tracing) Stop() { t.stop() }
