// The Gallery page: finished tasks newest first, a large view, delete with
// confirmation, and "Use these settings" back into the Generate form.
import { Fragment } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import type { Catalog, Page, TaskView } from './api';
import { base, findModel, request } from './api';
import { formatTime, formatTimeFull, keyParams, modeName, paramList } from './format';
import { applyTask, loadTaskId, saveTaskId } from './settings';
import { ConfirmDialog, ErrorNote, Modal } from './widgets';
import { GalleryTabs } from './history';

const pageSize = 24;

function preview(id: string) {
  return base(`/preview/${encodeURIComponent(id)}`);
}
function result(id: string) {
  return base(`/results/${encodeURIComponent(id)}`);
}

interface CardProps {
  item: TaskView;
  modelLabel: string;
  keyLine: string;
  onOpen: () => void;
  onDelete: () => void;
}

function Card({ item, modelLabel, keyLine, onOpen, onDelete }: CardProps) {
  const [playing, setPlaying] = useState(false);
  const isVideo = item.type === 'video';
  const titleId = `card-${item.task_id}-prompt`;
  return (
    <article class="gallery-card" aria-labelledby={titleId} data-task-id={item.task_id}>
      <button
        type="button"
        class="thumb"
        aria-label={`Open: ${item.prompt}`}
        onClick={onOpen}
        onMouseEnter={() => isVideo && setPlaying(true)}
        onMouseLeave={() => setPlaying(false)}
        onFocus={() => isVideo && setPlaying(true)}
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
          <button type="button" class="danger small" onClick={onDelete} aria-describedby={titleId}>
            Delete
          </button>
        </div>
      </div>
    </article>
  );
}

interface GalleryProps {
  catalog: Catalog;
}

