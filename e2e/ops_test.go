package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gooni/internal/testutil"
)

// startDemo runs `gooni --demo` on a fresh data dir and waits for /health.
func startDemo(t *testing.T, env ...string) *server {
	t.Helper()
	dataDir := t.TempDir()
	s := &server{t: t, addr: testutil.FreeAddr(t), dataDir: dataDir, client: &http.Client{Timeout: 10 * time.Second}}
	s.Process = newProcess(t, "gooni --demo", []string{"--demo"}, append([]string{"GG_ADDR=" + s.addr, "GG_DATA_DIR=" + dataDir}, env...))
	s.start()
	return s
}

// TestSmokeScriptAgainstDemo runs the rollback check of the requirements
// (scripts/smoke.sh) against a running demo, and against a dead address.
func TestSmokeScriptAgainstDemo(t *testing.T) {
	testutil.NeedTool(t, "curl", "scripts/smoke.sh")
	t.Parallel()
	s := startDemo(t)
	run := func(url string) (string, error) {
		cmd := exec.Command("bash", "../scripts/smoke.sh", url)
		cmd.Env = append(testutil.BaseEnv(), "GG_DATA_DIR="+s.dataDir, "SMOKE_TIMEOUT=30")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("http://" + s.addr)
	if err != nil {
		t.Fatalf("smoke.sh failed against the demo: %v\n%s", err, out)
	}
	for _, step := range []string{"/health", "/auth/session", "/generate", "/status", "/results", "/admin/health"} {
		if !strings.Contains(out, step) {
			t.Errorf("smoke output does not mention %s:\n%s", step, out)
		}
	}
	for _, name := range []string{"api_key", "admin_key"} {
		key, _ := os.ReadFile(filepath.Join(s.dataDir, "secrets", name))
		if k := strings.TrimSpace(string(key)); k != "" && strings.Contains(out, k) {
			t.Errorf("smoke output shows the %s", name)
		}
	}
	if out, err := run("http://" + testutil.FreeAddr(t)); err == nil || !strings.Contains(out, "FAIL") {
		t.Errorf("smoke.sh against nothing: err %v\n%s", err, out)
	}

	// In invite mode POST /auth/session issues nothing: the script sends the
	// API key with each request instead, and still checks every step.
	inv := startDemo(t, "GG_SESSION_MODE=invite")
	cmd := exec.Command("bash", "../scripts/smoke.sh", "http://"+inv.addr)
	cmd.Env = append(testutil.BaseEnv(), "GG_DATA_DIR="+inv.dataDir, "SMOKE_TIMEOUT=30")
	b, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "invite mode") || !strings.Contains(string(b), "all checks passed") {
		t.Errorf("smoke.sh against an invite-mode demo: %v\n%s", err, b)
	}
	if key := readKey(t, inv.dataDir, "api_key"); strings.Contains(string(b), key) {
		t.Error("smoke output shows the api_key")
	}
}

func readKey(t *testing.T, dataDir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "secrets", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// selfSigned writes a certificate and key for 127.0.0.1 and returns their paths and a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gooni test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLS: with GG_TLS_CERT/GG_TLS_KEY the server speaks HTTPS only, TLS 1.2
// or newer, sends HSTS and marks cookies Secure.
func TestTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSigned(t)
	addr := testutil.FreeAddr(t)
	p := newProcess(t, "gooni tls", nil, []string{"GG_ADDR=" + addr, "GG_DATA_DIR=" + t.TempDir(), "GG_TLS_CERT=" + certFile, "GG_TLS_KEY=" + keyFile})
	p.Start()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var resp *http.Response
	testutil.WaitFor(t, 20*time.Second, "HTTPS /health", func() bool {
		r, err := client.Get("https://" + addr + "/health")
		if err != nil {
			return false
		}
		r.Body.Close()
		resp = r
		return r.StatusCode == http.StatusOK
	})
	if !strings.Contains(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("no HSTS over HTTPS: %v", resp.Header)
	}
	r, err := client.Post("https://"+addr+"/auth/session", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	var secure bool
	for _, c := range r.Cookies() {
		secure = c.Name == "gg_session" && c.Secure && c.HttpOnly
	}
	if !secure {
		t.Errorf("gg_session over HTTPS is not Secure+HttpOnly: %v", r.Header.Values("Set-Cookie"))
	}
	old := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	if r, err := old.Get("https://" + addr + "/health"); err == nil {
		r.Body.Close()
		t.Error("a TLS 1.1 client was served")
	}
	if r, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/health"); err == nil && r.StatusCode == http.StatusOK {
		r.Body.Close()
		t.Error("plain HTTP was served on the TLS port")
	}
}

