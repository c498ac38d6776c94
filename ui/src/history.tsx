// The History tab of the Gallery: every task of every status from GET
// /tasks, filtered by Status, model, type and prompt words, so failed and
// canceled tasks can be found, read and retried.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import type { Catalog, Page, TaskView } from './api';
import { ApiError, base, findModel, request } from './api';
import { formatTime, formatTimeFull, modeName } from './format';
import { FilterFields, useDebounced } from './filters';
import { applyTask, saveTaskId } from './settings';
import { cancelTask, etaText, isOpen, retryTask, statusText } from './tasks';
import { ErrorNote, LoadMore } from './widgets';

const pageSize = 30;

// GalleryTabs switches between the finished items and the History.
export function GalleryTabs({ current }: { current: 'gallery' | 'history' }) {
  return (
    <nav class="tabs" aria-label="Gallery views">
      <a href="#/gallery" aria-current={current === 'gallery' ? 'page' : undefined}>
        Finished
      </a>
      <a href="#/history" aria-current={current === 'history' ? 'page' : undefined}>
        History
      </a>
    </nav>
  );
}

const statusOptions: [string, string][] = [
  ['', 'All'],
  ['pending,processing', 'Queued or running'],
  ['done', 'Done'],
  ['failed', 'Failed or canceled'],
];

export function HistoryPage({ catalog }: { catalog: Catalog }) {
  const [status, setStatus] = useState('');
  const [model, setModel] = useState('');
  const [type, setType] = useState('');
  const [search, setSearch] = useState('');
  const query = useDebounced(search.trim(), 300);
  const [items, setItems] = useState<TaskView[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [loaded, setLoaded] = useState(false);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const [busy, setBusy] = useState<Record<string, boolean>>({});
  const generation = useRef(0);
  // the search box asks the server once typing pauses (useDebounced)

  const load = useCallback(
    async (cursor: string | null) => {
      const gen = ++generation.current;
      setLoading(true);
      setError(null);
      try {
        const q = new URLSearchParams({ limit: String(pageSize) });
        if (status) q.set('status', status);
        if (model) q.set('model', model);
        if (type) q.set('type', type);
        if (query) q.set('q', query);
        if (cursor) q.set('cursor', cursor);
        const page = await request<Page<TaskView>>(`/tasks?${q}`);
        if (gen !== generation.current) return;
        setItems((old) => (cursor ? [...old, ...page.items.filter((i) => !old.some((o) => o.task_id === i.task_id))] : page.items));
        setNext(page.next_cursor == null || page.next_cursor === '' ? null : String(page.next_cursor));
        setLoaded(true);
      } catch (e) {
        if (gen === generation.current) setError(e);
      } finally {
        if (gen === generation.current) setLoading(false);
      }
    },
    [status, model, type, query],
  );

  useEffect(() => {
    void load(null);
  }, [load]);

  const act = async (t: TaskView, what: () => Promise<void>) => {
    setBusy((b) => ({ ...b, [t.task_id]: true }));
    setActionError(null);
    try {
      await what();
    } catch (e) {
      setActionError(e);
    } finally {
      setBusy((b) => ({ ...b, [t.task_id]: false }));
    }
  };
  const retry = (t: TaskView) =>
    act(t, async () => {
      const res = await retryTask(t);
      saveTaskId(res.task_id);
      window.location.hash = '#/';
    });
  const cancel = (t: TaskView) =>
    act(t, async () => {
      try {
        const v = await cancelTask(t.task_id);
        setItems((old) => old.map((i) => (i.task_id === v.task_id ? v : i)));
      } catch (e) {
        if (!(e instanceof ApiError && e.code === 'task_finished')) throw e;
        void load(null);
      }
    });
  const reuse = (t: TaskView) => {
    applyTask(catalog, t);
    window.location.hash = '#/';
  };

  return (
    <section class="page page-history" aria-labelledby="history-title">
      <div class="page-head">
        <h1 id="history-title" tabIndex={-1}>
          History
        </h1>
        {loaded ? (
          <span class="muted small">
            {items.length} {items.length === 1 ? 'task' : 'tasks'}
            {next ? ' so far' : ''}
          </span>
        ) : null}
      </div>
      <GalleryTabs current="history" />
      <div class="filters card">
        <div class="field">
          <label for="h-status">Status</label>
          <select id="h-status" aria-label="Status" value={status} onChange={(e) => setStatus((e.currentTarget as HTMLSelectElement).value)}>
            {statusOptions.map(([v, l]) => (
              <option key={v} value={v}>
                {l}
              </option>
            ))}
          </select>
        </div>
        <FilterFields catalog={catalog} idPrefix="h" search={search} model={model} type={type} onSearch={setSearch} onModel={setModel} onType={setType} />
      </div>
      {actionError ? <ErrorNote error={actionError} /> : null}
      {error ? (
        <div class="stack">
          <ErrorNote error={error} />
          <button type="button" class="secondary" onClick={() => void load(null)}>
            Try again
          </button>
        </div>
      ) : null}
      {loaded && items.length === 0 && !error ? <p class="card empty">No task matches these filters.</p> : null}
      <ul class="history-list">
        {items.map((t) => {
          const id = `h-${t.task_id}-prompt`;
          const m = findModel(catalog, t.model);
          return (
            <li key={t.task_id} class={`queue-item status-${t.status}`} data-task-id={t.task_id} data-status={t.status}>
              <p class="queue-prompt" id={id} title={t.prompt}>
                {t.prompt}
              </p>
              <span class="muted small">
                {m?.label ?? t.model} · {modeName(t.mode)} ·{' '}
                <time dateTime={t.created_at} title={formatTimeFull(t.created_at)}>
                  {formatTime(t.created_at)}
                </time>
              </span>
              <div class="queue-line">
                <span class="queue-status">
                  {statusText(t)}
                  {isOpen(t) && etaText(t) ? ` · ${etaText(t)}` : ''}
                </span>
                {t.status === 'done' ? (
                  <a class="button secondary small" href={base(`/results/${encodeURIComponent(t.task_id)}?download=1`)} download aria-describedby={id}>
                    Download
                  </a>
                ) : null}
                {isOpen(t) ? (
                  <button type="button" class="secondary small" disabled={!!busy[t.task_id]} aria-describedby={id} onClick={() => void cancel(t)}>
                    Cancel
                  </button>
                ) : null}
                {t.status === 'failed' ? (
                  <button type="button" class="secondary small" disabled={!!busy[t.task_id]} aria-describedby={id} onClick={() => void retry(t)}>
                    Retry
                  </button>
                ) : null}
                <button type="button" class="link-button small" aria-describedby={id} onClick={() => reuse(t)}>
                  Use these settings
                </button>
              </div>
              {t.status === 'failed' ? <p class="queue-error">{t.error?.message || 'The task failed.'}</p> : null}
            </li>
          );
        })}
      </ul>
      <LoadMore shown={!!next} busy={loading} onLoad={() => void load(next)} />
    </section>
  );
}
