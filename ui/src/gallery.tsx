// The Gallery page: finished tasks newest first, found by prompt words,
// model and type (kept in the address: galleryurl.ts), with a large view
// per item (its own address; Previous/Next and the arrow keys, Close and
// Escape, Delete, Download, Use these settings), new items arriving live
// from the tab's GET /events stream, and a Select mode to delete several.
import { Fragment } from 'preact';
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import type { Catalog, Page, TaskView } from './api';
import { ApiError, base, describe, findModel, request } from './api';
import { FilterFields, useDebounced } from './filters';
import { formatTime, formatTimeFull, keyParams, modeName, needsImage, paramList } from './format';
import type { GalleryFilters, GalleryLocation } from './galleryurl';
import { galleryHash, hasFilters, noFilters, parseGalleryHash, promptMatches, sameFilters, words } from './galleryurl';
import { GalleryTabs } from './history';
import { applyTask, loadTaskId, saveTaskId, setHandoffImage } from './settings';
import { useTaskEvents } from './tasks';
import { ConfirmDialog, ErrorNote, LoadMore, Modal } from './widgets';

const pageSize = 24;
// how many DELETE requests a batch keeps in flight
const deleteConcurrency = 4;

interface GalleryPageAnswer extends Page<TaskView> {
  total?: number;
  total_capped?: boolean;
}

function preview(id: string) {
  return base(`/preview/${encodeURIComponent(id)}`);
}
function result(id: string) {
  return base(`/results/${encodeURIComponent(id)}`);
}
function input(id: string) {
  return base(`/inputs/${encodeURIComponent(id)}`);
}
function short(s: string, n = 80) {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

// fetchInput reads an i2v task's input image as a File for the Generate form.
async function fetchInput(id: string): Promise<File> {
  let res: Response;
  try {
    res = await fetch(input(id), { credentials: 'same-origin' });
  } catch {
    throw new ApiError(0, 'network', 'Could not reach the Gooni server. Check that it is running, then try again.');
  }
  if (!res.ok) {
    throw new ApiError(res.status, 'input_not_found', 'The input image of this task is no longer stored, so its settings cannot be used as they were.');
  }
  const blob = await res.blob();
  const type = blob.type || 'image/png';
  const ext = type === 'image/jpeg' ? 'jpg' : type === 'image/webp' ? 'webp' : 'png';
  return new File([blob], `input-${id}.${ext}`, { type });
}

// matches applies the page's filters to a task that arrived from the stream.
function matches(t: TaskView, f: GalleryFilters, catalog: Catalog): boolean {
  if (t.status !== 'done') return false;
  if (f.model && findModel(catalog, t.model)?.id !== f.model) return false;
  if (f.type && t.type !== f.type) return false;
  return promptMatches(t.prompt, f.q);
}

// cleanFilters drops what the catalog does not know (an old or edited link)
// and a q without a word, so the server is never asked something it refuses.
function cleanFilters(f: GalleryFilters, catalog: Catalog): GalleryFilters {
  return {
    q: words(f.q).length > 0 ? f.q.trim() : '',
    model: findModel(catalog, f.model)?.id ?? '',
    type: catalog.models.some((m) => m.type === f.type) ? f.type : '',
  };
}

function countText(total: { n: number; capped: boolean } | null, shown: number, more: boolean, filtered: boolean): string {
  const n = total ? total.n : shown;
  const plus = total ? total.capped : more;
  const num = `${n.toLocaleString('en-US')}${plus ? '+' : ''}`;
  if (filtered) return n === 0 ? 'No matches' : `${num} ${n === 1 && !plus ? 'match' : 'matches'}`;
  return `${num} ${n === 1 && !plus ? 'item' : 'items'}`;
}

// pool runs fn over items with at most limit calls in flight, results in order.
async function pool<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let at = 0;
  const worker = async () => {
    while (at < items.length) {
      const i = at++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

interface CardMenuProps {
  item: TaskView;
  titleId: string;
  onUse: () => void;
  onDelete: () => void;
}

// CardMenu is a card's actions behind one button: Download, Use these
// settings and Delete (menu button pattern: arrows move, Escape closes).
function CardMenu({ item, titleId, onUse, onDelete }: CardMenuProps) {
  const [open, setOpen] = useState(false);
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!open) return;
    const root = ref.current;
    const entries = () => [...(root?.querySelectorAll<HTMLElement>('[role="menuitem"]') ?? [])];
    entries()[0]?.focus();
    const onDown = (e: MouseEvent) => {
      if (root && !root.contains(e.target as Node)) setOpen(false);
    };
    const onKey = (e: KeyboardEvent) => {
      if (!root || !root.contains(document.activeElement)) return;
      const list = entries();
      const i = list.indexOf(document.activeElement as HTMLElement);
      if (e.key === 'Escape') {
        e.preventDefault();
        setOpen(false);
        root.querySelector<HTMLElement>('button[aria-haspopup]')?.focus();
      } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        const step = e.key === 'ArrowDown' ? 1 : -1;
        list[(i + step + list.length) % list.length]?.focus();
      } else if (e.key === 'Tab') {
        setOpen(false);
      }
    };
    document.addEventListener('mousedown', onDown);
    document.addEventListener('keydown', onKey);
    return () => {
      document.removeEventListener('mousedown', onDown);
      document.removeEventListener('keydown', onKey);
    };
  }, [open]);
  return (
    <div class="card-menu" ref={ref}>
      <button
        type="button"
        class="icon-button menu-button"
        aria-label="Actions"
        aria-haspopup="menu"
        aria-expanded={open ? 'true' : 'false'}
        aria-describedby={titleId}
        onClick={() => setOpen((o) => !o)}
      >
        <span aria-hidden="true">⋯</span>
      </button>
      {open ? (
        <div class="menu" role="menu" aria-label="Actions">
          <a role="menuitem" class="menu-item" href={`${result(item.task_id)}?download=1`} download onClick={() => setOpen(false)}>
            Download
          </a>
          <button
            type="button"
            role="menuitem"
            class="menu-item"
            onClick={() => {
              setOpen(false);
              onUse();
            }}
          >
            Use these settings
          </button>
          <button
            type="button"
            role="menuitem"
            class="menu-item menu-danger"
            onClick={() => {
              setOpen(false);
              onDelete();
            }}
          >
            Delete
          </button>
        </div>
      ) : null}
    </div>
  );
}

