package dev

import (
	"context"

	"github.com/patchbay/patchbay/internal/app"
)

// Commands returns dev mode and the bench as commands for app.Main.
func Commands() []app.Command {
	dev := &DevConfig{}
	return []app.Command{
		{
			Name:  "dev",
			Usage: "  patchbay dev                      run everything in one process (embedded NATS, sandbox providers)\n",
			Env:   []app.EnvSpec{{Prefix: "patchbay_dev", Spec: dev}},
			Run: func(ctx context.Context, inv app.Invocation) error {
				return RunDev(ctx, inv.Log, *dev, inv.Config.Worker, inv.Config.Ingest)
			},
		},
		{
			Name:  "sandbox",
			Usage: "  patchbay sandbox                  serve the two sandbox providers alone (PATCHBAY_DEV_*_ADDR; deploy/compose.yaml)\n",
			Run: func(ctx context.Context, inv app.Invocation) error {
				return RunSandboxes(ctx, inv.Log, *dev)
			},
		},
		{
			Name:  "bench",
			Usage: "  patchbay bench [-duration D] [-out FILE] ...   load harness: ingest and worker against floors, on loopback\n",
			Run: func(ctx context.Context, inv app.Invocation) error {
				return runBench(ctx, inv.Args, inv.Stdout, inv.Stderr)
			},
		},
	}
}
