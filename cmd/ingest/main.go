// Command ingest runs patchbay's webhook ingest service; it is
// 'patchbay ingest' as a binary of its own, configured from the environment.
package main

import (
	"os"

	"github.com/patchbay/patchbay/internal/app"
)

func main() { os.Exit(app.Main([]string{"ingest"})) }
