package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"gooni/internal/audit"
	"gooni/internal/dispatch"
	"gooni/server/apierr"
	"gooni/store"
)

// AccountView is a worker account as admins see it: never a credential.
type AccountView struct {
	ID                int64   `json:"id"`
	Name              string  `json:"name"`
	Workspace         string  `json:"workspace"`
	BaseURL           string  `json:"base_url"`
	Capacity          int     `json:"capacity"`
	Status            string  `json:"status"`
	StatusReason      string  `json:"status_reason"`
	LastHealthCheckAt *string `json:"last_health_check_at"`
	DeployStatus      *string `json:"deploy_status"`
	DeployOutput      *string `json:"deploy_output,omitempty"`
	LastDeployAt      *string `json:"last_deploy_at"`
	HasCredentials    bool    `json:"has_credentials"`
	CreatedAt         *string `json:"created_at"`
	UpdatedAt         *string `json:"updated_at"`
	// Driver is gooni (Workspace API v1) or comfyui; Models the catalog
	// model ids its last successful health check found served (CONTRACT section 14).
	Driver string   `json:"driver"`
	Models []string `json:"models"`
	// EffectiveBaseURL is where Gooni reaches the workspace: base_url, or
	// GG_WORKSPACE_URL with the workspace filled in when base_url is empty
	// (CONTRACT section 8); omitted when neither gives a valid URL.
	EffectiveBaseURL string `json:"effective_base_url,omitempty"`
}

// accountView is accountView with the account's effective base URL.
func (s *Server) accountView(a *store.Account, withOutput bool) *AccountView {
	v := accountView(a, withOutput)
	v.EffectiveBaseURL = a.BaseURL
	if a.BaseURL == "" && a.Driver != store.DriverComfyUI && s.cfg.WorkspaceURL != "" {
		if u, err := dispatch.DerivedBaseURL(s.cfg.WorkspaceURL, a.Workspace); err == nil {
			v.EffectiveBaseURL = u
		}
	}
	return v
}

func accountView(a *store.Account, withOutput bool) *AccountView {
	v := &AccountView{ID: a.ID, Name: a.Name, Workspace: a.Workspace, BaseURL: a.BaseURL, Capacity: a.Capacity,
		Status: a.Status, StatusReason: a.StatusReason, LastHealthCheckAt: rfc3339(a.LastHealthCheckAt),
		LastDeployAt: rfc3339(a.LastDeployAt), HasCredentials: a.HasCredentials,
		CreatedAt: rfc3339(a.CreatedAt), UpdatedAt: rfc3339(a.UpdatedAt), Driver: a.Driver, Models: a.Models}
	if v.Models == nil {
		v.Models = []string{}
	}
	if a.DeployStatus != "" {
		ds := a.DeployStatus
		v.DeployStatus = &ds
	}
	if withOutput && a.DeployOutput != "" {
		out := a.DeployOutput
		v.DeployOutput = &out
	}
	return v
}

var credentialKey = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

const (
	maxCapacity       = 64
	maxCredentialSize = 4096
)

func checkName(name string) error {
	n := strings.TrimSpace(name)
	if n == "" || utf8.RuneCountInString(n) > 100 || !utf8.ValidString(n) {
		return apierr.Validation("name", "name must be 1 to 100 characters")
	}
	for _, r := range n {
		// Bidi overrides could make a name read differently in the admin UI.
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return apierr.Validation("name", "name must not contain control or text-direction characters")
		}
	}
	return nil
}

func checkCapacity(c int) error {
	if c < 1 || c > maxCapacity {
		return apierr.Validation("capacity", fmt.Sprintf("capacity must be between 1 and %d", maxCapacity))
	}
	return nil
}

func checkCredentials(creds map[string]string) error {
	if len(creds) > 16 {
		return apierr.Validation("credentials", "at most 16 credential entries")
	}
	for k, v := range creds {
		if !credentialKey.MatchString(k) {
			return apierr.Validation("credentials", "credential names must be lower-case letters, digits and _ (like token_id)")
		}
		if len(v) > maxCredentialSize || !utf8.ValidString(v) || strings.ContainsAny(v, "\x00\r\n") {
			return apierr.Validation("credentials."+k, "credential values must be one line of at most 4096 characters")
		}
	}
	return nil
}

func checkBaseURL(u string) error {
	if u == "" {
		return nil
	}
	if len(u) > 2048 {
		return apierr.Validation("base_url", "base_url is too long")
	}
	if err := dispatch.CheckBaseURL(u); err != nil {
		return apierr.Validation("base_url", "base_url must be https://, or http:// to a loopback address, with no user, query or fragment")
	}
	return nil
}

type accountCreate struct {
	Name        *string           `json:"name"`
	Workspace   *string           `json:"workspace"`
	Credentials map[string]string `json:"credentials"`
	BaseURL     *string           `json:"base_url"`
	Capacity    *int              `json:"capacity"`
	Driver      *string           `json:"driver"`
}

