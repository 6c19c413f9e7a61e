// Command ingest runs patchbay's webhook ingest service; it is
// 'patchbay ingest' as a binary of its own, configured from the environment.
package main

import (
	"os"

	"github.com/patchbay/patchbay/internal/app"
)

func main() {
	args := []string{"ingest"}
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" { // the container's health check
		args = os.Args[1:]
	}
	os.Exit(app.Main(args))
}
