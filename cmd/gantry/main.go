// Command gantry is the single Gantry binary. It stays this small on purpose:
// everything lives in internal/cli, so tests and embedders run exactly what
// the binary runs.
package main

import (
	"os"

	"github.com/gantry-dev/gantry/internal/cli"
)

func main() { os.Exit(cli.Main()) }
