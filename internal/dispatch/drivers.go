package dispatch

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"gooni/internal/workspace"
	"gooni/internal/workspace/comfyui"
	"gooni/store"
)

// drivers keeps one workspace.Driver per account, built for the account's
// config revision: a ComfyUI driver holds a socket, so it lives as long as
// its account's target and credentials stay the same.
type drivers struct {
	mu   sync.Mutex
	byID map[int64]*cachedDriver
}

type cachedDriver struct {
	rev int64
	drv workspace.Driver
}

// Driver returns the workspace driver of an account. The target comes only
// from the account registry row and is checked before the credentials are
// opened, so a bad target never sees them (ErrTargetInvalid).
func (d *Dispatcher) Driver(ctx context.Context, acc *store.Account) (workspace.Driver, error) {
	d.drivers.mu.Lock()
	if c := d.drivers.byID[acc.ID]; c != nil && c.rev == acc.ConfigRev {
		d.drivers.mu.Unlock()
		return c.drv, nil
	}
	d.drivers.mu.Unlock()
	drv, err := d.newDriver(ctx, acc)
	if err != nil {
		return nil, err
	}
	d.drivers.mu.Lock()
	defer d.drivers.mu.Unlock()
	if d.drivers.byID == nil {
		d.drivers.byID = map[int64]*cachedDriver{}
	}
	if c := d.drivers.byID[acc.ID]; c != nil {
		if c.rev == acc.ConfigRev {
			// Built meanwhile by another goroutine: keep that one.
			drv.Close()
			return c.drv, nil
		}
		c.drv.Close()
	}
	d.drivers.byID[acc.ID] = &cachedDriver{rev: acc.ConfigRev, drv: drv}
	return drv, nil
}

// dropDriver closes and forgets an account's driver (the account is gone).
func (d *Dispatcher) dropDriver(accountID int64) {
	d.drivers.mu.Lock()
	c := d.drivers.byID[accountID]
	delete(d.drivers.byID, accountID)
	d.drivers.mu.Unlock()
	if c != nil {
		c.drv.Close()
	}
}

// closeDrivers closes every driver (at shutdown).
func (d *Dispatcher) closeDrivers() {
	d.drivers.mu.Lock()
	all := d.drivers.byID
	d.drivers.byID = nil
	d.drivers.mu.Unlock()
	for _, c := range all {
		c.drv.Close()
	}
}

func (d *Dispatcher) newDriver(ctx context.Context, acc *store.Account) (workspace.Driver, error) {
	base, err := d.baseURL(acc)
	if err != nil {
		return nil, err
	}
	creds := map[string]string{}
	var values []string
	if acc.HasCredentials {
		if creds, err = d.db.AccountCredentials(ctx, acc.ID); err != nil {
			return nil, fmt.Errorf("account %d: open credentials: %w", acc.ID, err)
		}
		for _, v := range creds {
			values = append(values, v)
		}
	}
	switch acc.Driver {
	case store.DriverComfyUI:
		return comfyui.New(comfyui.Config{
			BaseURL:     base,
			BearerToken: creds["bearer_token"],
			ProxyKey:    creds["proxy_key"],
			ProxySecret: creds["proxy_secret"],
			ClientID:    "gooni-account-" + strconv.FormatInt(acc.ID, 10),
			HTTP:        d.http,
			Workflows:   d.cfg.Workflows,
			Logger:      d.log.With("account_id", acc.ID),
			Now:         d.cfg.Now,
			Secrets:     values,
		})
	case store.DriverGooni, "":
		c, err := workspace.NewClient(base, creds["proxy_key"], creds["proxy_secret"])
		if err != nil {
			return nil, fmt.Errorf("account %d: %w", acc.ID, err)
		}
		c.HTTP = d.http
		// Every credential of the account, not only the two sent: a workspace
		// may echo anything it was given (a deploy token in its environment).
		c.Redactor = workspace.NewRedactor(values...)
		return c, nil
	}
	return nil, fmt.Errorf("account %d: unknown driver %q", acc.ID, acc.Driver)
}

// baseURL resolves and checks an account's target: its base_url, else (for
// the gooni driver) GG_WORKSPACE_URL with the workspace name filled in.
func (d *Dispatcher) baseURL(acc *store.Account) (string, error) {
	if !workspace.WorkspaceName.MatchString(acc.Workspace) {
		return "", fmt.Errorf("account %d: workspace name is not valid: %w", acc.ID, workspace.ErrTargetInvalid)
	}
	base := acc.BaseURL
	if base == "" {
		if acc.Driver == store.DriverComfyUI {
			return "", fmt.Errorf("account %d: a comfyui account needs a base URL: %w", acc.ID, workspace.ErrTargetInvalid)
		}
		u, err := workspace.BaseURLFor(d.cfg.WorkspaceURL, acc.Workspace)
		if err != nil {
			return "", fmt.Errorf("account %d: %w", acc.ID, err)
		}
		base = u
	}
	// Validate before opening the credentials, so a bad target never sees them.
	norm, err := workspace.CheckBaseURL(base)
	if err != nil {
		return "", fmt.Errorf("account %d: %w", acc.ID, err)
	}
	return norm, nil
}

// ValidWorkspaceName reports whether name may become part of a host name
// (the contract's ^[a-z0-9-]{3,64}$, without a leading '-').
func ValidWorkspaceName(name string) bool { return workspace.WorkspaceName.MatchString(name) }

// CheckBaseURL reports whether u may be an account's target: https, or
// http to a loopback address, with no path, user info, query or fragment.
func CheckBaseURL(u string) error {
	_, err := workspace.CheckBaseURL(u)
	return err
}

// Drivers are the workspace drivers an account may have.
var Drivers = []string{store.DriverGooni, store.DriverComfyUI}

// DerivedBaseURL is where an account without a base_url is reached:
// GG_WORKSPACE_URL with the workspace name filled in, checked like any target.
func DerivedBaseURL(template, workspaceName string) (string, error) {
	return workspace.BaseURLFor(template, workspaceName)
}