export function GalleryPage({ catalog }: GalleryProps) {
  const [items, setItems] = useState<TaskView[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [loaded, setLoaded] = useState(false);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [open, setOpen] = useState<TaskView | null>(null);
  const [confirm, setConfirm] = useState<TaskView | null>(null);
  const [deleting, setDeleting] = useState(false);
  const [deleteError, setDeleteError] = useState<unknown>(null);
  const [announce, setAnnounce] = useState('');
  const loadingRef = useRef(false);
  const sentinel = useRef<HTMLDivElement>(null);

  const load = useCallback(async (cursor: string | null) => {
    if (loadingRef.current) return;
    loadingRef.current = true;
    setLoading(true);
    setError(null);
    try {
      const q = new URLSearchParams({ limit: String(pageSize) });
      if (cursor) q.set('cursor', cursor);
      const page = await request<Page<TaskView>>(`/gallery?${q}`);
      setItems((old) => {
        const base = cursor ? old : [];
        const have = new Set(base.map((i) => i.task_id));
        return [...base, ...page.items.filter((i) => !have.has(i.task_id))];
      });
      setNext(page.next_cursor == null || page.next_cursor === '' ? null : String(page.next_cursor));
      setLoaded(true);
    } catch (e) {
      setError(e);
    } finally {
      loadingRef.current = false;
      setLoading(false);
    }
  }, []);

  useEffect(() => {
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

  const label = (t: TaskView) => findModel(catalog, t.model)?.label ?? t.model;

  const doDelete = async () => {
    if (!confirm) return;
    setDeleting(true);
    setDeleteError(null);
    const id = confirm.task_id;
    try {
      await request<void>(`/gallery/${encodeURIComponent(id)}`, { method: 'DELETE' });
      // the Generate page must not try to follow a task that no longer exists
      if (loadTaskId() === id) saveTaskId(null);
      const idx = items.findIndex((i) => i.task_id === id);
      setItems((old) => old.filter((i) => i.task_id !== id));
      setConfirm(null);
      if (open?.task_id === id) setOpen(null);
      setAnnounce('Deleted.');
      // keep keyboard users in place: focus the next card's open button
      window.setTimeout(() => {
        const cards = document.querySelectorAll<HTMLElement>('.gallery-card .thumb');
        const target = cards[Math.min(idx, cards.length - 1)] ?? document.getElementById('gallery-title');
        target?.focus();
      }, 0);
    } catch (e) {
      setDeleteError(e);
    } finally {
      setDeleting(false);
    }
  };

  const useSettings = (t: TaskView) => {
    applyTask(catalog, t);
    setOpen(null);
    window.location.hash = '#/';
  };

  const openModel = open ? findModel(catalog, open.model) : undefined;

  return (
    <section class="page page-gallery" aria-labelledby="gallery-title">
      <div class="page-head">
        <h1 id="gallery-title" tabIndex={-1}>
          Gallery
        </h1>
        {loaded ? (
          <span class="muted small">
            {items.length} {items.length === 1 ? 'item' : 'items'}
            {next ? ' so far' : ''}
          </span>
        ) : null}
      </div>
      <GalleryTabs current="gallery" />
      <p class="sr-only" role="status" aria-live="polite">
        {announce}
      </p>
      {error ? (
        <div class="stack">
          <ErrorNote error={error} />
          <button type="button" class="secondary" onClick={() => void load(loaded ? next : null)}>
            Try again
          </button>
        </div>
      ) : null}
      {loaded && items.length === 0 && !error ? (
        <div class="card empty">
          <p>Nothing here yet. Finished images and videos appear here.</p>
          <a class="button primary" href="#/">
            Generate something
          </a>
        </div>
      ) : null}
      {!loaded && loading ? (
        <div class="gallery-grid" aria-hidden="true">
          {Array.from({ length: 6 }, (_, i) => (
            <div key={i} class="gallery-card skeleton" />
          ))}
        </div>
      ) : null}
      {items.length > 0 ? (
        <div class="gallery-grid">
          {items.map((it) => (
            <Card
              key={it.task_id}
              item={it}
              modelLabel={label(it)}
              keyLine={keyParams(findModel(catalog, it.model)?.params, it.params ?? undefined)}
              onOpen={() => setOpen(it)}
              onDelete={() => {
                setDeleteError(null);
                setConfirm(it);
              }}
            />
          ))}
        </div>
      ) : null}
      <div ref={sentinel} class="sentinel" />
      {next ? (
        <div class="load-more">
          <button type="button" class="secondary" onClick={() => void load(next)} disabled={loading} aria-busy={loading ? 'true' : undefined}>
            Load more
          </button>
        </div>
      ) : null}

      {open ? (
        <Modal labelledBy="view-title" onClose={() => setOpen(null)} class="modal-large">
          <div class="view-head">
            <h2 id="view-title">{openModel?.label ?? open.model}</h2>
            <button type="button" class="icon-button" aria-label="Close" onClick={() => setOpen(null)} data-autofocus>
              ✕
            </button>
          </div>
          <div class="view-grid">
            <div class="view-media">
              {open.type === 'video' ? (
                <video controls playsInline autoplay preload="metadata" poster={preview(open.task_id)} src={result(open.task_id)} />
              ) : (
                <img src={result(open.task_id)} alt={open.prompt} />
              )}
            </div>
            <div class="view-info">
              <h3>Prompt</h3>
              <p class="prose">{open.prompt}</p>
              {open.negative_prompt ? (
                <>
                  <h3>Negative prompt</h3>
                  <p class="prose">{open.negative_prompt}</p>
                </>
              ) : null}
              <dl class="kv">
                <dt>Model</dt>
                <dd>{openModel?.label ?? open.model}</dd>
                <dt>Mode</dt>
                <dd>{modeName(open.mode)}</dd>
                {paramList(openModel?.params, open.params ?? undefined).map(([k, v]) => (
                  <Fragment key={k}>
                    <dt>{k}</dt>
                    <dd>{v}</dd>
                  </Fragment>
                ))}
                <dt>Created</dt>
                <dd>
                  <time dateTime={open.created_at}>{formatTime(open.created_at)}</time>
                </dd>
              </dl>
              <div class="actions">
                <a class="button secondary" href={`${result(open.task_id)}?download=1`} download>
                  Download
                </a>
                <button type="button" class="primary" onClick={() => useSettings(open)}>
                  Use these settings
                </button>
              </div>
            </div>
          </div>
        </Modal>
      ) : null}

      {confirm ? (
        <ConfirmDialog
          title="Delete this item?"
          text={`“${confirm.prompt.length > 80 ? `${confirm.prompt.slice(0, 80)}…` : confirm.prompt}” and its files are removed for good.`}
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
