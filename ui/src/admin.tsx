// The Admin page: sign in with the admin key, then worker accounts, health
// and the audit log, refreshed every 3 seconds while the tab is visible.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import type { Account, AdminHealth, AuditEvent, ChainVerdict, Page } from './api';
import { ApiError, request } from './api';
import { formatBytes, formatDuration, formatTime, formatTimeFull } from './format';
import { credentialFields, driverLabels, healthAdvice, WorkspaceGuide } from './guide';
import { InvitesPanel } from './invites';
import { Badge, ConfirmDialog, ErrorNote, LoadMore, Modal, useVisibleInterval } from './widgets';

const refreshMs = 3000;
const logPage = 50;

function isSignedOut(e: unknown): boolean {
  return e instanceof ApiError && e.status === 401;
}

// The admin cookie is HttpOnly, so the page keeps a hint that it signed in:
// without it the page shows the sign-in form at once instead of asking the
// server (a 401 the browser would log in the console).
const signedInHint = 'gooni.admin.signedIn';

function hasHint(): boolean {
  try {
    return localStorage.getItem(signedInHint) === '1';
  } catch {
    return true; // storage unavailable: ask the server
  }
}

function setHint(on: boolean) {
  try {
    if (on) localStorage.setItem(signedInHint, '1');
    else localStorage.removeItem(signedInHint);
  } catch {
    // storage unavailable: the page asks the server each time
  }
}

export function AdminPage() {
  const [state, setState] = useState<'checking' | 'out' | 'in'>('checking');
  const [initial, setInitial] = useState<Account[] | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [probeError, setProbeError] = useState<unknown>(null);

  const probe = useCallback(async () => {
    setProbeError(null);
    try {
      const res = await request<{ items: Account[] }>('/admin/accounts');
      setInitial(res.items ?? []);
      setHint(true);
      setState('in');
    } catch (e) {
      if (isSignedOut(e)) setHint(false);
      else setProbeError(e);
      setState('out');
    }
  }, []);

  useEffect(() => {
    if (hasHint()) void probe();
    else setState('out');
  }, [probe]);

  return (
    <section class="page page-admin" aria-labelledby="admin-title">
      <div class="page-head">
        <h1 id="admin-title" tabIndex={-1}>
          Admin
        </h1>
        {state === 'in' ? (
          <SignOut
            onDone={() => {
              setHint(false);
              setNotice('Signed out.');
              setState('out');
            }}
          />
        ) : null}
      </div>
      {state === 'checking' ? <p class="muted">Checking your admin session…</p> : null}
      {state === 'out' ? (
        <SignIn
          notice={notice}
          error={probeError}
          onSignedIn={() => {
            setNotice(null);
            void probe();
          }}
        />
      ) : null}
      {state === 'in' ? (
        <Console
          initial={initial ?? []}
          onSignedOut={(msg) => {
            setHint(false);
            setNotice(msg);
            setState('out');
          }}
        />
      ) : null}
    </section>
  );
}

function SignOut({ onDone }: { onDone: () => void }) {
  const [busy, setBusy] = useState(false);
  return (
    <button
      type="button"
      class="secondary"
      disabled={busy}
      onClick={async () => {
        setBusy(true);
        try {
          await request<void>('/admin/session', { method: 'DELETE' });
        } catch {
          // the session is gone either way from this page's point of view
        } finally {
          setBusy(false);
          onDone();
        }
      }}
    >
      Sign out
    </button>
  );
}

function SignIn({ notice, error, onSignedIn }: { notice: string | null; error: unknown; onSignedIn: () => void }) {
  const [key, setKey] = useState('');
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<unknown>(null);
  const inputRef = useRef<HTMLInputElement>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!key) {
      setErr(new Error('Enter the admin key.'));
      inputRef.current?.focus();
      return;
    }
    setBusy(true);
    setErr(null);
    try {
      await request<unknown>('/admin/session', { method: 'POST', headers: { 'X-Admin-Key': key } });
      setKey('');
      onSignedIn();
    } catch (x) {
      setErr(x);
      inputRef.current?.select();
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card signin" onSubmit={submit} aria-labelledby="signin-title" noValidate>
      <h2 id="signin-title">Sign in</h2>
      <p class="muted">
        The admin key is in <code>secrets/admin_key</code> under the server's data directory, or in <code>GG_ADMIN_KEY</code>.
      </p>
      {notice ? (
        <p class="note" role="status">
          {notice}
        </p>
      ) : null}
      {error ? <ErrorNote error={error} /> : null}
      <div class="field">
        <label for="admin-key">Admin key</label>
        <input
          ref={inputRef}
          id="admin-key"
          type="password"
          aria-label="Admin key"
          autocomplete="current-password"
          value={key}
          aria-invalid={err ? 'true' : undefined}
          aria-describedby={err ? 'signin-error' : undefined}
          onInput={(e) => setKey((e.currentTarget as HTMLInputElement).value)}
        />
      </div>
      {err ? <ErrorNote error={err} id="signin-error" /> : null}
      <div class="actions">
        <button type="submit" class="primary" disabled={busy}>
          Sign in
        </button>
      </div>
    </form>
  );
}

interface ConsoleProps {
  initial: Account[];
  onSignedOut: (message: string) => void;
}

interface LogFilter {
  action: string;
  outcome: string;
  since: string;
}