// checkDriver refuses a driver Gooni does not have, and a comfyui account
// without a base URL (there is no name-to-URL rule for a ComfyUI box).
func checkDriver(driver, baseURL string) error {
	if !slices.Contains(dispatch.Drivers, driver) {
		return apierr.Validation("driver", "driver must be gooni or comfyui")
	}
	if driver == store.DriverComfyUI && baseURL == "" {
		return apierr.Validation("base_url", "a comfyui account needs its base_url (https://..., or http:// to a loopback address)")
	}
	return nil
}

func (s *Server) handleAccountsList(w http.ResponseWriter, r *http.Request) error {
	accs, err := s.cfg.DB.ListAccounts(r.Context())
	if err != nil {
		return apierr.Internal(err)
	}
	items := make([]*AccountView, 0, len(accs))
	for _, a := range accs {
		items = append(items, s.accountView(a, false))
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
	return nil
}

func (s *Server) handleAccountCreate(w http.ResponseWriter, r *http.Request) error {
	var body accountCreate
	if err := decodeJSON(w, r, &body, maxSmallBody); err != nil {
		s.audit(r, "account.create", "account", "failure", map[string]any{"reason": apierr.From(err).Message})
		return err
	}
	err := func() error {
		if body.Name == nil {
			return apierr.Validation("name", "name is required")
		}
		if err := checkName(*body.Name); err != nil {
			return err
		}
		if body.Workspace == nil {
			return apierr.Validation("workspace", "workspace is required")
		}
		if !dispatch.ValidWorkspaceName(*body.Workspace) {
			return apierr.Validation("workspace", "workspace must be 3 to 64 of a-z, 0-9 and -")
		}
		if body.Credentials == nil {
			return apierr.Validation("credentials", "credentials are required (an object of strings, may be empty)")
		}
		if err := checkCredentials(body.Credentials); err != nil {
			return err
		}
		if body.BaseURL != nil {
			if err := checkBaseURL(*body.BaseURL); err != nil {
				return err
			}
		}
		if body.Capacity != nil {
			if err := checkCapacity(*body.Capacity); err != nil {
				return err
			}
		}
		driver, base := store.DriverGooni, ""
		if body.Driver != nil {
			driver = *body.Driver
		}
		if body.BaseURL != nil {
			base = *body.BaseURL
		}
		return checkDriver(driver, base)
	}()
	if err != nil {
		s.audit(r, "account.create", "account", "failure", map[string]any{"reason": apierr.From(err).Message})
		return err
	}
	a := &store.Account{Name: strings.TrimSpace(*body.Name), Workspace: *body.Workspace, Capacity: 1, Status: store.AccountPending}
	if body.BaseURL != nil {
		a.BaseURL = *body.BaseURL
	}
	if body.Capacity != nil {
		a.Capacity = *body.Capacity
	}
	if body.Driver != nil {
		a.Driver = *body.Driver
	}
	// The account and its audit row commit together or not at all (FR-023).
	ev, logged := audit.InTx(s.auditLog, r.Context(), "account.create", "success", func(a *store.Account) (string, map[string]any) {
		return accountTarget(a.ID), map[string]any{"name": a.Name, "workspace": a.Workspace, "capacity": a.Capacity,
			"credential_names": credentialNames(body.Credentials)}
	})
	if err := s.cfg.DB.CreateAccountAudited(r.Context(), a, body.Credentials, ev); err != nil {
		err = accountErr(err)
		s.audit(r, "account.create", "account", "failure", map[string]any{"reason": apierr.From(err).Message})
		return err
	}
	logged()
	writeJSON(w, http.StatusCreated, s.accountView(a, false))
	return nil
}

func credentialNames(c map[string]string) []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

func accountTarget(id int64) string { return "account:" + strconv.FormatInt(id, 10) }

// accountErr maps a store (or dispatcher) error about an account to its
// contract code; the one place for this resource.
func accountErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return apierr.AccountNotFound()
	case errors.Is(err, store.ErrDuplicate):
		return apierr.Validation("name", "an account with that name already exists")
	case errors.Is(err, store.ErrTooManyCredentials):
		return apierr.Validation("credentials", "at most 16 credential entries")
	default:
		return apierr.Internal(err)
	}
}

// accountID parses {id}; anything but a positive integer is account_not_found.
func accountID(r *http.Request) (int64, error) {
	raw := mux.Vars(r)["id"]
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != raw {
		return 0, apierr.AccountNotFound()
	}
	return id, nil
}

func (s *Server) loadAccount(r *http.Request) (*store.Account, error) {
	id, err := accountID(r)
	if err != nil {
		return nil, err
	}
	a, err := s.cfg.DB.GetAccount(r.Context(), id)
	if err != nil {
		return nil, accountErr(err)
	}
	return a, nil
}

