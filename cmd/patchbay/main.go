// Command patchbay runs patchbay's services and operator commands:
// dev (everything in one process), ingest, worker, dlq list|replay, env.
package main

import (
	"os"

	"github.com/patchbay/patchbay/internal/app"
)

func main() { os.Exit(app.Main(os.Args[1:])) }