interface CardProps {
  item: TaskView;
  modelLabel: string;
  keyLine: string;
  selecting: boolean;
  selected: boolean;
  onOpen: () => void;
  onToggle: () => void;
  onUse: () => void;
  onDelete: () => void;
}

function Card({ item, modelLabel, keyLine, selecting, selected, onOpen, onToggle, onUse, onDelete }: CardProps) {
  const [playing, setPlaying] = useState(false);
  const isVideo = item.type === 'video';
  const titleId = `card-${item.task_id}-prompt`;
  return (
    <article class={`gallery-card${selected ? ' selected' : ''}`} aria-labelledby={titleId} data-task-id={item.task_id}>
      <div class="thumb-wrap">
        <button
          type="button"
          class="thumb"
          aria-label={selecting ? `Select: ${item.prompt}` : `Open: ${item.prompt}`}
          aria-pressed={selecting ? (selected ? 'true' : 'false') : undefined}
          onClick={selecting ? onToggle : onOpen}
          onMouseEnter={() => isVideo && !selecting && setPlaying(true)}
          onMouseLeave={() => setPlaying(false)}
          onFocus={() => isVideo && !selecting && setPlaying(true)}
          onBlur={() => setPlaying(false)}
        >
          {isVideo && playing ? (
            <video src={result(item.task_id)} poster={preview(item.task_id)} autoplay muted loop playsInline preload="none" aria-hidden="true" />
          ) : (
            <img src={preview(item.task_id)} alt="" loading="lazy" decoding="async" />
          )}
          {isVideo ? (
            <span class="thumb-tag" aria-hidden="true">
              ▶ Video
            </span>
          ) : null}
        </button>
        {selecting ? (
          // the thumb button (aria-pressed) is the control; the box only shows it
          <input type="checkbox" class="card-check" checked={selected} aria-hidden="true" onChange={onToggle} tabIndex={-1} />
        ) : null}
      </div>
      <div class="card-body">
        <p class="card-prompt" id={titleId} title={item.prompt}>
          {item.prompt}
        </p>
        <p class="card-meta">
          <span class="card-model">{modelLabel}</span>
          {keyLine ? <span> · {keyLine}</span> : null}
        </p>
        <div class="card-foot">
          <time dateTime={item.created_at} title={formatTimeFull(item.created_at)}>
            {formatTime(item.created_at)}
          </time>
          {selecting ? null : <CardMenu item={item} titleId={titleId} onUse={onUse} onDelete={onDelete} />}
        </div>
      </div>
    </article>
  );
}