func (s *Server) handleAccountGet(w http.ResponseWriter, r *http.Request) error {
	a, err := s.loadAccount(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.accountView(a, true))
	return nil
}

// accountPatch is the body of PATCH /admin/accounts/{id}. Credentials are
// merged into the stored set, entry by entry: a non-empty value replaces
// that entry, "" keeps the stored value (the admin page's blank field),
// null removes the entry, and names not given are kept. base_url ""
// means: derive it from the workspace name again.
type accountPatch struct {
	Name        *string            `json:"name"`
	Capacity    *int               `json:"capacity"`
	BaseURL     *string            `json:"base_url"`
	Credentials map[string]*string `json:"credentials"`
	Status      *string            `json:"status"`
	Driver      *string            `json:"driver"`
}

// checkCredentialUpdates checks a PATCH's credentials and reports whether
// they change anything (a value to set or an entry to remove).
func checkCredentialUpdates(c map[string]*string) (bool, error) {
	if len(c) > store.MaxCredentials {
		return false, apierr.Validation("credentials", "at most 16 credential entries")
	}
	changes := false
	for k, v := range c {
		if !credentialKey.MatchString(k) {
			return false, apierr.Validation("credentials", "credential names must be lower-case letters, digits and _ (like token_id)")
		}
		if v == nil {
			changes = true
			continue
		}
		if len(*v) > maxCredentialSize || !utf8.ValidString(*v) || strings.ContainsAny(*v, "\x00\r\n") {
			return false, apierr.Validation("credentials."+k, "credential values must be one line of at most 4096 characters")
		}
		changes = changes || *v != ""
	}
	return changes, nil
}

func (s *Server) handleAccountPatch(w http.ResponseWriter, r *http.Request) error {
	a, err := s.loadAccount(r)
	if err != nil {
		return err
	}
	target := accountTarget(a.ID)
	var body accountPatch
	fail := func(err error) error {
		s.audit(r, "account.update", target, "failure", map[string]any{"reason": apierr.From(err).Message})
		return err
	}
	if err := decodeJSON(w, r, &body, maxSmallBody); err != nil {
		return fail(err)
	}
	changed := []string{}
	p := store.AccountPatch{}
	if body.Name != nil {
		if err := checkName(*body.Name); err != nil {
			return fail(err)
		}
		n := strings.TrimSpace(*body.Name)
		p.Name = &n
		changed = append(changed, "name")
	}
	if body.Capacity != nil {
		if err := checkCapacity(*body.Capacity); err != nil {
			return fail(err)
		}
		p.Capacity = body.Capacity
		changed = append(changed, "capacity")
	}
	if body.BaseURL != nil {
		if err := checkBaseURL(*body.BaseURL); err != nil {
			return fail(err)
		}
		p.BaseURL = body.BaseURL
		changed = append(changed, "base_url")
	}
	if body.Credentials != nil {
		some, err := checkCredentialUpdates(body.Credentials)
		if err != nil {
			return fail(err)
		}
		if some {
			p.CredentialUpdates = body.Credentials
			changed = append(changed, "credentials")
		}
	}
	if body.Driver != nil {
		p.Driver = body.Driver
		changed = append(changed, "driver")
	}
	if body.BaseURL != nil || body.Driver != nil {
		driver, base := a.Driver, a.BaseURL
		if body.Driver != nil {
			driver = *body.Driver
		}
		if body.BaseURL != nil {
			base = *body.BaseURL
		}
		if err := checkDriver(driver, base); err != nil {
			return fail(err)
		}
	}
	if body.Status != nil && *body.Status != store.AccountDisabled && *body.Status != store.AccountPending {
		return fail(apierr.Validation("status", `status can only be set to "disabled" or "pending" (enable)`))
	}
	if len(changed) == 0 && body.Status == nil {
		return fail(apierr.Validation("", "nothing to change: give name, capacity, base_url, driver, credentials or status"))
	}
	status, reason := "", ""
	if body.Status != nil {
		status, reason = *body.Status, "disabled by an admin"
		if status == store.AccountPending {
			reason = "enabled by an admin; waiting for a health check"
		}
		changed = append(changed, "status")
	}
	// The changes and their audit row commit together or not at all (FR-023).
	ev, logged := audit.InTx(s.auditLog, r.Context(), "account.update", "success", func(a *store.Account) (string, map[string]any) {
		return target, map[string]any{"changed": changed, "status": a.Status}
	})
	if a, err = s.cfg.DB.UpdateAccountAudited(r.Context(), a.ID, p, status, reason, ev); err != nil {
		return fail(accountErr(err))
	}
	logged()
	switch {
	case s.cfg.Dispatcher == nil:
	case body.Status != nil && *body.Status == store.AccountPending:
		// Enabling checks the workspace at once, so a healthy one is ready without another click.
		s.cfg.Dispatcher.HealthCheckInBackground(a.ID, "enable")
	case body.BaseURL != nil || body.Driver != nil || p.CredentialUpdates != nil:
		// Another target or credentials: what it serves is checked again at once.
		s.cfg.Dispatcher.HealthCheckInBackground(a.ID, "edit")
	}
	writeJSON(w, http.StatusOK, s.accountView(a, false))
	return nil
}

