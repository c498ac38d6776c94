// What the Admin page explains: what a workspace is and what each field of
// an account means, and, for a failed health check, the likely fix.
import { base } from './api';

// The likely fix for each reason the dispatcher gives a failed health check
// (internal/dispatch: classify, clientErrorReason, probe), matched on words
// of the reason so that a reworded prefix still finds it.
const fixes: [RegExp, string][] = [
  [/does not resolve/, 'deploy the workspace first, or check its name and base URL'],
  [/rejected the credentials/, 'check the proxy key and proxy secret (Edit the account)'],
  [/refused the connection/, 'nothing answers at that address: deploy the workspace, or check the base URL'],
  [/unreachable/, 'check the base URL, and that this server can reach that network'],
  [/did not answer in time/, 'a cold start can take minutes: wait, then run the health check again'],
  [/not a valid target/, 'the base URL must be https://, or http:// to a loopback address'],
  [/credentials could not be opened/, 'the account key changed: enter the credentials again (Edit)'],
  [/server error/, "look at the workspace's own logs, then deploy it again"],
  [/busy/, 'the workspace is busy: run the health check again in a minute'],
  [/reports status/, 'the workspace is up but not ready yet: wait, or look at its logs'],
  [/dropped the connection|unusable answer/, 'check that the base URL points at a Gooni workspace (or a ComfyUI for driver comfyui)'],
];

// healthAdvice words a failed check once: the reason without the
// "health check failed:" prefix the status already says, then the fix.
export function healthAdvice(reason: string): string {
  const why = reason.replace(/^\s*health check failed:\s*/i, '').trim() || 'the health check failed';
  const fix = fixes.find(([re]) => re.test(why))?.[1];
  return fix ? `${why}: ${fix}.` : `${why}.`;
}

export const driverLabels: Record<string, string> = {
  gooni: 'gooni: a Gooni workspace on Modal',
  comfyui: 'comfyui: a ComfyUI server',
};

// The fields a driver's credentials take, as [name, label].
export function credentialFields(driver: string): [string, string][] {
  if (driver === 'comfyui') {
    return [
      ['bearer_token', 'Bearer token'],
      ['proxy_key', 'Proxy key'],
      ['proxy_secret', 'Proxy secret'],
    ];
  }
  return [
    ['token_id', 'Token ID'],
    ['token_secret', 'Token secret'],
    ['proxy_key', 'Proxy key'],
    ['proxy_secret', 'Proxy secret'],
  ];
}

// WorkspaceGuide is the short "what is a workspace" text, open until the
// first account exists.
export function WorkspaceGuide({ open }: { open: boolean }) {
  return (
    <section class="card guide" aria-labelledby="guide-title">
      <details open={open}>
        <summary>
          <h2 id="guide-title">What is a workspace?</h2>
        </summary>
        <div class="guide-body">
          <p>
            Gooni does not generate anything itself: it queues each task and hands it to a <strong>workspace</strong>, a GPU
            server that runs the models. A <strong>worker account</strong> is how Gooni reaches one workspace. Generation needs
            at least one account whose status is <em>ready</em>.
          </p>
          <dl class="guide-terms">
            <dt>Driver</dt>
            <dd>
              <code>gooni</code>: the Gooni workspace app on Modal (in <code>modal/</code>), which Gooni can deploy for you.{' '}
              <code>comfyui</code>: a ComfyUI server you run yourself; give its base URL.
            </dd>
            <dt>Workspace</dt>
            <dd>
              Your Modal workspace name. Gooni derives the address from it (for example{' '}
              <code>https://NAME--gooni-inference.modal.run</code>) unless you give a base URL.
            </dd>
            <dt>Token ID and token secret</dt>
            <dd>
              A Modal API token (Modal: Settings, API tokens), used only by Deploy to run <code>modal deploy</code>. Limit it to
              this workspace.
            </dd>
            <dt>Proxy key and proxy secret</dt>
            <dd>
              A Modal proxy auth token (<code>wk-…</code> / <code>ws-…</code>; Modal: Settings, Proxy auth tokens). Gooni sends
              them with every call, and the workspace refuses anyone without them.
            </dd>
            <dt>Bearer token</dt>
            <dd>For a ComfyUI behind a proxy that checks <code>Authorization: Bearer …</code>.</dd>
          </dl>
          <p>
            <strong>The usual order:</strong> add the account, <em>Deploy</em> it (driver gooni), then <em>Health check</em>: a
            healthy workspace becomes ready and lists the models it serves.
          </p>
          <p class="guide-links">
            Step by step: <a href={base('/docs/modal/README.md')} target="_blank" rel="noopener">modal/README.md</a> (a
            workspace on Modal) and <a href={base('/docs/WORKSPACES.md')} target="_blank" rel="noopener">docs/WORKSPACES.md</a>{' '}
            (a ComfyUI box behind Gooni), served by this server for the version it runs.
          </p>
        </div>
      </details>
    </section>
  );
}
