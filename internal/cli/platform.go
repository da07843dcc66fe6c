package cli

import "github.com/spf13/cobra"

// addPlatformCommands registers the commands that run Gantry itself (dev,
// server, agent, example, bench), as opposed to the client verbs that talk to
// a running platform over its REST API.
func addPlatformCommands(root *cobra.Command) {
	_ = root
}