func (s *Server) handleAccountHealthCheck(w http.ResponseWriter, r *http.Request) error {
	a, err := s.loadAccount(r)
	if err != nil {
		return err
	}
	// The verdict and its audit row commit together or not at all (FR-023).
	ev, logged := audit.InTxOutcome(s.auditLog, r.Context(), "account.health_check", func(acc *store.Account) (string, string, map[string]any) {
		outcome := "success"
		if acc.Status != store.AccountReady {
			outcome = "failure"
		}
		return accountTarget(acc.ID), outcome, map[string]any{"status": acc.Status, "reason": acc.StatusReason}
	})
	acc, err := s.cfg.Dispatcher.HealthCheckAudited(r.Context(), a.ID, ev)
	if err != nil {
		return accountErr(err)
	}
	logged()
	writeJSON(w, http.StatusOK, s.accountView(acc, false))
	return nil
}

func (s *Server) handleAccountDeploy(w http.ResponseWriter, r *http.Request) error {
	a, err := s.loadAccount(r)
	if err != nil {
		return err
	}
	// Deploy runs the Modal app (GG_DEPLOY_COMMAND) with the account's Modal
	// token: it can only work for a Workspace API v1 account with credentials.
	// A ComfyUI box is set up by its owner; deploying would overwrite its base
	// URL with the Modal app's.
	var refused *apierr.Error
	switch {
	case a.Driver != store.DriverGooni:
		refused = apierr.Validation("driver", "deploy runs the Modal app, so only an account with the gooni driver can be deployed; a "+a.Driver+" server is set up by its owner")
	case !a.HasCredentials:
		refused = apierr.Validation("credentials", "deploy needs the account's Modal token: add credentials token_id and token_secret first")
	}
	if refused != nil {
		s.audit(r, "account.deploy", accountTarget(a.ID), "failure", map[string]any{"reason": refused.Message})
		return refused
	}
	// The deploy finishes in the background; its audit event names this admin.
	ctx := context.WithoutCancel(r.Context()) // carries the actor for the audit row written when it ends
	// It starts only if its audit row commits with the running state (FR-023).
	ev, logged := audit.InTx(s.auditLog, ctx, "account.deploy", "success", func(a *store.Account) (string, map[string]any) {
		return accountTarget(a.ID), map[string]any{"deploy_status": store.DeployRunning}
	})
	started, err := s.cfg.Dispatcher.Deploy(ctx, a.ID, ev)
	running := err != nil && isDeployRunning(err)
	if err != nil && !running {
		if errors.Is(err, store.ErrNotFound) {
			return accountErr(err)
		}
		s.audit(r, "account.deploy", accountTarget(a.ID), "failure", map[string]any{"reason": "deploy could not start"})
		return apierr.Internal(err)
	}
	if running {
		// Nothing changed, but the request is still an admin action on record.
		if err := s.audit(r, "account.deploy", accountTarget(a.ID), "success", map[string]any{
			"deploy_status": store.DeployRunning, "note": "a deploy was already running"}); err != nil {
			return apierr.Internal(err)
		}
		if a2, err := s.cfg.DB.GetAccount(r.Context(), a.ID); err == nil {
			a = a2
		}
	} else {
		logged()
		// The answer shows the deploy this request started (running), even
		// when a fast command has already ended: GET shows how it ended.
		a = started
	}
	writeJSON(w, http.StatusAccepted, s.accountView(a, false))
	return nil
}

func (s *Server) handleAccountDelete(w http.ResponseWriter, r *http.Request) error {
	a, err := s.loadAccount(r)
	if err != nil {
		return err
	}
	// The delete, its failed tasks and its audit row commit together or not at all (FR-023).
	ev, logged := audit.InTx(s.auditLog, r.Context(), "account.delete", "success", func(a *store.Account) (string, map[string]any) {
		return accountTarget(a.ID), map[string]any{"name": a.Name, "workspace": a.Workspace}
	})
	if err := s.cfg.Dispatcher.RemoveAccount(r.Context(), a.ID, ev); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return accountErr(err)
		}
		s.audit(r, "account.delete", accountTarget(a.ID), "failure", map[string]any{"reason": "delete failed"})
		return accountErr(err)
	}
	logged()
	w.WriteHeader(http.StatusNoContent)
	return nil
}
