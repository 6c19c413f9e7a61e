// Command worker runs patchbay's delivery worker; it is 'patchbay worker' as
// a binary of its own, configured from the environment.
package main

import (
	"os"

	"github.com/patchbay/patchbay/internal/app"
)

func main() {
	args := []string{"worker"}
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" { // the container's health check
		args = os.Args[1:]
	}
	os.Exit(app.Main(args))
}
