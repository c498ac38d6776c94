// Task control shared by Generate and History: this browser's tasks, the one
// GET /events stream of the tab, submitting with an Idempotency-Key, cancel
// and retry (CONTRACT section 12).
import { useEffect, useRef, useState } from 'preact/hooks';
import type { TaskView } from './api';
import { ApiError, base, ensureSession, renewSession, request } from './api';

export interface Accepted {
  task_id: string;
  task_ids?: string[];
}

const mineKey = 'gooni.tasks.v1';
const maxMine = 50;

export function isOpen(t: TaskView | null | undefined): boolean {
  return !!t && (t.status === 'pending' || t.status === 'processing');
}

export function isTerminal(t: TaskView | null | undefined): boolean {
  return !!t && (t.status === 'done' || t.status === 'failed');
}

// myTasks is the ids this browser created, newest first.
export function myTasks(): string[] {
  try {
    const raw = JSON.parse(localStorage.getItem(mineKey) ?? '[]') as unknown;
    return Array.isArray(raw) ? raw.filter((x): x is string => typeof x === 'string').slice(0, maxMine) : [];
  } catch {
    return [];
  }
}

function saveMine(ids: string[]) {
  try {
    localStorage.setItem(mineKey, JSON.stringify(ids.slice(0, maxMine)));
  } catch {
    // storage full or disabled: the queue panel forgets on reload
  }
  window.dispatchEvent(new Event('gooni-tasks'));
}

export function rememberTasks(ids: string[]) {
  const have = myTasks().filter((id) => !ids.includes(id));
  saveMine([...ids.slice().reverse(), ...have]);
}

export function forgetTask(id: string) {
  saveMine(myTasks().filter((x) => x !== id));
}

// useMyTasks follows the remembered ids (also when another page adds one).
export function useMyTasks(): string[] {
  const [ids, setIds] = useState(myTasks);
  useEffect(() => {
    const on = () => setIds(myTasks());
    window.addEventListener('gooni-tasks', on);
    window.addEventListener('storage', on);
    return () => {
      window.removeEventListener('gooni-tasks', on);
      window.removeEventListener('storage', on);
    };
  }, []);
  return ids;
}

