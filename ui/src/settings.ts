// The Generate form's remembered state (localStorage), shared with the
// gallery's "Use these settings".
import type { Catalog, Model, Param, TaskView } from './api';
import { findModel } from './api';

export type ParamValue = string | boolean;

export interface Draft {
  model: string;
  modes: Record<string, string>;
  params: Record<string, Record<string, ParamValue>>;
  prompt: string;
  negative: string;
}

const draftKey = 'gooni.generate.v1';
const taskKey = 'gooni.task.v1';

function readJSON(key: string): unknown {
  try {
    const raw = localStorage.getItem(key);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

export function defaultValue(p: Param): ParamValue {
  if (p.kind === 'bool') return p.default === true;
  if (p.kind === 'enum') return String(p.default ?? p.options?.[0] ?? '');
  if (p.default === undefined || p.default === null) return p.min !== undefined ? String(p.min) : '0';
  return String(p.default);
}

function coerce(p: Param, v: unknown): ParamValue {
  if (p.kind === 'bool') return typeof v === 'boolean' ? v : defaultValue(p);
  if (p.kind === 'enum') return typeof v === 'string' && (p.options ?? []).includes(v) ? v : defaultValue(p);
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return v;
  return defaultValue(p);
}

export function paramValues(model: Model, stored: Record<string, unknown> | undefined): Record<string, ParamValue> {
  const out: Record<string, ParamValue> = {};
  for (const p of model.params) out[p.name] = coerce(p, stored?.[p.name]);
  return out;
}

export function defaultParams(model: Model): Record<string, ParamValue> {
  return paramValues(model, undefined);
}

// loadDraft reads the remembered form and drops anything the catalog no longer has.
export function loadDraft(catalog: Catalog): Draft {
  const raw = (readJSON(draftKey) ?? {}) as Partial<Draft>;
  const first = catalog.models[0];
  const model = (typeof raw.model === 'string' && findModel(catalog, raw.model)) || first;
  const modes: Record<string, string> = {};
  const params: Record<string, Record<string, ParamValue>> = {};
  for (const m of catalog.models) {
    const mode = raw.modes?.[m.id];
    if (typeof mode === 'string' && m.modes.includes(mode)) modes[m.id] = mode;
    if (raw.params?.[m.id]) params[m.id] = paramValues(m, raw.params[m.id]);
  }
  return {
    model: model ? model.id : '',
    modes,
    params,
    prompt: typeof raw.prompt === 'string' ? raw.prompt : '',
    negative: typeof raw.negative === 'string' ? raw.negative : '',
  };
}

export function saveDraft(d: Draft): void {
  try {
    localStorage.setItem(draftKey, JSON.stringify(d));
  } catch {
    // storage full or disabled: the form still works, it just is not remembered
  }
}

// applyTask makes a finished task's settings the remembered form.
export function applyTask(catalog: Catalog, task: TaskView): void {
  const d = loadDraft(catalog);
  const m = findModel(catalog, task.model);
  if (!m) return;
  d.model = m.id;
  if (m.modes.includes(task.mode)) d.modes[m.id] = task.mode;
  d.params[m.id] = paramValues(m, task.params ?? undefined);
  d.prompt = task.prompt ?? '';
  d.negative = m.negative_prompt ? task.negative_prompt ?? '' : '';
  saveDraft(d);
}

export function loadTaskId(): string | null {
  try {
    return localStorage.getItem(taskKey);
  } catch {
    return null;
  }
}

export function saveTaskId(id: string | null): void {
  try {
    if (id) localStorage.setItem(taskKey, id);
    else localStorage.removeItem(taskKey);
  } catch {
    // see saveDraft
  }
}

// The input image "Use these settings" hands to the Generate page (a File
// cannot live in localStorage): set by the Gallery just before it navigates,
// taken once by the Generate page as it opens.
let handoffImage: File | null = null;

export function setHandoffImage(f: File | null): void {
  handoffImage = f;
}

export function takeHandoffImage(): File | null {
  const f = handoffImage;
  handoffImage = null;
  return f;
}
