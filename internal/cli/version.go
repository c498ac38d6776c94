package cli

import (
	"fmt"
	"io"
)

// runVersion prints the version the binary was built with.
func runVersion(a Assets, stdout io.Writer) int {
	fmt.Fprintln(stdout, "gooni", a.Version)
	return 0
}