function newKey(): string {
  if (typeof crypto !== 'undefined' && 'randomUUID' in crypto) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

// A failed submission's key is kept with its body, so sending the same body
// again (the person presses Generate once more) is the same request to the
// server: it creates the tasks at most once.
let lastFailed: { body: string; key: string } | null = null;

// submitGenerate posts a generate body with an Idempotency-Key; a network
// failure is retried once at once with the same key.
export async function submitGenerate(body: Record<string, unknown>): Promise<Accepted> {
  const text = JSON.stringify(body);
  const key = lastFailed && lastFailed.body === text ? lastFailed.key : newKey();
  const post = () => request<Accepted>('/generate', { method: 'POST', body, headers: { 'Idempotency-Key': key } });
  try {
    let res: Accepted;
    try {
      res = await post();
    } catch (e) {
      if (!(e instanceof ApiError) || (e.code !== 'network' && e.status < 500)) throw e;
      if (e.code === 'no_workers' || e.code === 'queue_full') throw e;
      res = await post();
    }
    lastFailed = null;
    const ids = res.task_ids && res.task_ids.length > 0 ? res.task_ids : [res.task_id];
    rememberTasks(ids);
    return res;
  } catch (e) {
    lastFailed = { body: text, key };
    throw e;
  }
}

export function cancelTask(id: string): Promise<TaskView> {
  return request<TaskView>(`/tasks/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
}

function blobToDataURL(b: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result));
    r.onerror = () => reject(new Error('The input image could not be read.'));
    r.readAsDataURL(b);
  });
}

// retryBody is a task's settings as a generate body; an i2v task's image
// is fetched again through GET /inputs/{id}.
export async function retryBody(t: TaskView): Promise<Record<string, unknown>> {
  const body: Record<string, unknown> = { model: t.model, mode: t.mode, prompt: t.prompt, params: t.params ?? {} };
  if (t.negative_prompt) body.negative_prompt = t.negative_prompt;
  if (t.mode.includes('i2')) {
    let res: Response;
    try {
      res = await fetch(base(`/inputs/${encodeURIComponent(t.task_id)}`), { credentials: 'same-origin' });
    } catch {
      throw new ApiError(0, 'network', 'Could not reach the Gooni server. Check that it is running, then try again.');
    }
    if (!res.ok) throw new ApiError(res.status, 'input_not_found', 'The input image of this task is no longer stored; choose it again on Generate.');
    body.image = await blobToDataURL(await res.blob());
  }
  return body;
}

export async function retryTask(t: TaskView): Promise<Accepted> {
  return submitGenerate(await retryBody(t));
}

type Listener = (t: TaskView) => void;
type StateListener = (up: boolean) => void;

// The tab's one GET /events stream, opened while anything listens.
const live = {
  source: null as EventSource | null,
  listeners: new Set<Listener>(),
  states: new Set<StateListener>(),
  up: true,
  timer: 0,
};

function setUp(up: boolean) {
  if (live.up === up) return;
  live.up = up;
  for (const s of live.states) s(up);
}

function connect() {
  if (live.source || live.listeners.size === 0 || typeof EventSource === 'undefined') return;
  const es = new EventSource(base('/events'));
  live.source = es;
  es.onopen = () => setUp(true);
  es.addEventListener('task', (ev) => {
    let t: TaskView;
    try {
      t = JSON.parse((ev as MessageEvent<string>).data) as TaskView;
    } catch {
      return;
    }
    for (const l of live.listeners) l(t);
  });
  es.onerror = () => {
    setUp(false);
    if (es.readyState === EventSource.CLOSED) {
      // refused (a new session may be needed): start over after a pause
      es.close();
      if (live.source === es) live.source = null;
      window.clearTimeout(live.timer);
      live.timer = window.setTimeout(() => {
        renewSession()
          .catch(() => undefined)
          .finally(connect);
      }, 2000);
    }
  };
}

// disconnect closes the stream once nothing listens for a moment: a page
// that re-subscribes as it renders (a new task joins the list) keeps it.
function disconnect() {
  window.setTimeout(() => {
    if (live.listeners.size > 0) return;
    live.source?.close();
    live.source = null;
    window.clearTimeout(live.timer);
  }, 1000);
}

// subscribe adds a listener of task views and one of the stream's state to
// the tab's one GET /events stream, opening it (after making sure of a
// session) if it is not open; the function it returns removes both and lets
// the stream close when nothing else listens.
function subscribe(onTask: Listener, onState: (up: boolean) => void): () => void {
  let stopped = false;
  live.listeners.add(onTask);
  live.states.add(onState);
  void ensureSession()
    .catch(() => undefined)
    .then(() => {
      if (!stopped) connect();
    });
  return () => {
    stopped = true;
    live.listeners.delete(onTask);
    live.states.delete(onState);
    disconnect();
  };
}

// useLiveTasks keeps views of ids current: one fetch each when the list or
// the connection changes, then every change from the tab's stream. It also
// says whether the stream is up.
export function useLiveTasks(ids: string[]): { views: Map<string, TaskView>; connected: boolean; error: unknown } {
  const [views, setViews] = useState<Map<string, TaskView>>(new Map());
  const [connected, setConnected] = useState(true);
  const [error, setError] = useState<unknown>(null);
  const key = ids.join(',');
  useEffect(() => {
    let stopped = false;
    const wanted = new Set(ids);
    const apply = (t: TaskView) => {
      if (stopped || !wanted.has(t.task_id)) return;
      setViews((old) => {
        const prev = old.get(t.task_id);
        // never step back: a late fetch must not undo a newer event. The
        // server's progress never goes down (a requeued task keeps it), so
        // an open view with less progress than the one shown is stale.
        if (prev && isTerminal(prev) && !isTerminal(t)) return old;
        if (prev && !isTerminal(t) && (prev.progress ?? 0) > (t.progress ?? 0)) return old;
        const next = new Map(old);
        next.set(t.task_id, t);
        return next;
      });
    };
    const refresh = async () => {
      await ensureSession().catch(() => undefined);
      for (const id of ids) {
        try {
          apply(await request<TaskView>(`/status/${encodeURIComponent(id)}`));
        } catch (e) {
          if (stopped) return;
          if (e instanceof ApiError && e.code === 'task_not_found') {
            forgetTask(id);
          } else {
            setError(e);
          }
        }
      }
    };
    const unsubscribe = subscribe(apply, (up) => {
      setConnected(up);
      if (up) void refresh(); // catch up with what changed while it was down
    });
    setConnected(live.up);
    void refresh();
    return () => {
      stopped = true;
      unsubscribe();
    };
  }, [key]);
  return { views, connected, error };
}

// useTaskEvents hands every task view the tab's one GET /events stream
// brings to onTask (no fetches: the Gallery's live arrivals), and calls
// onReconnect when the stream is back after being down (events may have
// been missed meanwhile). It returns whether the stream is up.
export function useTaskEvents(onTask: Listener, onReconnect?: () => void): boolean {
  const [connected, setConnected] = useState(live.up);
  const taskRef = useRef(onTask);
  const reconnectRef = useRef(onReconnect);
  taskRef.current = onTask;
  reconnectRef.current = onReconnect;
  useEffect(() => {
    let stopped = false;
    let wasUp = live.up;
    const apply = (t: TaskView) => {
      if (!stopped) taskRef.current(t);
    };
    const unsubscribe = subscribe(apply, (up) => {
      setConnected(up);
      if (up && !wasUp) reconnectRef.current?.();
      wasUp = up;
    });
    setConnected(live.up);
    return () => {
      stopped = true;
      unsubscribe();
    };
  }, []);
  return connected;
}

// etaText says when a task should be done, or nothing without an estimate.
export function etaText(t: TaskView): string {
  const s = t.eta_seconds;
  if (s == null || !Number.isFinite(s)) return '';
  if (s < 60) return `about ${Math.max(1, Math.round(s))} s left`;
  const m = Math.round(s / 60);
  return m < 60 ? `about ${m} min left` : `about ${Math.floor(m / 60)} h ${m % 60} min left`;
}

export function statusText(t: TaskView): string {
  switch (t.status) {
    case 'pending':
      return t.queue_position ? `Waiting in queue, position ${t.queue_position}` : 'Waiting for a worker';
    case 'processing':
      return `Generating… ${Math.max(0, Math.min(99, Math.round(t.progress ?? 0)))}%`;
    case 'done':
      return 'Done';
    default:
      return t.error?.code === 'canceled' ? 'Canceled' : 'Failed';
  }
}
