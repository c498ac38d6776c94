// Package cli is Gooni's command layer: one file per subcommand (serve,
// workspace-sim, comfy-sim, bench, backup, secrets, sessions, audit, healthcheck, version).
// main.go embeds the assets and calls Main.
package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"

	"gooni/internal/config"
	"gooni/internal/workspace/comfyui"
)

// Assets are the files embedded in the binary.
type Assets struct {
	Schema  string // schema.sql: the database's migration steps
	Catalog []byte // inference_settings.json: the built-in model catalog
	UI      fs.FS  // the built UI (the contents of dist/), or nil
	// Docs holds docs/WORKSPACES.md and modal/README.md (repository
	// paths), served read-only for the Admin page's guide, and
	// docs/openapi.json, served at /openapi.json; or nil.
	Docs    fs.FS
	Version string
}

// Main runs one gooni command line (without the program name) and returns
// the process exit code: 0 ok, 1 failure, 2 usage or configuration error.
func Main(args []string, a Assets, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "workspace-sim":
			return runWorkspaceSim(args[1:], stdout, stderr)
		case "comfy-sim":
			return comfyui.RunSimCommand(args[1:], stdout, stderr)
		case "version":
			return runVersion(a, stdout)
		case "backup":
			return runBackup(args[1:], a, os.Getenv, stdout, stderr)
		case "healthcheck":
			return runHealthcheck(os.Getenv, stdout, stderr)
		case "bench":
			return runBench(args[1:], a, os.Getenv, stdout, stderr)
		case "secrets":
			return runSecrets(args[1:], a, os.Getenv, timeNow, stdout, stderr)
		case "sessions":
			return runSessions(args[1:], a, os.Getenv, stdout, stderr)
		case "audit":
			return runAudit(args[1:], a, os.Getenv, stdout, stderr)
		case "serve":
			args = args[1:]
		case "help", "-h", "--help", "-help":
			usage(stdout)
			return 0
		}
	}
	cfg, err := config.Load(args, os.Getenv, usage, stderr)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "gooni: configuration:", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := serve(cfg, a, log); err != nil {
		log.Error("gooni stopped", "error", err.Error())
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `gooni: a self-hosted AI media generation appliance in one binary.

Usage:
  gooni [--demo] [--addr HOST:PORT] [--data-dir DIR]   serve the API and the web UI (default)
  gooni serve [flags]                                  the same
  gooni workspace-sim [--addr 127.0.0.1:9100] [--duration 3s] [--capacity 2]
                      [--fault none|refuse|drop|hang|corrupt|error|5xx] [--fault-rate 0..1]
                      [--require-key KEY:SECRET] [--models ids]
                                                       serve the simulated GPU workspace (Workspace API v1)
  gooni comfy-sim [--addr 127.0.0.1:8188] [--duration 3s] [--models files]
                  [--fault none|validation|exec_error|oom|interrupt|restart|ws_drop|old_version]
                                                       serve a simulated ComfyUI (the API subset the comfyui driver uses)
  gooni bench --url URL [--clients 10] [--duration 20s] ...
                                                       load test an installation (see docs/PERFORMANCE.md)
  gooni backup PATH                                    consistent copy of the live database to PATH
  gooni secrets rotate api-key|admin-key|session-keys|account-key|audit-key
                                                       rotate one secret (server stopped); see SECURITY.md
  gooni sessions revoke --all [--kind user|admin]      revoke every session (works while the server runs)
  gooni audit reanchor                                 rewrite the audit anchor after restoring a backup (server stopped)
  gooni healthcheck                                    exit 0 when the local server's /health is ok (for HEALTHCHECK)
  gooni version                                        print the version
  gooni --help                                         this text

Flags of serve:
  --demo            also run the simulated workspace in-process as the worker account "demo"
  --demo-driver D   with --demo: gooni (workspace-sim, the default) or comfyui (comfy-sim)
  --addr HOST:PORT  listen address (overrides GG_ADDR)
  --data-dir DIR    data directory (overrides GG_DATA_DIR)

Environment:
`)
	for _, v := range config.Vars {
		fmt.Fprintf(w, "  %-38s default %s\n  %-38s   %s\n", v.Name, v.Default, "", v.Meaning)
	}
}
