// Package browser holds the browser tests of the bundled web UI: Chromium,
// driven by chromedp, against the real gooni binary started with --demo.
// The package has no code outside its tests; run it with go test.
package browser
