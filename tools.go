//go:build tools

// This file pins the modules the project uses so that `go mod tidy` keeps them
// while packages that import them are being written.

package main

import (
	_ "github.com/chromedp/chromedp"
	_ "github.com/fernet/fernet-go"
	_ "github.com/gorilla/handlers"
	_ "github.com/gorilla/mux"
	_ "github.com/gorilla/securecookie"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "golang.org/x/image/webp"
	_ "golang.org/x/time/rate"
	_ "modernc.org/sqlite"
)