function logQuery(f: LogFilter, cursor: string | null): string {
  const q = new URLSearchParams({ limit: String(logPage) });
  if (f.action.trim()) q.set('action', f.action.trim());
  if (f.outcome) q.set('outcome', f.outcome);
  if (f.since) {
    const d = new Date(f.since);
    if (!Number.isNaN(d.getTime())) q.set('since', d.toISOString());
  }
  if (cursor) q.set('cursor', cursor);
  return `/admin/logs?${q}`;
}

function cursorOf(c: string | number | null | undefined): string | null {
  return c == null || c === '' ? null : String(c);
}


// loadSection reads one section of the admin page: on success it hands the
// answer to set and clears the section's error; a failure shows in the
// section unless guard handled it (an ended admin session).
async function loadSection<T>(path: string, set: (v: T) => void, setError: (e: unknown) => void, guard: (e: unknown) => boolean) {
  try {
    set(await request<T>(path));
    setError(null);
  } catch (e) {
    if (!guard(e)) setError(e);
  }
}

function Console({ initial, onSignedOut }: ConsoleProps) {
  const [accounts, setAccounts] = useState<Account[]>(initial);
  const [accountsError, setAccountsError] = useState<unknown>(null);
  const [health, setHealth] = useState<AdminHealth | null>(null);
  const [healthError, setHealthError] = useState<unknown>(null);
  const [logs, setLogs] = useState<AuditEvent[]>([]);
  const [logsNext, setLogsNext] = useState<string | null>(null);
  const [logsError, setLogsError] = useState<unknown>(null);
  const [logsLoaded, setLogsLoaded] = useState(false);
  // once older pages are shown, the 3-second refresh must not reset the cursor
  const extraPages = useRef(false);
  const [verdict, setVerdict] = useState<ChainVerdict | null>(null);
  const [verdictError, setVerdictError] = useState<unknown>(null);
  const [filter, setFilter] = useState<LogFilter>({ action: '', outcome: '', since: '' });
  const [message, setMessage] = useState<{ text: string; error?: unknown } | null>(null);
  const [tick, setTick] = useState(0);
  // the account whose deploy output shows; n remounts the panel on each show
  const [deployOf, setDeployOf] = useState<{ id: number; n: number } | null>(null);
  const showDeploy = useCallback((id: number) => setDeployOf((d) => ({ id, n: (d?.n ?? 0) + 1 })), []);
  const busyRef = useRef(false);
  const signedOut = useRef(false);

  const guard = useCallback(
    (e: unknown): boolean => {
      if (isSignedOut(e)) {
        if (!signedOut.current) {
          signedOut.current = true;
          onSignedOut('Your admin session ended. Sign in again.');
        }
        return true;
      }
      return false;
    },
    [onSignedOut],
  );

  const loadAccounts = useCallback(
    () => loadSection<{ items: Account[] }>('/admin/accounts', (r) => setAccounts(r.items ?? []), setAccountsError, guard),
    [guard],
  );
  const loadHealth = useCallback(() => loadSection('/admin/health', setHealth, setHealthError, guard), [guard]);
  const loadVerdict = useCallback(() => loadSection('/admin/logs/verify', setVerdict, setVerdictError, guard), [guard]);

  // loadLogs(null, f) refreshes the newest page and keeps older pages already shown.
  const loadLogs = useCallback(
    async (cursor: string | null, f: LogFilter, reset = false) => {
      try {
        const page = await request<Page<AuditEvent>>(logQuery(f, cursor));
        const items = page.items ?? [];
        if (cursor) {
          setLogs((old) => {
            const have = new Set(old.map((e) => e.id));
            return [...old, ...items.filter((e) => !have.has(e.id))];
          });
          setLogsNext(cursorOf(page.next_cursor));
          extraPages.current = true;
        } else if (reset) {
          setLogs(items);
          setLogsNext(cursorOf(page.next_cursor));
          extraPages.current = false;
        } else {
          setLogs((old) => {
            const oldest = items.length ? items[items.length - 1].id : Infinity;
            return [...items, ...old.filter((e) => e.id < oldest)];
          });
          if (!extraPages.current) setLogsNext(cursorOf(page.next_cursor));
        }
        setLogsLoaded(true);
        setLogsError(null);
      } catch (e) {
        if (!guard(e)) setLogsError(e);
      }
    },
    [guard],
  );

  const filterRef = useRef(filter);
  filterRef.current = filter;

  const refresh = useCallback(async () => {
    if (busyRef.current || signedOut.current) return;
    busyRef.current = true;
    try {
      setTick((n) => n + 1);
      await Promise.all([loadAccounts(), loadHealth(), loadLogs(null, filterRef.current), loadVerdict()]);
    } finally {
      busyRef.current = false;
    }
  }, [loadAccounts, loadHealth, loadLogs, loadVerdict]);

  useEffect(() => {
    void loadHealth();
    void loadLogs(null, filterRef.current, true);
    void loadVerdict();
  }, [loadHealth, loadLogs, loadVerdict]);

  useVisibleInterval(() => void refresh(), refreshMs);

  const act = async (label: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
      setMessage({ text: label });
    } catch (e) {
      if (!guard(e)) setMessage({ text: '', error: e });
    }
    void loadAccounts();
    void loadHealth();
    void loadLogs(null, filterRef.current);
    void loadVerdict();
  };

  return (
    <div class="admin-console">
      <HealthPanel health={health} error={healthError} />

      <section class="card" aria-labelledby="accounts-title">
        <div class="section-head">
          <h2 id="accounts-title">Worker accounts</h2>
          <span class="muted small">Refreshes every 3 seconds</span>
        </div>
        <div class="sr-only" role="status" aria-live="polite">
          {message && !message.error ? message.text : ''}
        </div>
        {message?.error ? <ErrorNote error={message.error} /> : null}
        {message && !message.error ? <p class="note note-ok">{message.text}</p> : null}
        {accountsError ? <ErrorNote error={accountsError} /> : null}
        <AccountsTable accounts={accounts} act={act} guard={guard} onShowDeploy={showDeploy} />
        {deployOf !== null ? (
          <DeployPanel
            key={deployOf.n}
            id={deployOf.id}
            refresh={tick}
            guard={guard}
            onClose={() => setDeployOf(null)}
          />
        ) : null}
      </section>

      <WorkspaceGuide open={accounts.length === 0} />

      <AddAccount
        onAdded={(a) => {
          const where = a.base_url || a.effective_base_url;
          const next = (a.driver ?? 'gooni') === 'gooni' && a.has_credentials ? 'Deploy it, then run a health check' : 'Run a health check';
          setMessage({ text: `Account ${a.name} added${where ? `: Gooni reaches it at ${where}` : ''}. ${next} to make it ready.` });
          void loadAccounts();
          void loadLogs(null, filterRef.current);
          void loadHealth();
        }}
        guard={guard}
      />

      <InvitesPanel guard={guard} refresh={tick} onChanged={() => void loadLogs(null, filterRef.current)} />

      <section class="card" aria-labelledby="audit-title">
        <div class="section-head">
          <h2 id="audit-title">Audit log</h2>
          <ChainStatus verdict={verdict} error={verdictError} onVerify={() => void loadVerdict()} />
        </div>
        <form
          class="filters"
          role="search"
          aria-label="Filter audit log"
          onSubmit={(e) => {
            e.preventDefault();
            void loadLogs(null, filter, true);
          }}
        >
          <div class="field">
            <label for="log-action">Action</label>
            <input
              id="log-action"
              type="text"
              placeholder="e.g. account.create"
              value={filter.action}
              onInput={(e) => setFilter({ ...filter, action: (e.currentTarget as HTMLInputElement).value })}
            />
          </div>
          <div class="field">
            <label for="log-outcome">Outcome</label>
            <select
              id="log-outcome"
              value={filter.outcome}
              onChange={(e) => {
                const f = { ...filter, outcome: (e.currentTarget as HTMLSelectElement).value };
                setFilter(f);
                void loadLogs(null, f, true);
              }}
            >
              <option value="">Any</option>
              <option value="success">success</option>
              <option value="failure">failure</option>
              <option value="denied">denied</option>
            </select>
          </div>
          <div class="field">
            <label for="log-since">Since</label>
            <input
              id="log-since"
              type="datetime-local"
              value={filter.since}
              onChange={(e) => {
                const f = { ...filter, since: (e.currentTarget as HTMLInputElement).value };
                setFilter(f);
                void loadLogs(null, f, true);
              }}
            />
          </div>
          <div class="filter-actions">
            <button type="submit" class="secondary">
              Apply filters
            </button>
            <button
              type="button"
              class="link-button"
              onClick={() => {
                const f = { action: '', outcome: '', since: '' };
                setFilter(f);
                void loadLogs(null, f, true);
              }}
            >
              Clear
            </button>
          </div>
        </form>
        {logsError ? <ErrorNote error={logsError} /> : null}
        <AuditTable events={logs} loaded={logsLoaded} />
        <LoadMore shown={!!logsNext} onLoad={() => void loadLogs(logsNext, filter)} />
      </section>
    </div>
  );
}