interface ViewProps {
  catalog: Catalog;
  task: TaskView | null; // null while it loads or when it cannot be shown
  error: unknown;
  hasPrev: boolean;
  hasNext: boolean;
  busyNext: boolean;
  useError: unknown;
  onPrev: () => void;
  onNext: () => void;
  onClose: () => void;
  onDelete: (t: TaskView) => void;
  onUse: (t: TaskView) => void;
}

// ItemView is the large view of one item.
function ItemView({ catalog, task, error, hasPrev, hasNext, busyNext, useError, onPrev, onNext, onClose, onDelete, onUse }: ViewProps) {
  const keys = useRef({ onPrev, onNext, hasPrev, hasNext });
  keys.current = { onPrev, onNext, hasPrev, hasNext };
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
      if (e.key !== 'ArrowLeft' && e.key !== 'ArrowRight') return;
      const el = e.target as HTMLElement | null;
      // a video's own controls, a field or a confirmation on top keep their arrows
      if (el?.closest?.('input, textarea, select, video, [role="menu"]')) return;
      if (document.querySelector('dialog[open].modal-small')) return;
      const k = keys.current;
      if (e.key === 'ArrowLeft' && k.hasPrev) {
        e.preventDefault();
        k.onPrev();
      } else if (e.key === 'ArrowRight' && k.hasNext) {
        e.preventDefault();
        k.onNext();
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, []);
  const model = task ? findModel(catalog, task.model) : undefined;
  const fromImage = !!task && needsImage(task.mode);
  return (
    <Modal labelledBy="view-title" onClose={onClose} class="modal-large">
      <div class="view-head">
        <h2 id="view-title">{task ? (model?.label ?? task.model) : error ? 'Not available' : 'Loading…'}</h2>
        <div class="view-nav">
          <button type="button" class="secondary small nav-prev" onClick={onPrev} disabled={!hasPrev} aria-keyshortcuts="ArrowLeft">
            Previous
          </button>
          <button
            type="button"
            class="secondary small nav-next"
            onClick={onNext}
            disabled={!hasNext || busyNext}
            aria-keyshortcuts="ArrowRight"
            aria-busy={busyNext ? 'true' : undefined}
          >
            Next
          </button>
          <button type="button" class="icon-button" aria-label="Close" onClick={onClose} data-autofocus>
            ✕
          </button>
        </div>
      </div>
      {error && !task ? <ErrorNote error={error} /> : null}
      {task ? (
        <div class="view-grid" data-task-id={task.task_id}>
          <div class="view-media">
            {task.type === 'video' ? (
              <video key={task.task_id} controls playsInline autoplay preload="metadata" poster={preview(task.task_id)} src={result(task.task_id)} />
            ) : (
              <img key={task.task_id} src={result(task.task_id)} alt={task.prompt} />
            )}
          </div>
          <div class="view-info">
            {fromImage ? (
              <figure class="view-input">
                <img key={task.task_id} src={input(task.task_id)} alt="Input image" />
                <figcaption class="muted small">Made from this image</figcaption>
              </figure>
            ) : null}
            <h3>Prompt</h3>
            <p class="prose">{task.prompt}</p>
            {task.negative_prompt ? (
              <>
                <h3>Negative prompt</h3>
                <p class="prose">{task.negative_prompt}</p>
              </>
            ) : null}
            <dl class="kv">
              <dt>Model</dt>
              <dd>{model?.label ?? task.model}</dd>
              <dt>Mode</dt>
              <dd>{modeName(task.mode)}</dd>
              {paramList(model?.params, task.params ?? undefined).map(([k, v]) => (
                <Fragment key={k}>
                  <dt>{k}</dt>
                  <dd>{v}</dd>
                </Fragment>
              ))}
              <dt>Created</dt>
              <dd>
                <time dateTime={task.created_at}>{formatTime(task.created_at)}</time>
              </dd>
            </dl>
            {useError ? <ErrorNote error={useError} /> : null}
            <div class="actions">
              <a class="button secondary" href={`${result(task.task_id)}?download=1`} download>
                Download
              </a>
              <button type="button" class="primary" onClick={() => onUse(task)}>
                Use these settings
              </button>
              <button type="button" class="danger" onClick={() => onDelete(task)}>
                Delete
              </button>
            </div>
          </div>
        </div>
      ) : !error ? (
        <div class="view-loading">
          <span class="spinner" aria-hidden="true" />
        </div>
      ) : null}
    </Modal>
  );
}

