// Display formatting shared by the pages; all times are shown in local time.

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function formatTimeFull(iso: string | null | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleString(undefined, { dateStyle: 'full', timeStyle: 'long' });
}

export function formatBytes(n: number | undefined | null): string {
  if (n == null || !Number.isFinite(n)) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

export function formatDuration(seconds: number | undefined | null): string {
  if (seconds == null || !Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

const modeNames: Record<string, string> = {
  t2v: 'Text to video',
  i2v: 'Image to video',
  t2i: 'Text to image',
  i2i: 'Image to image',
};

export function modeName(mode: string): string {
  const name = modeNames[mode];
  return name ? `${name} (${mode})` : mode;
}

// needsImage: modes whose input is an image (i2v, i2i, and any future i2*).
export function needsImage(mode: string): boolean {
  return mode.startsWith('i2');
}

export function capitalize(s: string): string {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

export function formatValue(v: unknown): string {
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  if (v == null) return '—';
  return String(v);
}

interface LabelledParam {
  name: string;
  label: string;
}

// paramList pairs a task's params with the catalog's labels, in catalog order;
// params the catalog no longer knows come last under their own names.
export function paramList(catalogParams: LabelledParam[] | undefined, params: Record<string, unknown> | undefined): [string, string][] {
  const out: [string, string][] = [];
  const seen = new Set<string>();
  const given = params ?? {};
  for (const p of catalogParams ?? []) {
    if (p.name in given) {
      out.push([p.label, formatValue(given[p.name])]);
      seen.add(p.name);
    }
  }
  for (const [k, v] of Object.entries(given)) {
    if (!seen.has(k)) out.push([k, formatValue(v)]);
  }
  return out;
}

// keyParams is the short line under a card: size first when there is one.
export function keyParams(catalogParams: LabelledParam[] | undefined, params: Record<string, unknown> | undefined, limit = 3): string {
  const given = params ?? {};
  const parts: string[] = [];
  const skip = new Set<string>();
  if (typeof given.width === 'number' && typeof given.height === 'number') {
    parts.push(`${given.width}×${given.height}`);
    skip.add('width').add('height');
  }
  for (const p of catalogParams ?? []) {
    if (parts.length >= limit) break;
    if (skip.has(p.name) || p.name === 'seed' || !(p.name in given)) continue;
    parts.push(`${p.label} ${formatValue(given[p.name])}`);
  }
  return parts.join(' · ');
}
