// Command patchbay runs patchbay's services and operator commands: dev
// (everything in one process), bench, ingest, worker, dlq list|replay, env.
// It is the only binary that links dev mode and the load harness.
package main

import (
	"os"

	"github.com/patchbay/patchbay/internal/app"
	"github.com/patchbay/patchbay/internal/dev"
)

func main() { os.Exit(app.Main(os.Args[1:], dev.Commands()...)) }
