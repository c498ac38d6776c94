package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.DataDir != "./data" || c.HealthInterval != time.Minute || c.SessionMode != "open" ||
		c.SessionTTL != 24*time.Hour || c.AdminSessionTTL != 8*time.Hour || c.TTLImage != 10*time.Minute ||
		c.TTLVideo != 30*time.Minute || c.QueueMax != 1000 || c.DeployCommand != "modal deploy modal/modal_app.py" ||
		c.WorkspaceURL != "https://{workspace}--gooni-inference.modal.run" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestConfigFlagsOverrideEnvironment(t *testing.T) {
	env := map[string]string{"GG_ADDR": "127.0.0.1:1", "GG_DATA_DIR": "/env"}
	c, err := loadConfig([]string{"--addr", "127.0.0.1:2", "--demo"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:2" || c.DataDir != "/env" || !c.Demo {
		t.Fatalf("%+v", c)
	}
}

func TestConfigRejectsBadValues(t *testing.T) {
	cases := map[string]string{
		"GG_SESSION_MODE":    "maybe",
		"GG_TTL_IMAGE":       "soon",
		"GG_QUEUE_MAX":       "-1",
		"FRONTEND_ORIGINS":   "*",
		"GG_TRUSTED_PROXIES": "not-a-cidr",
		"GG_ADDR":            "8080",
		"GG_WORKSPACE_URL":   "https://fixed.example",
		"GG_TLS_CERT":        "/only/cert.pem",
		"GG_AUDIT_RETENTION": "720h",
	}
	for k, v := range cases {
		_, err := loadConfig(nil, func(name string) string {
			if name == k {
				return v
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%q: err %v", k, v, err)
		}
	}
}

func TestLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:8080": true, "[::1]:80": true, "localhost:1": true,
		"0.0.0.0:8080": false, ":8080": false, "192.168.1.2:80": false} {
		if got := loopbackAddr(addr); got != want {
			t.Errorf("%s: %v", addr, got)
		}
	}
}

// TestHelpListsEverything: `gooni --help` names every subcommand and variable.
func TestHelpListsEverything(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"workspace-sim", "backup", "version", "--demo", "--fault", "--require-key"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %s", want)
		}
	}
	for _, v := range envVars {
		if !strings.Contains(out.String(), v.name) {
			t.Errorf("help lacks %s", v.name)
		}
	}
}
