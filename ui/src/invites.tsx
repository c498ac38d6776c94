// The Admin page's Invites panel (CONTRACT sections 16 and 20): make a
// sign-in link, copy it once, list the links, revoke one.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import type { Invite } from './api';
import { ApiError, request } from './api';
import { formatTime, formatTimeFull } from './format';
import { Badge, ConfirmDialog, ErrorNote } from './widgets';

const lifetimes: [string, string][] = [
  ['1h', '1 hour'],
  ['24h', '1 day'],
  ['72h', '3 days'],
  ['168h', '1 week'],
  ['720h', '30 days'],
];

const statusText: Record<string, string> = {
  active: 'active',
  used_up: 'used up',
  expired: 'expired',
  revoked: 'revoked',
};

function tone(status: string): string {
  return status === 'active' ? 'ok' : status === 'revoked' ? 'bad' : 'off';
}

interface Props {
  guard: (e: unknown) => boolean;
  // refresh counts the console's 3-second refreshes
  refresh: number;
  onChanged: () => void;
}

export function InvitesPanel({ guard, refresh, onChanged }: Props) {
  const [items, setItems] = useState<Invite[] | null>(null);
  const [listError, setListError] = useState<unknown>(null);
  const [label, setLabel] = useState('');
  const [uses, setUses] = useState('1');
  const [expires, setExpires] = useState('72h');
  const [usesError, setUsesError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<unknown>(null);
  const [made, setMade] = useState<Invite | null>(null);
  const [copied, setCopied] = useState<string | null>(null);
  const [confirm, setConfirm] = useState<Invite | null>(null);
  const [revoking, setRevoking] = useState(false);
  const [revokeError, setRevokeError] = useState<unknown>(null);
  const linkRef = useRef<HTMLInputElement>(null);

  const load = useCallback(async () => {
    try {
      const res = await request<{ items: Invite[] }>('/admin/invites');
      setItems(res.items ?? []);
      setListError(null);
    } catch (e) {
      if (!guard(e)) setListError(e);
    }
  }, [guard]);

  useEffect(() => {
    void load();
  }, [load]);
  // Uses are spent by others: look again every 30 s, not on every 3-second
  // tick, so the console stays well inside the admin limit of 120 a minute.
  useEffect(() => {
    if (refresh > 0 && refresh % 10 === 0) void load();
  }, [refresh]);

  const create = async (e: Event) => {
    e.preventDefault();
    const n = Number(uses);
    if (!Number.isInteger(n) || n < 1 || n > 1000) {
      setUsesError('Uses is a whole number from 1 to 1000.');
      return;
    }
    setUsesError(null);
    setBusy(true);
    setErr(null);
    try {
      const inv = await request<Invite>('/admin/invites', { method: 'POST', body: { label: label.trim(), uses: n, expires_in: expires } });
      setMade(inv);
      setCopied(null);
      setLabel('');
      setUses('1');
      void load();
      onChanged();
      window.setTimeout(() => linkRef.current?.select(), 0);
    } catch (x) {
      if (guard(x)) return;
      if (x instanceof ApiError && x.details?.field === 'uses') setUsesError(x.message);
      setErr(x);
    } finally {
      setBusy(false);
    }
  };

  // copy uses the clipboard API where the page may (HTTPS or localhost), and
  // otherwise selects the link and asks the browser to copy the selection.
  const copy = async () => {
    if (!made?.url) return;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(made.url);
      } else {
        linkRef.current?.select();
        if (!document.execCommand('copy')) throw new Error('copy refused');
      }
      setCopied('Copied. Send it to the person it is for.');
    } catch {
      linkRef.current?.select();
      setCopied('This browser would not copy it: the link is selected, copy it by hand.');
    }
  };

  return (
    <section class="card" aria-labelledby="invites-title">
      <div class="section-head">
        <h2 id="invites-title">Invites</h2>
        <span class="muted small">Sign-in links for people (needed in invite mode)</span>
      </div>
      <form class="invite-form" onSubmit={create} noValidate aria-label="Create invite">
        <div class="field">
          <label for="invite-label">Label</label>
          <input id="invite-label" type="text" maxLength={100} placeholder="who it is for" value={label}
            onInput={(e) => setLabel((e.currentTarget as HTMLInputElement).value)} />
        </div>
        <div class={`field${usesError ? ' has-error' : ''}`}>
          <label for="invite-uses">Uses</label>
          <input id="invite-uses" type="number" min={1} max={1000} step={1} inputMode="numeric" value={uses}
            aria-invalid={usesError ? 'true' : undefined} aria-describedby={usesError ? 'invite-uses-error' : 'invite-uses-hint'}
            onInput={(e) => setUses((e.currentTarget as HTMLInputElement).value)} />
          {usesError ? (
            <p class="field-error" id="invite-uses-error">
              {usesError}
            </p>
          ) : (
            <p class="hint" id="invite-uses-hint">
              Browsers it can sign in.
            </p>
          )}
        </div>
        <div class="field">
          <label for="invite-expires">Expires in</label>
          <select id="invite-expires" value={expires} onChange={(e) => setExpires((e.currentTarget as HTMLSelectElement).value)}>
            {lifetimes.map(([v, l]) => (
              <option key={v} value={v}>
                {l}
              </option>
            ))}
          </select>
        </div>
        <div class="invite-submit">
          <button type="submit" class="primary" disabled={busy}>
            Create invite
          </button>
        </div>
      </form>
      {err ? <ErrorNote error={err} /> : null}
      {made?.url ? (
        <div class="invite-made" role="region" aria-label="New invite link">
          <p>
            <strong>Copy this link now: it is shown only once.</strong> It signs in {made.uses === 1 ? 'one browser' : `up to ${made.uses} browsers`} until{' '}
            {formatTimeFull(made.expires_at)}.
          </p>
          <div class="invite-link">
            <input ref={linkRef} type="text" readOnly value={made.url} aria-label="Invite link" onFocus={(e) => (e.currentTarget as HTMLInputElement).select()} />
            <button type="button" class="primary" onClick={() => void copy()}>
              Copy link
            </button>
            <button type="button" class="secondary" onClick={() => setMade(null)}>
              Done
            </button>
          </div>
          <p class="muted small" role="status" aria-live="polite">
            {copied ?? ''}
          </p>
        </div>
      ) : null}
      {listError ? <ErrorNote error={listError} /> : null}
      {items === null ? (
        <p class="muted">Loading…</p>
      ) : items.length === 0 ? (
        <p class="empty">No invites yet.</p>
      ) : (
        <ul class="invite-list" aria-label="Invites">
          {items.map((inv) => (
            <li key={inv.id} data-invite-id={inv.id}>
              <div class="invite-main">
                <span class="invite-name" id={`invite-${inv.id}-name`}>
                  {inv.label || `Invite #${inv.id}`}
                </span>
                <Badge tone={tone(inv.status)}>{statusText[inv.status] ?? inv.status}</Badge>
              </div>
              <div class="invite-meta muted small">
                <span>
                  {inv.uses_left} of {inv.uses} {inv.uses === 1 ? 'use' : 'uses'} left
                </span>
                <span title={formatTimeFull(inv.expires_at)}>
                  {inv.status === 'expired' ? 'expired' : 'expires'} {formatTimeFull(inv.expires_at)}
                </span>
                {inv.last_used_at ? <span title={formatTimeFull(inv.last_used_at)}>last used {formatTime(inv.last_used_at)}</span> : null}
              </div>
              {inv.status === 'active' ? (
                <button type="button" class="danger small" aria-describedby={`invite-${inv.id}-name`}
                  onClick={() => {
                    setRevokeError(null);
                    setConfirm(inv);
                  }}>
                  Revoke
                </button>
              ) : null}
            </li>
          ))}
        </ul>
      )}
      {confirm ? (
        <ConfirmDialog
          title={`Revoke ${confirm.label || `invite #${confirm.id}`}?`}
          text="The link stops working at once. Browsers it already signed in stay signed in until their session ends."
          confirmLabel="Revoke"
          busy={revoking}
          error={revokeError}
          onCancel={() => setConfirm(null)}
          onConfirm={async () => {
            setRevoking(true);
            try {
              await request<void>(`/admin/invites/${confirm.id}`, { method: 'DELETE' });
              setConfirm(null);
              void load();
              onChanged();
            } catch (x) {
              if (!guard(x)) setRevokeError(x);
            } finally {
              setRevoking(false);
            }
          }}
        />
      ) : null}
    </section>
  );
}
