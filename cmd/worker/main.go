// Command worker runs patchbay's delivery worker; it is 'patchbay worker' as
// a binary of its own, configured from the environment.
package main

import (
	"os"

	"github.com/patchbay/patchbay/internal/app"
)

func main() { os.Exit(app.Main([]string{"worker"})) }
