package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// addPlatformCommands registers the commands that run Gantry itself (dev,
// server, agent, example, bench), as opposed to the client verbs that talk to a
// running platform over its REST API.
func addPlatformCommands(root *cobra.Command) {
	root.AddCommand(newDevCmd(), newServerCmd(), newAgentCmd(), newBusCmd(), newExampleCmd(), newBenchCmd())
}

// newLogger builds the text logger the platform commands write to stderr.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// putSelfOnPath lets functions name this very binary as process://gantry:
// the directory of the running executable goes first on PATH, where the
// process runtime looks commands up. With `go run ./cmd/gantry dev` the
// executable lives in the build cache and its path changes between builds;
// looking it up by name keeps stored functions working across restarts.
func putSelfOnPath() {
	exe, err := os.Executable()
	if err != nil {
		return
	}
	dir := filepath.Dir(exe)
	path := os.Getenv("PATH")
	if strings.HasPrefix(path, dir+string(os.PathListSeparator)) {
		return
	}
	os.Setenv("PATH", dir+string(os.PathListSeparator)+path)
}
