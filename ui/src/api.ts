// One fetch wrapper for the whole UI: same-origin cookies, contract error
// shapes turned into ApiError, and a silent user-session renewal.

export interface Param {
  name: string;
  label: string;
  kind: 'int' | 'float' | 'enum' | 'bool' | string;
  min?: number;
  max?: number;
  step?: number;
  default?: number | string | boolean;
  options?: string[];
}

export interface Model {
  id: string;
  label: string;
  type: string;
  modes: string[];
  aliases?: string[];
  negative_prompt?: boolean;
  params: Param[];
}

export interface Catalog {
  version: number;
  models: Model[];
}

export interface TaskError {
  code: string;
  message: string;
}

export interface TaskView {
  task_id: string;
  type: string;
  model: string;
  mode: string;
  prompt: string;
  negative_prompt?: string;
  params?: Record<string, unknown>;
  status: 'pending' | 'processing' | 'done' | 'failed';
  progress: number;
  queue_position?: number | null;
  eta_seconds?: number | null;
  created_at: string;
  started_at?: string | null;
  completed_at?: string | null;
  error?: TaskError | null;
  result_url?: string;
  preview_url?: string;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | number | null;
}

export interface Account {
  id: number;
  name: string;
  workspace: string;
  base_url?: string;
  capacity: number;
  status: 'pending' | 'ready' | 'failed' | 'disabled' | string;
  status_reason?: string;
  last_health_check_at?: string | null;
  deploy_status?: string | null;
  last_deploy_at?: string | null;
  has_credentials?: boolean;
  created_at?: string;
  updated_at?: string;
  // where Gooni reaches it: base_url, or derived from the workspace name
  effective_base_url?: string;
  // the redacted output of its last deploy (GET /admin/accounts/{id} only)
  deploy_output?: string;
  // CONTRACT section 14: 'gooni' (the default) or 'comfyui', and the catalog models it serves
  driver?: string;
  models?: string[];
}

// Invite is a sign-in link as admins see it (CONTRACT section 16); url only when just made.
export interface Invite {
  id: number;
  label: string;
  url?: string;
  uses: number;
  uses_left: number;
  status: 'active' | 'used_up' | 'expired' | 'revoked' | string;
  expires_at: string;
  created_at: string;
  revoked_at?: string | null;
  last_used_at?: string | null;
}

export interface AuditEvent {
  id: number;
  timestamp: string;
  actor: string;
  source: string;
  action: string;
  target: string;
  outcome: string;
  correlation_id: string;
  details?: Record<string, unknown> | null;
}

export interface AdminHealth {
  status: string;
  version?: string;
  uptime_seconds?: number;
  database?: { ok: boolean; error?: string };
  disk_free_bytes?: number;
  media_dir?: { ok: boolean; path?: string; error?: string };
  queue_depth?: number;
  oldest_pending_age_seconds?: number | null;
  accounts?: Record<string, number>;
  tasks?: Record<string, number>;
  last_reaper_run?: string | null;
}

export interface ChainVerdict {
  ok: boolean;
  checked: number;
  first_bad_id?: number | null;
}

// ApiError carries the contract's error code next to its plain message.
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
    readonly correlationId?: string,
  ) {
    super(message);
  }
}

const userRoutes = ['/generate', '/status/', '/results/', '/preview/', '/gallery', '/events', '/tasks', '/inputs/'];

function isUserRoute(path: string): boolean {
  return userRoutes.some((p) => path.startsWith(p));
}

async function toError(res: Response): Promise<ApiError> {
  let body: unknown = null;
  try {
    body = await res.json();
  } catch {
    // not JSON: fall through to a generic message
  }
  const e = (body as { error?: { code?: string; message?: string; details?: Record<string, unknown>; correlation_id?: string } } | null)?.error;
  if (e && typeof e.code === 'string') {
    return new ApiError(res.status, e.code, e.message || e.code, e.details, e.correlation_id);
  }
  return new ApiError(res.status, `http_${res.status}`, `The server answered ${res.status} ${res.statusText}`.trim());
}

// --- Base path (CONTRACT section 17) ---------------------------------------
// Behind a proxy that serves Gooni under a prefix (GG_PUBLIC_URL =
// https://example.com/gooni) the page is /gooni/ and every API path must
// carry /gooni too. Routing is hash-based, so the page's own directory is
// the base: base('/generate') is '/gooni/generate', or '/generate' at the root.
const basePath = new URL('.', document.baseURI).pathname.replace(/\/+$/, '');

export function base(path: string): string {
  return basePath + path;
}

// --- Sign-in (CONTRACT section 16) -------------------------------------------
// When no session can be had without a person's action (invite and key
// modes), the page shows its sign-in screen: it listens for this event.
export const signInEvent = 'gooni:signin';

