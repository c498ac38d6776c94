package cli

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"gooni/internal/config"
)

// runHealthcheck asks the server on GG_ADDR for /health; the Docker image
// has no shell or curl, so the binary checks itself.
func runHealthcheck(getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(nil, getenv, func(io.Writer) {}, io.Discard)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck: configuration:", err)
		return 1
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck: bad GG_ADDR")
		return 1
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http"
	client := &http.Client{Timeout: 4 * time.Second}
	if cfg.TLSCert != "" {
		scheme = "https"
		// The check runs on the same host against its own certificate name.
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
	resp, err := client.Get(scheme + "://" + net.JoinHostPort(host, port) + "/health")
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "healthcheck: status", resp.StatusCode)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}