function statusTone(s: string): string {
  switch (s) {
    case 'ready':
    case 'succeeded':
    case 'success':
    case 'ok':
      return 'ok';
    case 'failed':
    case 'failure':
    case 'denied':
    case 'degraded':
      return 'bad';
    case 'pending':
    case 'running':
      return 'warn';
    default:
      return 'off';
  }
}

interface AccountsTableProps {
  accounts: Account[];
  act: (label: string, fn: () => Promise<unknown>) => Promise<void>;
  guard: (e: unknown) => boolean;
  onShowDeploy: (id: number) => void;
}

function driverOf(a: Account): string {
  return a.driver || 'gooni';
}

// deployBlock says why Deploy cannot work for an account, or null when it can:
// only a gooni workspace is deployed, and only with its Modal token.
function deployBlock(a: Account): string | null {
  if (driverOf(a) !== 'gooni') return 'Not for ComfyUI accounts: Gooni does not deploy them.';
  if (!a.has_credentials) return 'Needs credentials: Edit the account to add its Modal token.';
  return null;
}

function AccountsTable({ accounts, act, guard, onShowDeploy }: AccountsTableProps) {
  const [busy, setBusy] = useState<Record<string, boolean>>({});
  const [confirm, setConfirm] = useState<Account | null>(null);
  const [deleting, setDeleting] = useState(false);
  const [deleteError, setDeleteError] = useState<unknown>(null);
  const [deployAsk, setDeployAsk] = useState<Account | null>(null);
  const [deployError, setDeployError] = useState<unknown>(null);
  const [deploying, setDeploying] = useState(false);
  const [editing, setEditing] = useState<Account | null>(null);

  const run = async (key: string, label: string, fn: () => Promise<unknown>) => {
    setBusy((b) => ({ ...b, [key]: true }));
    try {
      await act(label, fn);
    } finally {
      setBusy((b) => ({ ...b, [key]: false }));
    }
  };

  if (accounts.length === 0) {
    return <p class="empty">No worker accounts yet. Add one below; generation needs at least one that is ready.</p>;
  }
  const path = (a: Account, rest = '') => `/admin/accounts/${a.id}${rest}`;

  return (
    <>
      <div class="table-wrap" tabIndex={0} role="region" aria-label="Worker accounts table">
        <table class="table table-accounts">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Workspace</th>
              <th scope="col">Models</th>
              <th scope="col">Capacity</th>
              <th scope="col">Status</th>
              <th scope="col">Last health check</th>
              <th scope="col">Deploy</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {accounts.map((a) => {
              const nameId = `account-${a.id}-name`;
              const disabled = a.status === 'disabled';
              const blocked = deployBlock(a);
              const url = a.base_url || a.effective_base_url;
              return (
                <tr key={a.id} data-account-id={a.id}>
                  <th scope="row" id={nameId}>
                    {a.name}
                    <div class="muted small driver">{driverOf(a)}</div>
                  </th>
                  <td data-label="Workspace">
                    <div class="cell">
                      <code>{a.workspace}</code>
                      {url ? (
                        <div class="muted small break" title={a.base_url ? 'base URL' : 'derived from the workspace name'}>
                          {url}
                          {a.base_url ? null : <span class="derived"> (derived)</span>}
                        </div>
                      ) : null}
                    </div>
                  </td>
                  <td data-label="Models">
                    <div class="cell models">
                      {a.models && a.models.length ? (
                        a.models.map((m) => (
                          <span key={m} class="chip">
                            {m}
                          </span>
                        ))
                      ) : (
                        <span class="muted">{a.models ? 'none' : '—'}</span>
                      )}
                    </div>
                  </td>
                  <td data-label="Capacity" class="num-cell">
                    <div class="cell">{a.capacity}</div>
                  </td>
                  <td data-label="Status">
                    <div class="cell">
                      <Badge tone={statusTone(a.status)}>{a.status}</Badge>
                      {a.status_reason && a.status === 'failed' ? <div class="reason">{healthAdvice(a.status_reason)}</div> : null}
                      {a.status_reason && a.status !== 'failed' && a.status !== 'ready' ? <div class="muted small">{a.status_reason}</div> : null}
                    </div>
                  </td>
                  <td data-label="Last health check">
                    <div class="cell">
                      <span title={formatTimeFull(a.last_health_check_at)}>{formatTime(a.last_health_check_at)}</span>
                    </div>
                  </td>
                  <td data-label="Deploy">
                    <div class="cell">
                      {a.deploy_status ? <Badge tone={statusTone(a.deploy_status)}>{a.deploy_status}</Badge> : <span class="muted">never</span>}
                      {a.last_deploy_at ? <div class="muted small">{formatTime(a.last_deploy_at)}</div> : null}
                      {a.deploy_status ? (
                        <button type="button" class="link-button small" aria-describedby={nameId} onClick={() => onShowDeploy(a.id)}>
                          Deploy output
                        </button>
                      ) : null}
                      {blocked ? (
                        <div class="muted small" id={`account-${a.id}-deploy-block`}>
                          {blocked}
                        </div>
                      ) : null}
                    </div>
                  </td>
                  <td class="actions-cell">
                    <div class="row-actions">
                    <button
                      type="button"
                      class="secondary small"
                      aria-describedby={nameId}
                      disabled={busy[`${a.id}:health`]}
                      aria-busy={busy[`${a.id}:health`] ? 'true' : undefined}
                      onClick={() =>
                        void run(`${a.id}:health`, `Health check of ${a.name} finished.`, async () => {
                          const r = await request<Account>(path(a, '/health-check'), { method: 'POST' });
                          // the reason and its fix show once, in the row
                          if (r?.status === 'failed') throw new Error(`Health check of ${a.name} failed; its row says why.`);
                        })
                      }
                    >
                      Health check
                    </button>
                    {disabled ? (
                      <button
                        type="button"
                        class="secondary small"
                        aria-describedby={nameId}
                        disabled={busy[`${a.id}:status`]}
                        onClick={() =>
                          void run(`${a.id}:status`, `${a.name} enabled; its health check is running.`, () =>
                            request(path(a), { method: 'PATCH', body: { status: 'pending' } }),
                          )
                        }
                      >
                        Enable
                      </button>
                    ) : (
                      <button
                        type="button"
                        class="secondary small"
                        aria-describedby={nameId}
                        disabled={busy[`${a.id}:status`]}
                        onClick={() =>
                          void run(`${a.id}:status`, `${a.name} disabled.`, () => request(path(a), { method: 'PATCH', body: { status: 'disabled' } }))
                        }
                      >
                        Disable
                      </button>
                    )}
                    <button type="button" class="secondary small" aria-describedby={nameId} onClick={() => setEditing(a)}>
                      Edit
                    </button>
                    <button
                      type="button"
                      class="secondary small"
                      aria-describedby={blocked ? `${nameId} account-${a.id}-deploy-block` : nameId}
                      disabled={!!blocked || a.deploy_status === 'running'}
                      title={blocked ?? undefined}
                      onClick={() => {
                        setDeployError(null);
                        setDeployAsk(a);
                      }}
                    >
                      Deploy
                    </button>
                    <button
                      type="button"
                      class="danger small"
                      aria-describedby={nameId}
                      onClick={() => {
                        setDeleteError(null);
                        setConfirm(a);
                      }}
                    >
                      Delete
                    </button>
                    </div>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {confirm ? (
        <ConfirmDialog
          title={`Delete account ${confirm.name}?`}
          text="Its unfinished tasks fail with worker_removed, and its stored credentials are erased."
          confirmLabel="Delete"
          busy={deleting}
          error={deleteError}
          onCancel={() => setConfirm(null)}
          onConfirm={async () => {
            setDeleting(true);
            setDeleteError(null);
            try {
              await request<void>(path(confirm), { method: 'DELETE' });
              const name = confirm.name;
              setConfirm(null);
              await act(`Account ${name} deleted.`, async () => undefined);
            } catch (e) {
              setDeleteError(e);
            } finally {
              setDeleting(false);
            }
          }}
        />
      ) : null}
      {deployAsk ? (
        <Modal labelledBy="deploy-ask-title" onClose={() => setDeployAsk(null)} class="modal-small">
          <h2 id="deploy-ask-title">Deploy {deployAsk.name}?</h2>
          <p id="deploy-ask-text">
            Gooni runs its deploy command (<code>modal deploy</code> of the Gooni workspace app) for workspace{' '}
            <code>{deployAsk.workspace}</code> with this account's Modal token. It takes a few minutes; its output shows here
            when it ends, and a successful deploy is followed by a health check.
          </p>
          {deployError ? <ErrorNote error={deployError} /> : null}
          <div class="actions">
            <button
              type="button"
              class="primary"
              disabled={deploying}
              aria-describedby="deploy-ask-text"
              onClick={async () => {
                setDeploying(true);
                setDeployError(null);
                const a = deployAsk;
                try {
                  await request(path(a, '/deploy'), { method: 'POST' });
                  setDeployAsk(null);
                  onShowDeploy(a.id);
                  await act(`Deploy of ${a.name} started.`, async () => undefined);
                } catch (e) {
                  if (!guard(e)) setDeployError(e);
                } finally {
                  setDeploying(false);
                }
              }}
            >
              Deploy
            </button>
            <button type="button" class="secondary" onClick={() => setDeployAsk(null)} data-autofocus>
              Cancel
            </button>
          </div>
        </Modal>
      ) : null}
      {editing ? (
        <EditAccount
          account={editing}
          guard={guard}
          onClose={() => setEditing(null)}
          onSaved={(label) => {
            setEditing(null);
            void act(label, async () => undefined);
          }}
        />
      ) : null}
    </>
  );
}

const workspacePattern = /^[a-z0-9-]{3,64}$/;

function validURL(u: string): boolean {
  try {
    const x = new URL(u);
    return x.protocol === 'https:' || x.protocol === 'http:';
  } catch {
    return false;
  }
}

interface FieldProps {
  prefix: string;
  k: string;
  label: string;
  form: Record<string, string>;
  errors: Record<string, string>;
  set: (k: string) => (e: Event) => void;
  props?: Record<string, unknown>;
  hint?: string;
}

function Field({ prefix, k, label, form, errors, set, props = {}, hint }: FieldProps) {
  const id = `${prefix}-${k}`;
  return (
    <div class={`field${errors[k] ? ' has-error' : ''}`}>
      <label for={id}>{label}</label>
      <input
        id={id}
        aria-label={label}
        value={form[k] ?? ''}
        onInput={set(k)}
        aria-invalid={errors[k] ? 'true' : undefined}
        aria-describedby={errors[k] ? `${id}-error` : hint ? `${id}-hint` : undefined}
        {...props}
      />
      {errors[k] ? (
        <p class="field-error" id={`${id}-error`}>
          {errors[k]}
        </p>
      ) : hint ? (
        <p class="hint" id={`${id}-hint`}>
          {hint}
        </p>
      ) : null}
    </div>
  );
}

function DriverSelect({ id, value, onChange }: { id: string; value: string; onChange: (v: string) => void }) {
  return (
    <div class="field">
      <label for={id}>Driver</label>
      <select id={id} aria-label="Driver" value={value} onChange={(e) => onChange((e.currentTarget as HTMLSelectElement).value)}>
        {['gooni', 'comfyui'].map((d) => (
          <option key={d} value={d}>
            {d}
          </option>
        ))}
      </select>
      <p class="hint">{driverLabels[value] ?? value}</p>
    </div>
  );
}

// fieldErrorOf puts a server validation error next to its field.
function fieldErrorOf(x: unknown): Record<string, string> {
  const field = x instanceof ApiError ? x.details?.field : undefined;
  return typeof field === 'string' ? { [field.replace(/^credentials\./, '')]: (x as ApiError).message } : {};
}


// useAccountForm is what the Add and Edit account forms share: the values,
// the field errors, the request's error and busy flag, a field renderer
// (ids start with prefix), check (the fields both forms have, plus extra
// errors; shows them and focuses the first; false when any) and send (runs
// the form's request; a refusal shows on its fields and above the form).
function useAccountForm(start: Record<string, string>, prefix: string, guard: (e: unknown) => boolean) {
  const [form, setForm] = useState<Record<string, string>>(start);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [err, setErr] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const formRef = useRef<HTMLFormElement>(null);
  const set = (k: string) => (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value });
  const f = (k: string, label: string, props: Record<string, unknown> = {}, hint?: string) => (
    <Field prefix={prefix} k={k} label={label} form={form} errors={errors} set={set} props={props} hint={hint} />
  );
  const check = (extra: Record<string, string> = {}) => {
    const errs: Record<string, string> = {};
    if (!form.name.trim()) errs.name = 'Give the account a name.';
    Object.assign(errs, extra);
    const cap = Number(form.capacity);
    if (!Number.isInteger(cap) || cap < 1) errs.capacity = 'Capacity is a whole number of at least 1.';
    const url = form.base_url.trim();
    if (url && !validURL(url)) errs.base_url = 'Enter a full URL such as https://example.modal.run, or leave it empty.';
    else if (form.driver === 'comfyui' && !url) errs.base_url = 'A ComfyUI account needs the base URL of its server.';
    setErrors(errs);
    setErr(null);
    if (Object.keys(errs).length) {
      window.setTimeout(() => formRef.current?.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus(), 0);
      return false;
    }
    return true;
  };
  const send = async <T,>(req: () => Promise<T>, ok: (v: T) => void) => {
    setBusy(true);
    try {
      ok(await req());
    } catch (x) {
      if (guard(x)) return;
      setErrors(fieldErrorOf(x));
      setErr(x);
    } finally {
      setBusy(false);
    }
  };
  return { form, setForm, err, busy, formRef, f, check, send };
}

function AddAccount({ onAdded, guard }: { onAdded: (a: Account) => void; guard: (e: unknown) => boolean }) {
  const empty: Record<string, string> = { name: '', workspace: '', base_url: '', capacity: '1', driver: 'gooni' };
  const { form, setForm, err, busy, formRef, f, check, send } = useAccountForm(empty, 'acc', guard);
  const driver = form.driver;

  const submit = async (e: Event) => {
    e.preventDefault();
    const extra: Record<string, string> = {};
    if (!workspacePattern.test(form.workspace)) extra.workspace = 'Use 3–64 lowercase letters, digits or hyphens.';
    if (!check(extra)) return;
    const cap = Number(form.capacity);
    const credentials: Record<string, string> = {};
    for (const [k] of credentialFields(driver)) if (form[k]) credentials[k] = form[k];
    const body: Record<string, unknown> = { name: form.name.trim(), workspace: form.workspace, capacity: cap, credentials };
    if (form.base_url.trim()) body.base_url = form.base_url.trim();
    // gooni is the server's default: the field is sent only for another driver
    if (driver !== 'gooni') body.driver = driver;
    await send(
      () => request<Account>('/admin/accounts', { method: 'POST', body }),
      (a) => {
        setForm(empty);
        onAdded(a);
      },
    );
  };

  return (
    <section class="card" aria-labelledby="add-title">
      <h2 id="add-title">Add account</h2>
      <form ref={formRef} class="form" onSubmit={submit} noValidate aria-labelledby="add-title" autocomplete="off">
        <div class="form-grid">
          {f('name', 'Name', { type: 'text', autocomplete: 'off', required: true })}
          <DriverSelect id="acc-driver" value={driver} onChange={(v) => setForm({ ...form, driver: v })} />
          {f('workspace', 'Workspace', { type: 'text', autocomplete: 'off', spellcheck: false, required: true }, 'The Modal workspace name: lowercase letters, digits, hyphens.')}
          {f('base_url', 'Base URL', { type: 'url', autocomplete: 'off', placeholder: driver === 'comfyui' ? 'https://comfy.example.com' : 'optional' },
            driver === 'comfyui' ? 'Where the ComfyUI server answers (https, or http on loopback).' : 'Leave empty to derive it from the workspace name.')}
          {f('capacity', 'Capacity', { type: 'number', min: 1, step: 1, inputMode: 'numeric' }, 'Tasks it runs at the same time.')}
        </div>
        <fieldset class="creds">
          <legend>Credentials</legend>
          <p class="hint">Stored encrypted and never shown again. Leave a field empty to omit it.</p>
          <div class="form-grid">
            {credentialFields(driver).map(([k, label]) => (
              <div key={k}>{f(k, label, { type: 'password', autocomplete: 'new-password', spellcheck: false })}</div>
            ))}
          </div>
        </fieldset>
        {err ? <ErrorNote error={err} /> : null}
        <div class="actions">
          <button type="submit" class="primary" disabled={busy}>
            Add account
          </button>
        </div>
      </form>
    </section>
  );
}

// EditAccount changes an account: only what the admin changed is sent, and
// a credential left blank keeps its stored value (PATCH merges them).
function EditAccount({ account, guard, onClose, onSaved }: { account: Account; guard: (e: unknown) => boolean; onClose: () => void; onSaved: (label: string) => void }) {
  const start: Record<string, string> = {
    name: account.name,
    capacity: String(account.capacity),
    base_url: account.base_url ?? '',
    driver: driverOf(account),
  };
  const { form, setForm, err, busy, formRef, f, check, send } = useAccountForm(start, 'edit', guard);
  const [note, setNote] = useState<string | null>(null);
  const driver = form.driver;

  const submit = async (e: Event) => {
    e.preventDefault();
    setNote(null);
    if (!check()) return;
    const cap = Number(form.capacity);
    const url = form.base_url.trim();
    const body: Record<string, unknown> = {};
    if (form.name.trim() !== account.name) body.name = form.name.trim();
    if (cap !== account.capacity) body.capacity = cap;
    if (url !== (account.base_url ?? '')) body.base_url = url;
    if (driver !== driverOf(account)) body.driver = driver;
    const credentials: Record<string, string> = {};
    for (const [k] of credentialFields(driver)) if (form[k]) credentials[k] = form[k];
    if (Object.keys(credentials).length) body.credentials = credentials;
    if (Object.keys(body).length === 0) {
      setNote('Nothing changed.');
      return;
    }
    await send(
      () => request<Account>(`/admin/accounts/${account.id}`, { method: 'PATCH', body }),
      (a) => {
        const retry = body.credentials || 'base_url' in body || body.driver ? ' Run a health check to try the new settings.' : '';
        onSaved(`Saved ${a?.name ?? account.name}.${retry}`);
      },
    );
  };
  const derived = !account.base_url && account.effective_base_url ? `Empty: derived from the workspace name (${account.effective_base_url}).` : 'Empty: derived from the workspace name.';

  return (
    <Modal labelledBy="edit-title" onClose={onClose} class="modal-edit">
      <h2 id="edit-title">Edit {account.name}</h2>
      <p class="muted small">
        Workspace <code>{account.workspace}</code>
      </p>
      <form ref={formRef} class="form" onSubmit={submit} noValidate aria-labelledby="edit-title" autocomplete="off">
        <div class="form-grid">
          {f('name', 'Name', { type: 'text', autocomplete: 'off', 'data-autofocus': true })}
          {f('capacity', 'Capacity', { type: 'number', min: 1, step: 1, inputMode: 'numeric' })}
          {f('base_url', 'Base URL', { type: 'url', autocomplete: 'off' }, derived)}
          <DriverSelect id="edit-driver" value={driver} onChange={(v) => setForm({ ...form, driver: v })} />
        </div>
        <fieldset class="creds">
          <legend>Credentials</legend>
          <p class="hint">
            {account.has_credentials
              ? 'Stored encrypted and never shown. Leave a field blank to keep its stored value; type a new value to replace it.'
              : 'None stored yet. Leave a field empty to omit it.'}
          </p>
          <div class="form-grid">
            {credentialFields(driver).map(([k, label]) => (
              <div key={k}>
                {f(k, label, {
                  type: 'password',
                  autocomplete: 'new-password',
                  spellcheck: false,
                  placeholder: account.has_credentials ? 'unchanged' : '',
                })}
              </div>
            ))}
          </div>
        </fieldset>
        {err ? <ErrorNote error={err} /> : null}
        {note ? (
          <p class="note" role="status">
            {note}
          </p>
        ) : null}
        <div class="actions">
          <button type="submit" class="primary" disabled={busy}>
            Save
          </button>
          <button type="button" class="secondary" onClick={onClose}>
            Cancel
          </button>
        </div>
      </form>
    </Modal>
  );
}

// DeployPanel shows an account's last deploy: its status, when, and the
// output the server kept (credentials already replaced by [redacted]),
// following it while it runs.
function DeployPanel({ id, refresh, guard, onClose }: { id: number; refresh: number; guard: (e: unknown) => boolean; onClose: () => void }) {
  const [acc, setAcc] = useState<Account | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const ref = useRef<HTMLElement>(null);
  const load = useCallback(async () => {
    try {
      setAcc(await request<Account>(`/admin/accounts/${id}`));
      setErr(null);
    } catch (e) {
      if (!guard(e)) setErr(e);
    }
  }, [id, guard]);
  const running = useRef(true);
  running.current = !acc || acc.deploy_status === 'running';
  useEffect(() => {
    void load();
  }, [load]);
  useEffect(() => {
    // follow a running deploy; a finished one does not change
    if (running.current) void load();
  }, [refresh]);
  useEffect(() => {
    ref.current?.scrollIntoView({ block: 'nearest' });
    ref.current?.querySelector<HTMLElement>('h3')?.focus();
  }, [id]);
  const status = acc?.deploy_status ?? '';
  return (
    <section ref={ref} class="deploy-panel" aria-labelledby="deploy-panel-title">
      <div class="section-head">
        <h3 id="deploy-panel-title" tabIndex={-1}>
          Deploy output{acc ? `: ${acc.name}` : ''}
        </h3>
        <button type="button" class="link-button" onClick={onClose}>
          Close
        </button>
      </div>
      {err ? <ErrorNote error={err} /> : null}
      {acc ? (
        <>
          <p class="deploy-status" role="status">
            {status ? <Badge tone={statusTone(status)}>{status}</Badge> : <span class="muted">never deployed</span>}{' '}
            {acc.last_deploy_at ? (
              <span>
                {status === 'running' ? 'started' : 'finished'} <time dateTime={acc.last_deploy_at}>{formatTimeFull(acc.last_deploy_at)}</time>
              </span>
            ) : null}
            {status === 'running' ? <span class="muted"> · refreshes every 3 seconds</span> : null}
          </p>
          {acc.deploy_output ? (
            <pre class="deploy-output" tabIndex={0} aria-label="Deploy output text">
              {acc.deploy_output}
            </pre>
          ) : (
            <p class="muted">{status === 'running' ? 'No output yet.' : 'The deploy wrote no output.'}</p>
          )}
          {status === 'failed' ? <p class="hint">The last lines say why it failed. Fix that, then deploy again.</p> : null}
        </>
      ) : !err ? (
        <p class="muted">Loading…</p>
      ) : null}
    </section>
  );
}

function Stat({ label, children, tone, wide }: { label: string; children: preact.ComponentChildren; tone?: string; wide?: boolean }) {
  return (
    <div class={`stat${tone ? ` stat-${tone}` : ''}${wide ? ' stat-wide' : ''}`}>
      <dt>{label}</dt>
      <dd>{children}</dd>
    </div>
  );
}

function Counts({ c, order }: { c: Record<string, number> | undefined; order: string[] }) {
  if (!c) return <>—</>;
  return (
    <span class="counts">
      {order.map((k) => (
        <span key={k} class={(c[k] ?? 0) > 0 ? 'count' : 'count zero'}>
          <b>{c[k] ?? 0}</b> {k}
        </span>
      ))}
    </span>
  );
}

function HealthPanel({ health, error }: { health: AdminHealth | null; error: unknown }) {
  return (
    <section class="card" aria-labelledby="health-title">
      <div class="section-head">
        <h2 id="health-title">Health</h2>
        {health ? <Badge tone={statusTone(health.status)}>{health.status}</Badge> : null}
      </div>
      {error ? <ErrorNote error={error} /> : null}
      {health ? (
        <dl class="stats">
          <Stat label="Database" tone={health.database?.ok ? 'ok' : 'bad'}>
            {health.database?.ok ? 'OK' : health.database?.error || 'unavailable'}
          </Stat>
          <Stat label="Media directory" tone={health.media_dir?.ok ? 'ok' : 'bad'}>
            {health.media_dir?.ok ? 'OK' : health.media_dir?.error || 'unavailable'}
          </Stat>
          <Stat label="Disk free">{formatBytes(health.disk_free_bytes)}</Stat>
          <Stat label="Queue depth">{health.queue_depth ?? '—'}</Stat>
          <Stat label="Oldest pending">{health.oldest_pending_age_seconds == null ? 'none' : formatDuration(health.oldest_pending_age_seconds)}</Stat>
          <Stat label="Accounts" wide>
            <Counts c={health.accounts} order={['ready', 'pending', 'failed', 'disabled']} />
          </Stat>
          <Stat label="Tasks" wide>
            <Counts c={health.tasks} order={['pending', 'processing', 'done', 'failed']} />
          </Stat>
          <Stat label="Last reaper run">{health.last_reaper_run ? formatTime(health.last_reaper_run) : 'not yet'}</Stat>
          <Stat label="Uptime">{formatDuration(health.uptime_seconds)}</Stat>
          <Stat label="Version">{health.version || '—'}</Stat>
        </dl>
      ) : !error ? (
        <p class="muted">Loading…</p>
      ) : null}
    </section>
  );
}

function ChainStatus({ verdict, error, onVerify }: { verdict: ChainVerdict | null; error: unknown; onVerify: () => void }) {
  return (
    <div class="chain">
      <span role="status" aria-live="polite" class={verdict ? (verdict.ok ? 'chain-ok' : 'chain-bad') : 'muted'}>
        {error
          ? 'Chain check unavailable'
          : verdict
            ? verdict.ok
              ? `Chain intact: ${verdict.checked} events checked`
              : `Chain broken at event #${verdict.first_bad_id ?? '?'}`
            : 'Checking chain…'}
      </span>
      <button type="button" class="link-button" onClick={onVerify}>
        Verify chain
      </button>
    </div>
  );
}

function details(d: Record<string, unknown> | null | undefined): string {
  if (!d || Object.keys(d).length === 0) return '';
  return Object.entries(d)
    .filter(([, v]) => v !== '' && v != null)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
}

function AuditTable({ events, loaded }: { events: AuditEvent[]; loaded: boolean }) {
  if (!loaded) return <p class="muted">Loading…</p>;
  if (events.length === 0) return <p class="empty">No events match.</p>;
  return (
    <div class="table-wrap" tabIndex={0} role="region" aria-label="Audit log table">
      <table class="table table-log">
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">Time</th>
            <th scope="col">Action</th>
            <th scope="col">Outcome</th>
            <th scope="col">Actor</th>
            <th scope="col">Source</th>
            <th scope="col">Target</th>
            <th scope="col">Details</th>
          </tr>
        </thead>
        <tbody>
          {events.map((e) => {
            const d = details(e.details);
            return (
              <tr key={e.id}>
                <td class="num-cell muted log-id">{e.id}</td>
                <td class="nowrap" data-label="Time">
                  <time dateTime={e.timestamp} title={formatTimeFull(e.timestamp)}>
                    {formatTime(e.timestamp)}
                  </time>
                </td>
                <td data-label="Action">
                  <code>{e.action}</code>
                </td>
                <td data-label="Outcome">
                  <Badge tone={statusTone(e.outcome)}>{e.outcome}</Badge>
                </td>
                <td class="nowrap" data-label="Actor">
                  {e.actor}
                </td>
                <td class="nowrap" data-label="Source">
                  {e.source}
                </td>
                <td class="nowrap" data-label="Target">
                  {e.target}
                </td>
                <td class="details" title={d} data-label="Details">
                  {d}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