interface GalleryProps {
  catalog: Catalog;
}

interface Confirm {
  tasks: TaskView[];
  from: 'card' | 'view' | 'selection';
}

interface BatchOutcome {
  deleted: number;
  failed: { task: TaskView; error: unknown }[];
}

export function GalleryPage({ catalog }: GalleryProps) {
  const [loc, setLoc] = useState<GalleryLocation>(() => parseGalleryHash(window.location.hash));
  const filters = cleanFilters(loc.filters, catalog);
  const [search, setSearch] = useState(loc.filters.q);
  const typed = useDebounced(search, 300);

  const [items, setItems] = useState<TaskView[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [total, setTotal] = useState<{ n: number; capped: boolean } | null>(null);
  const [loaded, setLoaded] = useState(false);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [announce, setAnnounce] = useState('');

  const [viewTask, setViewTask] = useState<TaskView | null>(null);
  const [viewError, setViewError] = useState<unknown>(null);
  const [useError, setUseError] = useState<unknown>(null);
  const [busyNext, setBusyNext] = useState(false);

  const [selecting, setSelecting] = useState(false);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [confirm, setConfirm] = useState<Confirm | null>(null);
  const [deleting, setDeleting] = useState(false);
  const [deleteError, setDeleteError] = useState<unknown>(null);
  const [outcome, setOutcome] = useState<BatchOutcome | null>(null);

  const generation = useRef(0);
  const loadingRef = useRef(false);
  const pageLoad = useRef<{ cursor: string; done: Promise<TaskView[]> } | null>(null);
  const sentinel = useRef<HTMLDivElement>(null);
  const pushed = useRef(false);
  const anchor = useRef<{ id: string; top: number } | null>(null);
  const state = useRef({ items, next, loaded, filters });
  state.current = { items, next, loaded, filters };

  const filterKey = `${filters.q}\n${filters.model}\n${filters.type}`;

  // Back, Forward, a pasted link and opening an item all arrive as hashchange
  useEffect(() => {
    const onHash = () => {
      const l = parseGalleryHash(window.location.hash);
      setLoc(l);
      setSearch((s) => (s.trim() === l.filters.q.trim() ? s : l.filters.q));
    };
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);

  // replace changes the address without a new history entry
  const replace = (l: GalleryLocation) => {
    window.history.replaceState(window.history.state, '', galleryHash(l));
    setLoc(l);
  };
  const setFilters = (f: GalleryFilters) => {
    if (sameFilters(f, loc.filters)) return;
    replace({ filters: f, item: null });
  };
  useEffect(() => {
    if (typed.trim() !== loc.filters.q.trim()) setFilters({ ...loc.filters, q: typed.trim() });
  }, [typed]);

  const query = (cursor: string | null) => {
    const q = new URLSearchParams({ limit: String(pageSize) });
    if (filters.q) q.set('q', filters.q);
    if (filters.model) q.set('model', filters.model);
    if (filters.type) q.set('type', filters.type);
    if (cursor) q.set('cursor', cursor);
    else q.set('total', '1');
    return `/gallery?${q}`;
  };

  // load fetches the first page (with the count) or the page after cursor; it returns the new items.
  const load = useCallback(
    (cursor: string | null): Promise<TaskView[]> => {
      // the page after cursor is read once: a second ask (Next while the
      // scroll already asked) waits for the same answer
      if (cursor && pageLoad.current?.cursor === cursor) return pageLoad.current.done;
      if (cursor && loadingRef.current) return Promise.resolve([]);
      const done = fetchPage(cursor);
      if (cursor) pageLoad.current = { cursor, done };
      void done.finally(() => {
        if (pageLoad.current?.done === done) pageLoad.current = null;
      });
      return done;
    },
    [filterKey],
  );
  const fetchPage = async (cursor: string | null): Promise<TaskView[]> => {
    const gen = cursor ? generation.current : ++generation.current;
    loadingRef.current = true;
    setLoading(true);
    setError(null);
    try {
      const page = await request<GalleryPageAnswer>(query(cursor));
      if (gen !== generation.current) return [];
      setItems((old) => {
        const base = cursor ? old : [];
        const have = new Set(base.map((i) => i.task_id));
        return [...base, ...page.items.filter((i) => !have.has(i.task_id))];
      });
      if (!cursor) setTotal(typeof page.total === 'number' ? { n: page.total, capped: !!page.total_capped } : null);
      setNext(page.next_cursor == null || page.next_cursor === '' ? null : String(page.next_cursor));
      setLoaded(true);
      return page.items;
    } catch (e) {
      if (gen === generation.current) setError(e);
      return [];
    } finally {
      if (gen === generation.current) {
        loadingRef.current = false;
        setLoading(false);
      }
    }
  };

  useEffect(() => {
    setSelected(new Set());
    setOutcome(null);
    void load(null);
  }, [load]);

  // infinite scroll on top of the Load more button
  useEffect(() => {
    const el = sentinel.current;
    if (!el || !next || typeof IntersectionObserver === 'undefined') return;
    const io = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) void load(next);
      },
      { rootMargin: '400px' },
    );
    io.observe(el);
    return () => io.disconnect();
  }, [next, load, error]);

  // keepPlace notes where the first visible card is, so that cards added
  // above it do not move what the person is looking at (see the layout effect)
  const keepPlace = () => {
    if (window.scrollY <= 0) return;
    for (const c of document.querySelectorAll<HTMLElement>('main article[data-task-id]')) {
      const r = c.getBoundingClientRect();
      if (r.bottom > 0) {
        anchor.current = { id: c.dataset.taskId ?? '', top: r.top };
        return;
      }
    }
  };
  useLayoutEffect(() => {
    const a = anchor.current;
    if (!a) return;
    anchor.current = null;
    const el = [...document.querySelectorAll<HTMLElement>('main article[data-task-id]')].find((c) => c.dataset.taskId === a.id);
    if (!el) return;
    const moved = el.getBoundingClientRect().top - a.top;
    if (Math.abs(moved) >= 1) window.scrollBy(0, moved);
  }, [items]);

  // add puts tasks that finished after the page loaded in their place (newest first), once each
  const add = (arrived: TaskView[]) => {
    const s = state.current;
    if (!s.loaded) return;
    const last = s.items[s.items.length - 1];
    const fresh = arrived.filter(
      (t) => matches(t, s.filters, catalog) && !s.items.some((i) => i.task_id === t.task_id) && !(s.next && last && t.task_id < last.task_id),
    );
    if (fresh.length === 0) return;
    keepPlace();
    setItems((old) => {
      const all = [...old];
      for (const t of fresh) {
        if (all.some((i) => i.task_id === t.task_id)) continue;
        const at = all.findIndex((i) => i.task_id < t.task_id);
        all.splice(at < 0 ? all.length : at, 0, t);
      }
      return all;
    });
    setTotal((tt) => (tt && !tt.capped ? { n: tt.n + fresh.length, capped: false } : tt));
    setAnnounce(fresh.length === 1 ? 'A new item arrived.' : `${fresh.length} new items arrived.`);
  };
  // while the stream was down tasks may have finished unseen: read the first page again
  const catchUp = async () => {
    try {
      const page = await request<GalleryPageAnswer>(query(null));
      add(page.items);
    } catch {
      // the next event or a reload brings them
    }
  };
  useTaskEvents(
    (t) => {
      if (t.status === 'done') add([t]);
    },
    () => void catchUp(),
  );

  // the large view: an item of the list, or one read by id (a link to an item not loaded)
  const openId = loc.item;
  const inList = openId ? items.find((i) => i.task_id === openId) : undefined;
  useEffect(() => {
    setUseError(null);
    if (!openId || inList) {
      setViewError(null);
      return;
    }
    if (viewTask?.task_id === openId) return;
    let live = true;
    setViewError(null);
    request<TaskView>(`/status/${encodeURIComponent(openId)}`).then(
      (v) => {
        if (!live) return;
        if (v.status === 'done') setViewTask(v);
        else setViewError(new Error('This task has not finished, so it is not in the gallery. Its progress is on Generate or in History.'));
      },
      (e) => {
        if (!live) return;
        setViewError(e instanceof ApiError && e.code === 'task_not_found' ? new Error('This item is not in the gallery: it was deleted, or the link is wrong.') : e);
      },
    );
    return () => {
      live = false;
    };
  }, [openId, !!inList]);
  const shown = inList ?? (viewTask && viewTask.task_id === openId ? viewTask : null);
  const idx = shown ? items.findIndex((i) => i.task_id === shown.task_id) : -1;
  const hasPrev = idx > 0;
  const hasNext = idx >= 0 && (idx < items.length - 1 || !!next);

  const openItem = (id: string) => {
    pushed.current = true;
    window.location.hash = galleryHash({ filters: loc.filters, item: id });
  };
  const showItem = (id: string) => replace({ filters: loc.filters, item: id });
  const closeView = () => {
    if (pushed.current) {
      // the list is the entry before: going back keeps Back and Forward honest
      pushed.current = false;
      window.history.back();
    } else {
      replace({ filters: loc.filters, item: null });
    }
  };
  const goPrev = () => {
    if (idx > 0) showItem(items[idx - 1].task_id);
  };
  const goNext = async () => {
    if (idx < 0) return;
    if (idx < items.length - 1) {
      showItem(items[idx + 1].task_id);
      return;
    }
    if (!next) return;
    setBusyNext(true);
    try {
      const more = await load(next);
      if (more[0]) showItem(more[0].task_id);
    } finally {
      setBusyNext(false);
    }
  };

  const label = (t: TaskView) => findModel(catalog, t.model)?.label ?? t.model;

  const askDelete = (tasks: TaskView[], from: Confirm['from']) => {
    setDeleteError(null);
    setConfirm({ tasks, from });
  };

  // doDelete sends one DELETE /gallery/{id} per item (a few at a time); an
  // item already gone counts as deleted. A single failure keeps the
  // confirmation open with its error; a batch says which items failed.
  const doDelete = async () => {
    if (!confirm) return;
    const { tasks, from } = confirm;
    setDeleting(true);
    setDeleteError(null);
    const errors = await pool(tasks, deleteConcurrency, async (t) => {
      try {
        await request<void>(`/gallery/${encodeURIComponent(t.task_id)}`, { method: 'DELETE' });
        return null;
      } catch (e) {
        return e instanceof ApiError && e.code === 'task_not_found' ? null : e;
      }
    });
    setDeleting(false);
    const gone = new Set(tasks.filter((_, i) => !errors[i]).map((t) => t.task_id));
    const failed = tasks.map((task, i) => ({ task, error: errors[i] })).filter((f) => f.error);
    // the Generate page must not try to follow a task that no longer exists
    const followed = loadTaskId();
    if (followed && gone.has(followed)) saveTaskId(null);
    const before = items.findIndex((i) => gone.has(i.task_id));
    const left = items.filter((i) => !gone.has(i.task_id));
    if (gone.size > 0) {
      setItems(left);
      setTotal((tt) => (tt && !tt.capped ? { n: Math.max(0, tt.n - gone.size), capped: false } : tt));
      setSelected((old) => new Set([...old].filter((id) => !gone.has(id))));
    }
    if (from !== 'selection' && failed.length > 0) {
      setDeleteError(failed[0].error);
      return;
    }
    setConfirm(null);
    if (from === 'selection') {
      setOutcome({ deleted: gone.size, failed });
      if (failed.length === 0) setSelecting(false);
      setAnnounce(`${gone.size} ${gone.size === 1 ? 'item' : 'items'} deleted.`);
      return;
    }
    setAnnounce('Deleted.');
    if (from === 'view' && shown && gone.has(shown.task_id)) {
      // the view moves on to the next item, else the previous, else closes
      const after = left[Math.min(Math.max(idx, 0), left.length - 1)];
      if (after && idx >= 0) showItem(after.task_id);
      else closeView();
      return;
    }
    // keep keyboard users in place: focus the next card's actions
    window.setTimeout(() => {
      const cards = document.querySelectorAll<HTMLElement>('main article[data-task-id] .thumb');
      const target = cards[Math.min(Math.max(before, 0), cards.length - 1)] ?? document.getElementById('gallery-title');
      target?.focus();
    }, 0);
  };

  const useSettings = async (t: TaskView) => {
    setUseError(null);
    let image: File | null = null;
    if (needsImage(t.mode)) {
      try {
        image = await fetchInput(t.task_id);
      } catch (e) {
        setUseError(e);
        return;
      }
    }
    applyTask(catalog, t);
    setHandoffImage(image);
    window.location.hash = '#/';
  };

  const toggle = (id: string) =>
    setSelected((old) => {
      const s = new Set(old);
      if (s.has(id)) s.delete(id);
      else s.add(id);
      return s;
    });
  const selectedTasks = items.filter((i) => selected.has(i.task_id));
  const filtered = hasFilters(filters);

  return (
    <section class="page page-gallery" aria-labelledby="gallery-title">
      <div class="page-head">
        <h1 id="gallery-title" tabIndex={-1}>
          Gallery
        </h1>
      </div>
      <GalleryTabs current="gallery" />
      <div class="filters card" role="search" aria-label="Find items">
        <FilterFields
          catalog={catalog}
          idPrefix="g"
          search={search}
          model={filters.model}
          type={filters.type}
          onSearch={setSearch}
          onModel={(model) => setFilters({ ...loc.filters, q: search.trim(), model })}
          onType={(type) => setFilters({ ...loc.filters, q: search.trim(), type })}
        />
        {filtered || search.trim() ? (
          <button
            type="button"
            class="link-button"
            onClick={() => {
              setSearch('');
              setFilters(noFilters);
            }}
          >
            Clear filters
          </button>
        ) : null}
      </div>
      <div class="gallery-toolbar">
        <p class="gallery-count" role="status" aria-live="polite" aria-atomic="true">
          {loaded ? countText(total, items.length, !!next, filtered) : ''}
        </p>
        <div class="actions">
          {selecting ? (
            <>
              <span class="muted small" aria-live="polite">
                {selected.size} selected
              </span>
              <button type="button" class="danger small" disabled={selectedTasks.length === 0} onClick={() => askDelete(selectedTasks, 'selection')}>
                Delete selected
              </button>
            </>
          ) : null}
          <button
            type="button"
            class="secondary small"
            aria-pressed={selecting ? 'true' : 'false'}
            disabled={!selecting && items.length === 0}
            onClick={() => {
              setSelecting((s) => !s);
              setSelected(new Set());
              setOutcome(null);
            }}
          >
            Select
          </button>
        </div>
      </div>
      <p class="sr-only" role="status" aria-live="polite">
        {announce}
      </p>
      {outcome && outcome.failed.length > 0 ? (
        <div class="note note-error" role="alert">
          <p>
            {outcome.deleted > 0
              ? `Deleted ${outcome.deleted} of ${outcome.deleted + outcome.failed.length} items. These could not be deleted and stay selected:`
              : `None of the ${outcome.failed.length} items could be deleted:`}
          </p>
          <ul class="failed-list">
            {outcome.failed.map((f) => (
              <li key={f.task.task_id} data-task-id={f.task.task_id}>
                “{short(f.task.prompt, 60)}”: {describe(f.error).message}
              </li>
            ))}
          </ul>
        </div>
      ) : null}
      {useError && !loc.item ? <ErrorNote error={useError} /> : null}
      {error ? (
        <div class="stack">
          <ErrorNote error={error} />
          <button type="button" class="secondary" onClick={() => void load(loaded ? next : null)}>
            Try again
          </button>
        </div>
      ) : null}
      {loaded && items.length === 0 && !error && !loading ? (
        filtered ? (
          <div class="card empty">
            <p>No finished item matches these filters.</p>
          </div>
        ) : (
          <div class="card empty">
            <p>Nothing here yet. Finished images and videos appear here.</p>
            <a class="button primary" href="#/">
              Generate something
            </a>
          </div>
        )
      ) : null}
      {!loaded && loading ? (
        <div class="gallery-grid" aria-hidden="true">
          {Array.from({ length: 6 }, (_, i) => (
            <div key={i} class="gallery-card skeleton" />
          ))}
        </div>
      ) : null}
      {items.length > 0 ? (
        <div class={`gallery-grid${selecting ? ' selecting' : ''}`} aria-busy={loading && !next ? 'true' : undefined}>
          {items.map((it) => (
            <Card
              key={it.task_id}
              item={it}
              modelLabel={label(it)}
              keyLine={keyParams(findModel(catalog, it.model)?.params, it.params ?? undefined)}
              selecting={selecting}
              selected={selected.has(it.task_id)}
              onOpen={() => openItem(it.task_id)}
              onToggle={() => toggle(it.task_id)}
              onUse={() => void useSettings(it)}
              onDelete={() => askDelete([it], 'card')}
            />
          ))}
        </div>
      ) : null}
      <div ref={sentinel} class="sentinel" />
      <LoadMore shown={!!next} busy={loading} onLoad={() => void load(next)} />

      {openId ? (
        <ItemView
          catalog={catalog}
          task={shown}
          error={viewError}
          hasPrev={hasPrev}
          hasNext={hasNext}
          busyNext={busyNext}
          useError={useError}
          onPrev={goPrev}
          onNext={() => void goNext()}
          onClose={closeView}
          onDelete={(t) => askDelete([t], 'view')}
          onUse={(t) => void useSettings(t)}
        />
      ) : null}

      {confirm ? (
        <ConfirmDialog
          title={confirm.tasks.length === 1 ? 'Delete this item?' : `Delete ${confirm.tasks.length} items?`}
          text={
            confirm.tasks.length === 1
              ? `“${short(confirm.tasks[0].prompt)}” and its files are removed for good.`
              : `The ${confirm.tasks.length} selected items and their files are removed for good.`
          }
          confirmLabel="Delete"
          busy={deleting}
          error={deleteError}
          onConfirm={() => void doDelete()}
          onCancel={() => setConfirm(null)}
        />
      ) : null}
    </section>
  );
}
