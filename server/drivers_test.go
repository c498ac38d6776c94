package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"gooni/store"
)

// TestGenerateNeedsAWorkerThatServesTheModel (CONTRACT section 14): a task
// goes only to a ready account that serves its model, so POST /generate for
// a model no ready account serves is no_workers naming the model, and
// creates nothing. Inputs tried: a ready account serving flux only, then a
// pony and a flux request.
func TestGenerateNeedsAWorkerThatServesTheModel(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.readyAccount()
	if err := e.db.SetAccountModels(ctx, a.ID, a.ConfigRev, []string{"flux"}); err != nil {
		t.Fatal(err)
	}
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	w := e.do(req{method: "POST", path: "/generate", header: key, body: `{"model":"pony","mode":"t2i","prompt":"x"}`})
	if w.Code != 503 || errCode(t, w) != "no_workers" || !strings.Contains(w.Body.String(), "pony") {
		t.Fatalf("pony with only flux served: %d %s, want 503 no_workers naming pony", w.Code, w.Body.String())
	}
	if counts, _ := e.db.CountByStatus(ctx); counts[store.StatusPending] != 0 {
		t.Fatalf("a refused request created %d tasks", counts[store.StatusPending])
	}
	if w := e.do(req{method: "POST", path: "/generate", header: key, body: `{"model":"flux","mode":"t2i","prompt":"x"}`}); w.Code != 202 {
		t.Fatalf("flux: %d %s", w.Code, w.Body.String())
	}
}

// TestAccountDrivers (CONTRACT section 14): POST /admin/accounts takes a
// driver (gooni by default, or comfyui, which needs its base_url); the
// account view shows driver and models; PATCH can change both. Inputs
// tried: no driver, comfyui with and without base_url, an unknown driver,
// a PATCH to comfyui that leaves no base_url.
func TestAccountDrivers(t *testing.T) {
	e := newEnv(t)
	admin := []*http.Cookie{e.adminSession()}
	create := func(body string) (int, map[string]any) {
		w := e.do(req{method: "POST", path: "/admin/accounts", cookies: admin, body: body})
		var m map[string]any
		json.Unmarshal(w.Body.Bytes(), &m)
		return w.Code, m
	}
	code, m := create(`{"name":"v1","workspace":"v1-ws","credentials":{}}`)
	if code != 201 || m["driver"] != "gooni" || m["models"] == nil || len(m["models"].([]any)) != 0 {
		t.Fatalf("default driver: %d %v", code, m)
	}
	code, m = create(`{"name":"box","workspace":"box","driver":"comfyui","base_url":"http://127.0.0.1:8188","credentials":{"bearer_token":"tok-12345678"}}`)
	if code != 201 || m["driver"] != "comfyui" {
		t.Fatalf("comfyui account: %d %v", code, m)
	}
	id := int64(m["id"].(float64))
	for body, field := range map[string]string{
		`{"name":"nobase","workspace":"nobase","driver":"comfyui","credentials":{}}`: "base_url",
		`{"name":"odd","workspace":"odd-ws","driver":"a1111","credentials":{}}`:      "driver",
	} {
		w := e.do(req{method: "POST", path: "/admin/accounts", cookies: admin, body: body})
		if w.Code != 400 || errCode(t, w) != "validation_failed" || !strings.Contains(w.Body.String(), `"field":"`+field+`"`) {
			t.Errorf("%s: %d %s, want validation_failed on %s", body, w.Code, w.Body.String(), field)
		}
	}
	v1 := int64(0)
	accs, _ := e.db.ListAccounts(context.Background())
	for _, a := range accs {
		if a.Name == "v1" {
			v1 = a.ID
		}
	}
	path := func(id int64) string { return fmt.Sprintf("/admin/accounts/%d", id) }
	if w := e.do(req{method: "PATCH", path: path(v1), cookies: admin, body: `{"driver":"comfyui"}`}); w.Code != 400 {
		t.Errorf("PATCH to comfyui without a base_url: %d %s", w.Code, w.Body.String())
	}
	w := e.do(req{method: "PATCH", path: path(v1), cookies: admin, body: `{"driver":"comfyui","base_url":"https://comfy.example.com"}`})
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"driver":"comfyui"`) {
		t.Errorf("PATCH driver and base_url: %d %s", w.Code, w.Body.String())
	}
	if got, _ := e.db.GetAccount(context.Background(), id); got.Driver != store.DriverComfyUI || got.BaseURL != "http://127.0.0.1:8188" {
		t.Errorf("stored comfyui account: %+v", got)
	}
}

// TestAccountEditIsPendingUntilChecked: a PATCH that changes where or how
// Gooni reaches a workspace (base_url, driver, credentials) answers the
// account as pending, waiting for a health check of the new settings, and
// no task goes to it meanwhile; a rename or a capacity change keeps its
// status, and a disabled account stays disabled. Inputs tried: name,
// capacity, base_url, credentials on a ready account; credentials on a
// disabled one. (The env runs no dispatcher, so no check moves it on.)
func TestAccountEditIsPendingUntilChecked(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin := []*http.Cookie{e.adminSession()}
	key := map[string]string{"X-API-Key": e.sec.APIKey}
	a := e.readyAccount()
	if err := e.db.SetAccountModels(ctx, a.ID, a.ConfigRev, []string{"flux"}); err != nil {
		t.Fatal(err)
	}
	patch := func(body string) map[string]any {
		t.Helper()
		w := e.do(req{method: "PATCH", path: fmt.Sprintf("/admin/accounts/%d", a.ID), cookies: admin, body: body})
		var m map[string]any
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &m) != nil {
			t.Fatalf("PATCH %s: %d %s", body, w.Code, w.Body.String())
		}
		return m
	}
	for _, body := range []string{`{"name":"renamed"}`, `{"capacity":3}`} {
		if m := patch(body); m["status"] != "ready" {
			t.Errorf("PATCH %s answered status %v, want ready (nothing it reaches changed)", body, m["status"])
		}
	}
	for _, body := range []string{`{"credentials":{"token":"t-1"}}`, `{"base_url":"http://127.0.0.1:9"}`} {
		if m := patch(body); m["status"] != "pending" || m["status_reason"] != store.ReasonSettingsChanged {
			t.Errorf("PATCH %s answered status %v (%v), want pending until a health check", body, m["status"], m["status_reason"])
		}
		if w := e.do(req{method: "POST", path: "/generate", header: key, body: `{"model":"flux","mode":"t2i","prompt":"x"}`}); w.Code != 503 || errCode(t, w) != "no_workers" {
			t.Errorf("after PATCH %s, a submit got %d %s, want no_workers until the check", body, w.Code, w.Body.String())
		}
	}
	patch(`{"status":"disabled"}`)
	if m := patch(`{"credentials":{"token":"t-2"}}`); m["status"] != "disabled" {
		t.Errorf("a disabled account's new credentials made it %v, want disabled", m["status"])
	}
}
