// Small building blocks used by more than one page.
import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import { describe } from './api';

interface ModalProps {
  labelledBy: string;
  onClose: () => void;
  children: ComponentChildren;
  class?: string;
}

// Modal is a native <dialog> opened with showModal(): the page behind is inert,
// Escape closes it, and focus returns to where it was.
export function Modal({ labelledBy, onClose, children, class: cls }: ModalProps) {
  const ref = useRef<HTMLDialogElement>(null);
  const closeRef = useRef(onClose);
  closeRef.current = onClose;
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    const previous = document.activeElement as HTMLElement | null;
    if (!d.open) d.showModal();
    const first = d.querySelector<HTMLElement>('[data-autofocus]');
    first?.focus();
    return () => {
      if (d.open) d.close();
      if (previous && document.contains(previous)) previous.focus();
    };
  }, []);
  return (
    <dialog
      ref={ref}
      class={cls ? `modal ${cls}` : 'modal'}
      aria-labelledby={labelledBy}
      onCancel={(e) => {
        e.preventDefault();
        closeRef.current();
      }}
      onClick={(e) => {
        // a click on the backdrop lands on the dialog element itself
        if (e.target === ref.current) closeRef.current();
      }}
    >
      <div class="modal-body">{children}</div>
    </dialog>
  );
}

interface ConfirmProps {
  title: string;
  text: string;
  confirmLabel: string;
  busy?: boolean;
  error?: unknown;
  onConfirm: () => void;
  onCancel: () => void;
}

export function ConfirmDialog({ title, text, confirmLabel, busy, error, onConfirm, onCancel }: ConfirmProps) {
  return (
    <Modal labelledBy="confirm-title" onClose={onCancel} class="modal-small">
      <h2 id="confirm-title">{title}</h2>
      <p id="confirm-text">{text}</p>
      {error ? <ErrorNote error={error} /> : null}
      <div class="actions">
        <button type="button" class="danger" onClick={onConfirm} disabled={busy} aria-describedby="confirm-text">
          {confirmLabel}
        </button>
        <button type="button" class="secondary" onClick={onCancel} data-autofocus>
          Cancel
        </button>
      </div>
    </Modal>
  );
}

export function ErrorNote({ error, id }: { error: unknown; id?: string }) {
  const p = describe(error);
  return (
    <div class="note note-error" role="alert" id={id}>
      <p>{p.message ? p.message[0].toUpperCase() + p.message.slice(1) : 'Something went wrong.'}</p>
      {p.hint ? <p class="hint">{p.hint}</p> : null}
    </div>
  );
}

// LoadMore is a list's "Load more" button, shown while a next page exists;
// busy disables it while a page loads.
export function LoadMore({ shown, busy, onLoad }: { shown: boolean; busy?: boolean; onLoad: () => void }) {
  if (!shown) return null;
  return (
    <div class="load-more">
      <button type="button" class="secondary" onClick={onLoad} disabled={busy} aria-busy={busy ? 'true' : undefined}>
        Load more
      </button>
    </div>
  );
}

export function Badge({ tone, children }: { tone: string; children: ComponentChildren }) {
  return <span class={`badge badge-${tone}`}>{children}</span>;
}

// useVisibleInterval runs fn every ms while the tab is visible, and at once
// when it becomes visible again.
export function useVisibleInterval(fn: () => void, ms: number) {
  const fnRef = useRef(fn);
  fnRef.current = fn;
  useEffect(() => {
    let timer = 0;
    const tick = () => {
      if (document.visibilityState === 'visible') fnRef.current();
    };
    timer = window.setInterval(tick, ms);
    const onVisible = () => {
      if (document.visibilityState === 'visible') fnRef.current();
    };
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      window.clearInterval(timer);
      document.removeEventListener('visibilitychange', onVisible);
    };
  }, [ms]);
}