function needSignIn(err: ApiError): ApiError {
  window.dispatchEvent(new CustomEvent(signInEvent, { detail: { code: err.code, mode: err.details?.session_mode } }));
  return err;
}
// -----------------------------------------------------------------------------

async function send(path: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(base(path), { ...init, credentials: 'same-origin' });
  } catch {
    throw new ApiError(0, 'network', 'Could not reach the Gooni server. Check that it is running, then try again.');
  }
}

let renewing: Promise<void> | null = null;
let bootstrapped: Promise<void> | null = null;

// renewSession asks for a fresh gg_session; concurrent callers share one request
// so a burst of 401s does not spend the per-IP session rate limit. A 401
// (invite or key mode) sends the page to its sign-in screen.
export function renewSession(): Promise<void> {
  if (!renewing) {
    renewing = (async () => {
      const res = await send('/auth/session', { method: 'POST' });
      if (!res.ok) {
        const err = await toError(res);
        throw res.status === 401 ? needSignIn(err) : err;
      }
    })().finally(() => {
      renewing = null;
    });
  }
  return renewing;
}

// reuseOrRenew keeps a live session (GET /auth/session: no new session,
// no audit row); without one it asks for a new one only where that can
// work (open mode), and otherwise sends the page to its sign-in screen.
async function reuseOrRenew(): Promise<void> {
  const res = await send('/auth/session', { method: 'GET', headers: { Accept: 'application/json' } });
  if (res.ok) return;
  const err = await toError(res);
  if (res.status !== 401) throw err;
  const mode = err.details?.session_mode;
  if (mode === 'invite' || mode === 'key') throw needSignIn(err);
  return renewSession();
}

// ensureSession is the on-load bootstrap; a failed attempt is retried by the next caller.
export function ensureSession(): Promise<void> {
  if (!bootstrapped) {
    const p = reuseOrRenew();
    bootstrapped = p;
    p.catch(() => {
      if (bootstrapped === p) bootstrapped = null;
    });
  }
  return bootstrapped;
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  headers?: Record<string, string>;
}

export async function request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const user = isUserRoute(path);
  const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers };
  const init: RequestInit = { method: opts.method ?? 'GET', headers };
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  if (user) {
    await ensureSession().catch(() => undefined);
  }
  let res = await send(path, init);
  if (user && res.status === 401) {
    const err = await toError(res);
    if (err.code !== 'session_expired' && err.code !== 'session_required') throw err;
    await renewSession();
    res = await send(path, init);
  }
  if (!res.ok) throw await toError(res);
  if (res.status === 204) return undefined as T;
  const type = res.headers.get('Content-Type') ?? '';
  if (!type.includes('json')) return undefined as T;
  return (await res.json()) as T;
}

const hints: Record<string, string> = {
  no_workers: 'An admin must add or health-check a worker account.',
  task_finished: 'The task had already finished.',
  idempotency_conflict: 'Change nothing and press Generate again, or reload the page.',
  queue_full: 'Wait for some tasks to finish, then try again.',
  rate_limited: 'Too many attempts in a short time. Wait a minute, then try again.',
  session_expired: 'Reload the page to start a new session.',
  session_required: 'Reload the page to start a new session.',
  worker_unavailable: 'The GPU workspace did not answer. An admin can health-check it.',
  proxy_target_invalid: 'The worker account for this task is no longer registered.',
  storage_failed: 'The server could not store or read media. Check its disk space.',
};

export interface Problem {
  message: string;
  hint?: string;
  code?: string;
}

// describe turns anything thrown into words a person can act on.
export function describe(err: unknown): Problem {
  if (err instanceof ApiError) return { message: err.message, hint: hintFor(err.code, err.message), code: err.code };
  if (err instanceof Error) return { message: err.message };
  return { message: String(err) };
}

// hintFor gives the next step for an error code, unless the message already says it.
export function hintFor(code: string, message = ''): string | undefined {
  const hint = hints[code];
  if (!hint) return undefined;
  return message.toLowerCase().includes(hint.toLowerCase().replace(/\.$/, '')) ? undefined : hint;
}

let catalogPromise: Promise<Catalog> | null = null;

// loadCatalog fetches GET /config once per page load; a failure can be retried.
export function loadCatalog(): Promise<Catalog> {
  if (!catalogPromise) {
    const p = request<Catalog>('/config').then((c) => {
      if (!c || !Array.isArray(c.models)) throw new Error('The server sent a model catalog this page cannot read.');
      return c;
    });
    catalogPromise = p;
    p.catch(() => {
      if (catalogPromise === p) catalogPromise = null;
    });
  }
  return catalogPromise;
}

export function findModel(catalog: Catalog, idOrAlias: string): Model | undefined {
  return catalog.models.find((m) => m.id === idOrAlias || (m.aliases ?? []).includes(idOrAlias));
}
