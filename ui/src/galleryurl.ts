// The Gallery's address, so a reload or a shared link shows the same thing:
// #/gallery[/<task id>][?q=<words>&model=<id>&type=<type>]. The filters are
// the q, model and type of GET /gallery; the task id opens its large view.
// Pure functions: no DOM.

export interface GalleryFilters {
  q: string;
  model: string;
  type: string;
}

export interface GalleryLocation {
  filters: GalleryFilters;
  item: string | null; // the task shown in the large view
}

export const noFilters: GalleryFilters = { q: '', model: '', type: '' };

// maxQuery mirrors the server's limit on q (200 characters).
const maxQuery = 200;

// parseGalleryHash reads a location.hash; anything unreadable counts as absent.
export function parseGalleryHash(hash: string): GalleryLocation {
  const raw = hash.replace(/^#/, '');
  const at = raw.indexOf('?');
  const path = (at < 0 ? raw : raw.slice(0, at)).replace(/\/+$/, '');
  const query = new URLSearchParams(at < 0 ? '' : raw.slice(at + 1));
  let item: string | null = null;
  if (path.startsWith('/gallery/')) {
    try {
      item = decodeURIComponent(path.slice('/gallery/'.length)) || null;
    } catch {
      item = null;
    }
  }
  return {
    filters: {
      q: (query.get('q') ?? '').slice(0, maxQuery),
      model: query.get('model') ?? '',
      type: query.get('type') ?? '',
    },
    item,
  };
}

// galleryHash writes a location as a hash ("#/gallery/ID?q=fox&model=flux");
// empty filters are left out.
export function galleryHash(loc: GalleryLocation): string {
  const q = new URLSearchParams();
  if (loc.filters.q.trim()) q.set('q', loc.filters.q.trim());
  if (loc.filters.model) q.set('model', loc.filters.model);
  if (loc.filters.type) q.set('type', loc.filters.type);
  const query = q.toString();
  return `#/gallery${loc.item ? `/${encodeURIComponent(loc.item)}` : ''}${query ? `?${query}` : ''}`;
}

export function sameFilters(a: GalleryFilters, b: GalleryFilters): boolean {
  return a.q.trim() === b.q.trim() && a.model === b.model && a.type === b.type;
}

export function hasFilters(f: GalleryFilters): boolean {
  return !!(f.q.trim() || f.model || f.type);
}

// words splits text the way the server's prompt index does (SQLite FTS5
// unicode61, remove_diacritics 2): runs of letters and digits, lower-cased,
// accents removed.
export function words(text: string): string[] {
  return text
    .normalize('NFD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((w) => w !== '');
}

// promptMatches is the q filter on one prompt: every word of q is a whole
// word of the prompt. The Gallery uses it for tasks that arrive live.
export function promptMatches(prompt: string, q: string): boolean {
  const want = words(q);
  if (want.length === 0) return true;
  const have = new Set(words(prompt));
  return want.every((w) => have.has(w));
}
