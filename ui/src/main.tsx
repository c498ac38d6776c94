// Entry point: session bootstrap, hash routing and the page shell.
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Catalog } from './api';
import { ApiError, ensureSession, loadCatalog } from './api';
import { AdminPage } from './admin';
import { GalleryPage } from './gallery';
import { GeneratePage } from './generate';
import { HistoryPage } from './history';
import { SignInScreen, takeLinkProblem, useSignIn } from './signin';
import { ErrorNote } from './widgets';

type Route = 'generate' | 'gallery' | 'history' | 'admin' | 'missing';

const routes: { route: Route; hash: string; label: string }[] = [
  { route: 'generate', hash: '#/', label: 'Generate' },
  { route: 'gallery', hash: '#/gallery', label: 'Gallery' },
  { route: 'admin', hash: '#/admin', label: 'Admin' },
];

function parseRoute(hash: string): Route {
  // a page's own state may follow: #/gallery/<task id>?q=... (galleryurl.ts)
  const path = hash.replace(/^#/, '').split('?')[0].replace(/\/+$/, '') || '/';
  if (path === '/' || path === '') return 'generate';
  if (path === '/gallery' || path.startsWith('/gallery/')) return 'gallery';
  if (path === '/history') return 'history';
  if (path === '/admin') return 'admin';
  return 'missing';
}

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const onHash = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  return route;
}

function useCatalog() {
  const [catalog, setCatalog] = useState<Catalog | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    let live = true;
    setError(null);
    loadCatalog().then(
      (c) => live && setCatalog(c),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [attempt]);
  return { catalog, error, retry: () => setAttempt((n) => n + 1) };
}

function App() {
  const route = useRoute();
  const { catalog, error: catalogError, retry } = useCatalog();
  const [sessionError, setSessionError] = useState<unknown>(null);
  // 'checking' until a live session is found or made; the sign-in screen
  // takes over when none can be had without the person (useSignIn).
  const [session, setSession] = useState<'checking' | 'ok' | 'error'>('checking');
  const signIn = useSignIn();
  const [linkProblem] = useState(takeLinkProblem);
  const first = useRef(true);

  useEffect(() => {
    ensureSession().then(
      () => setSession('ok'),
      (e) => {
        if (e instanceof ApiError && e.status === 401) return; // the sign-in screen shows
        setSessionError(e);
        setSession('error');
      },
    );
  }, []);

  const showSignIn = signIn.needed && route !== 'admin' && route !== 'missing';

  useEffect(() => {
    const label = showSignIn ? 'Sign in' : route === 'history' ? 'History' : (routes.find((r) => r.route === route)?.label ?? 'Not found');
    document.title = `${label} · Gooni`;
    if (first.current) {
      first.current = false;
      return;
    }
    // after a navigation, put keyboard and screen reader users at the new page's heading
    window.setTimeout(() => document.querySelector<HTMLElement>('main h1')?.focus({ preventScroll: false }), 0);
    window.scrollTo(0, 0);
  }, [route, showSignIn]);

  let page;
  if (showSignIn) {
    page = <SignInScreen state={signIn} linkProblem={linkProblem} />;
  } else if (route === 'admin') {
    page = <AdminPage />;
  } else if (route === 'missing') {
    page = (
      <section class="page">
        <h1 tabIndex={-1}>Page not found</h1>
        <p>
          There is nothing at this address. <a href="#/">Go to Generate</a>.
        </p>
      </section>
    );
  } else if (!catalog || session === 'checking') {
    page = (
      <section class="page">
        <h1 tabIndex={-1}>{route === 'gallery' ? 'Gallery' : route === 'history' ? 'History' : 'Generate'}</h1>
        {catalogError ? (
          <div class="stack">
            <ErrorNote error={catalogError} />
            <button type="button" class="secondary" onClick={retry}>
              Try again
            </button>
          </div>
        ) : (
          <p class="muted">Loading models…</p>
        )}
      </section>
    );
  } else if (route === 'gallery') {
    page = <GalleryPage catalog={catalog} />;
  } else if (route === 'history') {
    page = <HistoryPage catalog={catalog} />;
  } else {
    page = <GeneratePage catalog={catalog} />;
  }

  return (
    <>
      <a class="skip" href="#main" onClick={(e) => {
        e.preventDefault();
        document.querySelector<HTMLElement>('main h1')?.focus();
      }}>
        Skip to content
      </a>
      <header class="topbar">
        <div class="topbar-inner">
          <a class="brand" href="#/" aria-label="Gooni home">
            <span class="brand-mark" aria-hidden="true" />
            <span class="brand-name">Gooni</span>
          </a>
          <nav aria-label="Main">
            <ul>
              {routes.map((r) => (
                <li key={r.route}>
                  <a href={r.hash} aria-current={route === r.route || (route === 'history' && r.route === 'gallery') ? 'page' : undefined}>
                    {r.label}
                  </a>
                </li>
              ))}
            </ul>
          </nav>
        </div>
      </header>
      <main id="main">
        {sessionError ? (
          <div class="banner">
            <ErrorNote error={sessionError} />
          </div>
        ) : null}
        {linkProblem && !showSignIn && session === 'ok' ? (
          <div class="banner">
            <p class="note" role="status">
              {linkProblem} This browser is still signed in, so you can go on.
            </p>
          </div>
        ) : null}
        {page}
      </main>
    </>
  );
}

const root = document.getElementById('app');
if (root) render(<App />, root);