// TestPlainHTTPOnAllInterfacesWarns: bound beyond loopback without TLS, the
// server says so at start.
func TestPlainHTTPOnAllInterfacesWarns(t *testing.T) {
	t.Parallel()
	_, port, _ := net.SplitHostPort(testutil.FreeAddr(t))
	s := &server{t: t, addr: "127.0.0.1:" + port, dataDir: t.TempDir(), client: &http.Client{Timeout: 5 * time.Second}}
	s.Process = newProcess(t, "gooni 0.0.0.0", nil, []string{"GG_ADDR=0.0.0.0:" + port, "GG_DATA_DIR=" + s.dataDir})
	s.start()
	warned := false
	for _, rec := range s.Logs.Records("serving plain HTTP on a non-loopback address: sessions and keys cross the network unencrypted; set GG_TLS_CERT and GG_TLS_KEY or put a TLS proxy in front") {
		warned = rec["level"] == "WARN"
	}
	if !warned {
		t.Errorf("no warning about plain HTTP on 0.0.0.0:\n%s", s.Logs.String())
	}
}

// TestOlderBinaryRefusesNewerDatabase: migrations are forward-only; a binary
// that finds a database from a newer schema stops with a clear message and
// leaves the file untouched.
func TestOlderBinaryRefusesNewerDatabase(t *testing.T) {
	t.Parallel()
	s := startDemo(t)
	s.apiKey = readKey(t, s.dataDir, "api_key")
	s.mustGenerate(t, "image", 0)
	if err := s.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.dataDir, "gooni.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, _ := os.ReadFile(path)
	cmd := exec.Command(gooniBin)
	cmd.Env = append(testutil.BaseEnv(), "GG_ADDR="+testutil.FreeAddr(t), "GG_DATA_DIR="+s.dataDir)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the server started on a newer database:\n%s", out)
	}
	if !strings.Contains(string(out), "newer than this binary") {
		t.Errorf("unclear refusal:\n%s", out)
	}
	after, _ := os.ReadFile(path)
	if sha256.Sum256(before) != sha256.Sum256(after) || !bytes.Equal(before[:16], []byte("SQLite format 3\x00")) {
		t.Error("the newer database was modified")
	}
}

// TestHealthcheckSubcommand: the Docker HEALTHCHECK (`gooni healthcheck`,
// no shell or curl in the image) passes against a live server and fails
// against none.
func TestHealthcheckSubcommand(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	check := func(addr string) error {
		cmd := exec.Command(gooniBin, "healthcheck")
		cmd.Env = append(testutil.BaseEnv(), "GG_ADDR="+addr)
		return cmd.Run()
	}
	if err := check(s.addr); err != nil {
		t.Errorf("healthcheck of a live server: %v", err)
	}
	if err := check(testutil.FreeAddr(t)); err == nil {
		t.Error("healthcheck passed with no server")
	}
}

// TestAccountStatusSurvivesRestart (FR-014, SC-004): a health-checked account
// stays ready across a server restart (no reset to pending), and a failed one
// stays failed with its reason until something explicit changes it.
func TestAccountStatusSurvivesRestart(t *testing.T) {
	t.Parallel()
	good := startSim(t, "sim-good")
	bad := startSim(t, "sim-bad", "--fault", "5xx")
	s := startServer(t)
	s.adminLogin(t)
	ready := s.mustAddReady(t, "ready-one", good, 1)
	failed := s.addAccount(t, "failed-one", bad, 1)
	if failed.Status != "failed" || failed.StatusReason == "" {
		t.Fatalf("5xx workspace after a health check: %+v", failed)
	}
	if err := s.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	s.start()
	s.adminLogin(t)
	for i := 0; i < 3; i++ { // like reloading the admin page
		if a := s.getAccount(t, ready.ID); a.Status != "ready" {
			t.Fatalf("after restart, read %d: ready account is %s", i+1, a.Status)
		}
		if a := s.getAccount(t, failed.ID); a.Status != "failed" || a.StatusReason != failed.StatusReason {
			t.Fatalf("after restart, read %d: failed account is %+v", i+1, a)
		}
	}
}

// TestSlowLorisIsCutOff: a client that sends half a request header and then
// nothing is disconnected by the server's ReadHeaderTimeout (10 s), and the
// server keeps answering others meanwhile.
func TestSlowLorisIsCutOff(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")); err != nil {
		t.Fatal(err)
	}
	if resp, _, err := s.do("GET", "/health", nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("server busy with a slow client: %v", err)
	}
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 512)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue // a 408 answer before the close is fine
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the slow client was still connected after %v", time.Since(start))
		}
		break
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("cut off after %v, want about 10 s", d)
	}
}
