package cli

import (
	"io"

	"gooni/internal/workspace"
)

// runWorkspaceSim serves the simulated GPU workspace (Workspace API v1).
func runWorkspaceSim(args []string, stdout, stderr io.Writer) int {
	return workspace.RunSimCommand(args, stdout, stderr)
}
