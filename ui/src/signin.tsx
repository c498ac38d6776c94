// The sign-in screen (CONTRACT sections 16 and 20): in invite and key
// modes, a person without a session is told how to get in. It never asks
// for an API key.
import { useEffect, useState } from 'preact/hooks';
import { signInEvent } from './api';

// Why an invite link did not sign someone in (GET /auth/invite answers
// ?signin=invalid&reason=...).
const linkReasons: Record<string, string> = {
  used_up: 'This sign-in link has already been used as many times as it allows.',
  revoked: 'This sign-in link was revoked by an admin.',
  expired: 'This sign-in link has expired.',
  unknown: 'This sign-in link is not valid. Check that you opened the whole link.',
};

export interface SignInState {
  needed: boolean;
  // 'session_expired' when a session ended, 'session_required' when there was none
  code?: string;
  mode?: string;
}

// linkProblem reads (once, at load) what an invite link that failed
// said, and takes it out of the address bar so a reload does not repeat it.
export function takeLinkProblem(): string | null {
  const q = new URLSearchParams(window.location.search);
  if (q.get('signin') !== 'invalid') return null;
  const reason = q.get('reason') ?? 'unknown';
  try {
    window.history.replaceState(null, '', window.location.pathname + window.location.hash);
  } catch {
    // the address keeps its query; nothing else depends on it
  }
  return linkReasons[reason] ?? linkReasons.unknown;
}

// useSignIn follows the api's "sign in needed" signal.
export function useSignIn(): SignInState {
  const [state, setState] = useState<SignInState>({ needed: false });
  useEffect(() => {
    const on = (e: Event) => {
      const d = (e as CustomEvent<{ code?: string; mode?: string }>).detail ?? {};
      setState({ needed: true, code: d.code, mode: typeof d.mode === 'string' ? d.mode : undefined });
    };
    window.addEventListener(signInEvent, on);
    return () => window.removeEventListener(signInEvent, on);
  }, []);
  return state;
}

export function SignInScreen({ state, linkProblem }: { state: SignInState; linkProblem: string | null }) {
  const ended = state.code === 'session_expired';
  return (
    <section class="page page-signin" aria-labelledby="signin-page-title">
      <div class="card signin-card">
        <h1 id="signin-page-title" tabIndex={-1}>
          Sign in
        </h1>
        {linkProblem ? (
          <div class="note note-error" role="alert">
            <p>{linkProblem}</p>
            <p class="hint">Ask the person who runs this Gooni for a new link.</p>
          </div>
        ) : null}
        {ended && !linkProblem ? (
          <p class="note" role="status">
            Your session has ended.
          </p>
        ) : null}
        <p>This Gooni is private: only people who were given access can use it.</p>
        <p>
          <strong>To get in, open the sign-in link</strong> that the person who runs this Gooni sent you. Opening it signs
          this browser in. If you have no link, or it no longer works, ask them for a new one.
        </p>
        {state.mode === 'key' ? (
          <p class="muted">
            Programs that call the API use an API key instead; this page does not take one.
          </p>
        ) : null}
        <p class="muted small">
          Run this Gooni yourself? Sign in on the <a href="#/admin">Admin</a> page and create a link under Invites.
        </p>
      </div>
    </section>
  );
}
