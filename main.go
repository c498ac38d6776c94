// Command gooni is a self-hosted AI media generation appliance: one binary
// that keeps every task durable in SQLite, dispatches the work to remote GPU
// workspaces, and serves the API and the bundled web UI from one port.
package main

import (
	"embed"
	"io/fs"
	"os"

	"gooni/internal/cli"
)

//go:embed schema.sql
var schemaSQL string

//go:embed inference_settings.json
var catalogJSON []byte

//go:embed all:dist
var distFS embed.FS

// The guides the Admin page links to and the OpenAPI document, served
// read-only by the binary.
//
//go:embed docs/WORKSPACES.md modal/README.md docs/openapi.json
var docsFS embed.FS

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ui, err := fs.Sub(distFS, "dist")
	if err != nil {
		panic(err) // the embed above guarantees dist/ exists
	}
	os.Exit(cli.Main(os.Args[1:], cli.Assets{Schema: schemaSQL, Catalog: catalogJSON, UI: ui, Docs: docsFS, Version: version}, os.Stdout, os.Stderr))
}
