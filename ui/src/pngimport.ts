// Reads the generation settings a PNG carries (CONTRACT section 13): Gooni's
// `gooni` chunk first, else AUTOMATIC1111's `parameters`, else ComfyUI's
// `prompt` graph, and maps them onto the catalog, saying in plain words what
// could not be mapped. Pure functions: no DOM, no storage, no network.
//
// The input is not trusted: files over MAX_PNG_BYTES are refused, a text chunk
// over MAX_TEXT_CHUNK (stored or inflated) is skipped, as is a text chunk whose
// CRC does not match (a damaged chunk is refused, not guessed at; the CRCs of
// image chunks are not checked, as their bytes are not used); a truncated file
// gives what was read before the cut; invalid UTF-8 is replaced and noted.
import type { Catalog, Model, Param } from './api';

export const MAX_PNG_BYTES = 64 * 1024 * 1024;
export const MAX_TEXT_CHUNK = 4 * 1024 * 1024;
export const MAX_TEXT_TOTAL = 16 * 1024 * 1024;
const MAX_NOTES_LISTED = 12; // unmapped items named one by one in a note
const MAX_GRAPH_DEPTH = 32; // links followed through a ComfyUI graph

export type ImportSource = 'gooni' | 'parameters' | 'comfyui';
export type ImportValue = number | string | boolean;

// PngImport is what a PNG says about how it was made, mapped onto the catalog.
export interface PngImport {
  source: ImportSource | null; // null: no settings Gooni can read
  model: string | null; // a catalog model id; null when the file's model is unknown
  model_name: string | null; // the model as the file names it
  mode: string | null;
  prompt: string;
  negative_prompt: string;
  params: Record<string, ImportValue>; // catalog param names; checked against the model when it is known
  task_id: string | null; // from a `gooni` chunk
  notes: string[]; // human-readable: what was not read, mapped or kept
}

// ---------------------------------------------------------------- PNG chunks

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

let crcTable: Uint32Array | null = null;

function crc32(bytes: Uint8Array, start: number, end: number): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function u32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}

function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
  return s;
}

function utf8(b: Uint8Array, what: string, notes: string[]): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(b);
  } catch {
    notes.push(`The ${what} chunk is not valid UTF-8; unreadable characters were replaced.`);
    return new TextDecoder('utf-8').decode(b);
  }
}

// inflate undoes zlib compression with the platform's decompressor, stopping
// at limit bytes of output; it returns null and a note on any failure.
async function inflate(data: Uint8Array, limit: number, what: string, notes: string[]): Promise<Uint8Array | null> {
  if (typeof DecompressionStream === 'undefined') {
    notes.push(`The ${what} chunk is compressed and this browser cannot decompress it.`);
    return null;
  }
  const input = new ReadableStream<BufferSource>({
    start(c) {
      c.enqueue(new Uint8Array(data)); // a copy: BufferSource wants a plain ArrayBuffer
      c.close();
    },
  });
  const reader = input.pipeThrough(new DecompressionStream('deflate')).getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      n += value.length;
      if (n > limit) {
        await reader.cancel().catch(() => undefined);
        notes.push(`The ${what} chunk decompresses to more than ${limit} bytes; it was not read.`);
        return null;
      }
      parts.push(value);
    }
  } catch {
    notes.push(`The ${what} chunk's compressed text is damaged; it was not read.`);
    return null;
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// PngTexts is the text chunks of a PNG by keyword (first chunk wins) and notes on what was skipped.
export interface PngTexts {
  png: boolean; // the file starts with the PNG signature
  texts: Map<string, string>;
  notes: string[];
}

// readPngTexts returns the tEXt, zTXt and iTXt texts of a PNG. It never throws.
export async function readPngTexts(bytes: Uint8Array): Promise<PngTexts> {
  const texts = new Map<string, string>();
  const notes: string[] = [];
  const result = { png: false, texts, notes };
  if (bytes.length > MAX_PNG_BYTES) {
    notes.push(`The file is larger than ${MAX_PNG_BYTES / (1024 * 1024)} MiB; it was not read.`);
    return result;
  }
  if (bytes.length < 8 || SIGNATURE.some((v, i) => bytes[i] !== v)) {
    notes.push('This is not a PNG file.');
    return result;
  }
  result.png = true;
  let total = 0;
  let off = 8;
  for (;;) {
    if (off === bytes.length) {
      notes.push('The file ends without its IEND chunk; it may be cut short.');
      break;
    }
    if (off + 12 > bytes.length) {
      notes.push('The file is cut short inside a chunk.');
      break;
    }
    const length = u32(bytes, off);
    const type = String.fromCharCode(bytes[off + 4], bytes[off + 5], bytes[off + 6], bytes[off + 7]);
    if (!/^[A-Za-z]{4}$/.test(type) || length > 0x7fffffff) {
      notes.push(`The file is damaged at byte ${off}; nothing after it was read.`);
      break;
    }
    const dataStart = off + 8;
    const dataEnd = dataStart + length;
    if (dataEnd + 4 > bytes.length) {
      notes.push(`The file is cut short inside its ${type} chunk.`);
      break;
    }
    off = dataEnd + 4;
    if (type === 'IEND') break;
    if (type !== 'tEXt' && type !== 'zTXt' && type !== 'iTXt') continue;

    const data = bytes.subarray(dataStart, dataEnd);
    const nul = data.indexOf(0);
    const keyword = nul > 0 && nul <= 79 ? latin1(data.subarray(0, nul)) : '';
    const what = keyword ? `“${keyword}”` : type;
    if (length > MAX_TEXT_CHUNK) {
      notes.push(`The ${what} chunk is larger than ${MAX_TEXT_CHUNK} bytes; it was not read.`);
      continue;
    }
    if (crc32(bytes, dataStart - 4, dataEnd) !== u32(bytes, dataEnd)) {
      notes.push(`The ${what} chunk is damaged (its checksum does not match); it was not used.`);
      continue;
    }
    if (!keyword) {
      notes.push(`A ${type} chunk has no valid keyword; it was skipped.`);
      continue;
    }
    if (texts.has(keyword)) continue;
    const rest = data.subarray(nul + 1);
    let text: string | null = null;
    if (type === 'tEXt') {
      text = latin1(rest);
    } else if (type === 'zTXt') {
      if (rest[0] !== 0) {
        notes.push(`The ${what} chunk uses an unknown compression; it was not read.`);
        continue;
      }
      const raw = await inflate(rest.subarray(1), MAX_TEXT_CHUNK, what, notes);
      if (raw) text = latin1(raw);
    } else {
      // iTXt: compression flag, method, language tag NUL, translated keyword NUL, text
      const lang = rest.indexOf(0, 2);
      const tkey = lang < 0 ? -1 : rest.indexOf(0, lang + 1);
      if (rest.length < 2 || tkey < 0 || rest[0] > 1 || (rest[0] === 1 && rest[1] !== 0)) {
        notes.push(`The ${what} chunk is malformed; it was not read.`);
        continue;
      }
      let body: Uint8Array | null = rest.subarray(tkey + 1);
      if (rest[0] === 1) body = await inflate(body, MAX_TEXT_CHUNK, what, notes);
      if (body) text = utf8(body, what, notes);
    }
    if (text === null) continue;
    total += keyword.length + text.length;
    if (total > MAX_TEXT_TOTAL) {
      notes.push(`The file's text chunks hold more than ${MAX_TEXT_TOTAL} bytes; the rest were not read.`);
      break;
    }
    texts.set(keyword, text);
  }
  return result;
}

// ------------------------------------------------------ AUTOMATIC1111 infotext

// A1111 is an infotext split the way AUTOMATIC1111's parse_generation_parameters splits it.
export interface A1111 {
  prompt: string;
  negative_prompt: string;
  fields: Array<[string, string]>; // the key/value line, in order, values unquoted
}

// A key ("CFG scale", "Model hash") and a value that is either JSON-quoted or runs to the next comma.
const paramPattern = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;

function keyValues(line: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const m of line.matchAll(paramPattern)) {
    let v = m[2];
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) {
      try {
        const u: unknown = JSON.parse(v);
        if (typeof u === 'string') v = u;
      } catch {
        // not JSON after all: keep it as written
      }
    }
    out.push([m[1], v]);
  }
  return out;
}

// parseA1111 reads the `parameters` text: prompt lines, then "Negative prompt:"
// lines, then a last line of key: value pairs (taken as such only when it has
// at least three, as A1111 does). Lines are trimmed, as A1111 does.
export function parseA1111(text: string): A1111 {
  const lines = text.trim().split('\n');
  let last = lines.pop() ?? '';
  let fields = keyValues(last);
  if (fields.length < 3) {
    lines.push(last);
    last = '';
    fields = [];
  }
  const prompt: string[] = [];
  const negative: string[] = [];
  let inNegative = false;
  for (let line of lines) {
    line = line.trim();
    if (line.startsWith('Negative prompt:')) {
      inNegative = true;
      line = line.slice('Negative prompt:'.length).trim();
    }
    (inNegative ? negative : prompt).push(line);
  }
  return { prompt: prompt.join('\n'), negative_prompt: negative.join('\n'), fields };
}

function short(v: string, max = 60): string {
  const s = v.replace(/\s+/g, ' ').trim();
  return s.length > max ? s.slice(0, max - 1) + '…' : s;
}

function listNote(prefix: string, items: string[]): string {
  const shown = items.slice(0, MAX_NOTES_LISTED).join('; ');
  const more = items.length > MAX_NOTES_LISTED ? `; and ${items.length - MAX_NOTES_LISTED} more` : '';
  return `${prefix}: ${shown}${more}.`;
}

interface Found {
  model_name: string | null;
  mode: string | null;
  prompt: string;
  negative_prompt: string;
  params: Record<string, ImportValue>;
  task_id: string | null;
  notes: string[];
}

function fromA1111(text: string): Found {
  const p = parseA1111(text);
  const found: Found = { model_name: null, mode: 't2i', prompt: p.prompt, negative_prompt: p.negative_prompt, params: {}, task_id: null, notes: [] };
  const unused: string[] = [];
  const num = (key: string, v: string, name: string, integer: boolean) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) found.notes.push(`${key} “${short(v)}” is not ${integer ? 'a whole number' : 'a number'}; it was ignored.`);
    else found.params[name] = n;
  };
  for (const [key, v] of p.fields) {
    switch (key) {
      case 'Steps':
        num(key, v, 'steps', true);
        break;
      case 'CFG scale':
        num(key, v, 'guidance', false);
        break;
      case 'Seed':
        num(key, v, 'seed', true);
        break;
      case 'Size': {
        const m = /^(\d+)x(\d+)$/.exec(v.trim());
        if (m) {
          found.params.width = Number(m[1]);
          found.params.height = Number(m[2]);
        } else found.notes.push(`Size “${short(v)}” is not WIDTHxHEIGHT; it was ignored.`);
        break;
      }
      case 'Model':
        found.model_name = v.trim() || null;
        break;
      case 'Sampler':
        found.notes.push(`Sampler “${short(v)}”: Gooni does not offer a choice of sampler; the model's own was used.`);
        break;
      default:
        unused.push(`${key}: ${short(v)}`);
    }
  }
  if (unused.length) found.notes.push(listNote('Not used (Gooni has no such setting)', unused));
  if (!p.fields.length) found.notes.push('The parameters text has no Steps/Seed/Size line; only the prompt was read.');
  return found;
}

// ------------------------------------------------------------- ComfyUI graph

type Graph = Record<string, { class_type: string; inputs: Record<string, unknown> }>;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// A link in ComfyUI's API format is [source node id, output index].
function linkTarget(v: unknown): string | null {
  if (Array.isArray(v) && v.length === 2 && (typeof v[0] === 'string' || typeof v[0] === 'number') && typeof v[1] === 'number') return String(v[0]);
  return null;
}

function toGraph(v: unknown): Graph | null {
  if (!isRecord(v)) return null;
  const g: Graph = {};
  for (const [id, node] of Object.entries(v)) {
    if (isRecord(node) && typeof node.class_type === 'string' && isRecord(node.inputs)) g[id] = { class_type: node.class_type, inputs: node.inputs };
  }
  return Object.keys(g).length ? g : null;
}

// follow walks links from node id through the first of the given inputs that
// is a link, until accept(node) says stop; bounded and cycle-safe. The nodes
// passed on the way are added to path.
function follow(g: Graph, id: string | null, through: string[], accept: (n: Graph[string]) => boolean, path: Graph[string][] = []): { id: string; node: Graph[string] } | null {
  const visited = new Set<string>();
  while (id !== null && !visited.has(id) && visited.size < MAX_GRAPH_DEPTH) {
    visited.add(id);
    const node = g[id];
    if (!node) return null;
    if (accept(node)) return { id, node };
    path.push(node);
    let next: string | null = null;
    for (const name of through) {
      next = linkTarget(node.inputs[name]);
      if (next !== null) break;
    }
    id = next;
  }
  return null;
}

// stringInput reads a string input, following one link to a primitive node (value, text, string).
function stringInput(g: Graph, node: Graph[string], name: string): string | null {
  const v = node.inputs[name];
  if (typeof v === 'string') return v;
  const src = linkTarget(v);
  const n = src !== null ? g[src] : undefined;
  if (!n) return null;
  for (const k of ['value', 'text', 'string', 'String']) if (typeof n.inputs[k] === 'string') return n.inputs[k] as string;
  return null;
}

function numberInput(g: Graph, node: Graph[string], names: string[]): number | null {
  for (const name of names) {
    const v = node.inputs[name];
    if (typeof v === 'number' && Number.isFinite(v)) return v;
    const src = linkTarget(v);
    const n = src !== null ? g[src] : undefined;
    if (n) for (const k of ['value', 'seed', 'noise_seed', 'int', 'float', 'number']) {
      const w = n.inputs[k];
      if (typeof w === 'number' && Number.isFinite(w)) return w;
    }
  }
  return null;
}

const SAMPLERS = ['KSampler', 'KSamplerAdvanced'];
const BENIGN_CONDITIONING = ['FluxGuidance', 'ConditioningSetTimestepRange'];

// conditioningText follows a sampler's positive or negative input to the text encoder it comes from.
function conditioningText(g: Graph, from: unknown, side: 'positive' | 'negative', found: Found): { text: string | null; guidance: number | null } {
  const path: Graph[string][] = [];
  const hit = follow(g, linkTarget(from), ['conditioning', 'conditioning_1', 'conditioning_to', side], (n) => 'text' in n.inputs || 'text_g' in n.inputs, path);
  // FluxGuidance on the way carries FLUX's distilled guidance
  const flux = path.find((n) => n.class_type === 'FluxGuidance' && typeof n.inputs.guidance === 'number');
  const guidance = flux ? (flux.inputs.guidance as number) : null;
  const odd = [...new Set(path.map((n) => n.class_type).filter((c) => !BENIGN_CONDITIONING.includes(c)))];
  if (odd.length) found.notes.push(`The ${side} prompt passes through ${odd.join(', ')}; Gooni uses only its text.`);
  if (!hit) return { text: null, guidance };
  const text = stringInput(g, hit.node, 'text') ?? stringInput(g, hit.node, 'text_g');
  if ('text_g' in hit.node.inputs && !('text' in hit.node.inputs)) {
    const l = stringInput(g, hit.node, 'text_l');
    if (l && l !== text) found.notes.push(`The ${side} prompt has a separate text_l (“${short(l)}”); only text_g was used.`);
  }
  if (text === null) found.notes.push(`The ${side} prompt's text comes from a node Gooni cannot read.`);
  return { text, guidance };
}

function fromComfy(json: string, notes: string[]): Found | null {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    notes.push('The ComfyUI prompt chunk is not valid JSON; it was not read.');
    return null;
  }
  const g = toGraph(raw);
  if (!g) {
    notes.push('The ComfyUI prompt chunk holds no nodes Gooni can read.');
    return null;
  }
  const found: Found = { model_name: null, mode: 't2i', prompt: '', negative_prompt: '', params: {}, task_id: null, notes: [] };
  const byId = (a: string, b: string) => (Number(a) - Number(b)) || (a < b ? -1 : a > b ? 1 : 0);
  const samplers = Object.keys(g).filter((id) => SAMPLERS.includes(g[id].class_type)).sort(byId);
  if (!samplers.length) {
    const others = [...new Set(Object.values(g).map((n) => n.class_type).filter((c) => /sampler/i.test(c)))];
    notes.push(`The ComfyUI graph has no KSampler node${others.length ? ` (it uses ${others.slice(0, 3).join(', ')})` : ''}; its settings were not read.`);
    return null;
  }
  // the first pass of a hires-fix graph starts from an empty latent (a size
  // and no latent input of its own): prefer it
  const fromEmpty = samplers.find((id) => {
    const l = linkTarget(g[id].inputs.latent_image);
    const n = l !== null ? g[l] : undefined;
    return n !== undefined && typeof n.inputs.width === 'number' && !Object.values(n.inputs).some((v) => linkTarget(v) !== null);
  });
  const sid = fromEmpty ?? samplers[0];
  const s = g[sid].inputs;
  if (samplers.length > 1) found.notes.push(`The graph has ${samplers.length} samplers; settings were taken from node ${sid} (${g[sid].class_type}).`);

  const pos = conditioningText(g, s.positive, 'positive', found);
  const neg = conditioningText(g, s.negative, 'negative', found);
  found.prompt = pos.text ?? '';
  found.negative_prompt = neg.text ?? '';

  const seed = numberInput(g, g[sid], ['seed', 'noise_seed']);
  if (seed !== null) found.params.seed = seed;
  const steps = numberInput(g, g[sid], ['steps']);
  if (steps !== null) found.params.steps = steps;
  const cfg = numberInput(g, g[sid], ['cfg']);
  if (pos.guidance !== null) {
    found.params.guidance = pos.guidance;
    if (cfg !== null && cfg !== 1) found.notes.push(`Guidance was taken from FluxGuidance (${pos.guidance}); the sampler's cfg ${cfg} was not used.`);
  } else if (cfg !== null) found.params.guidance = cfg;

  const sampler = typeof s.sampler_name === 'string' ? s.sampler_name : null;
  const scheduler = typeof s.scheduler === 'string' ? s.scheduler : null;
  if (sampler || scheduler) {
    const what = [sampler && `sampler “${short(sampler)}”`, scheduler && `scheduler “${short(scheduler)}”`].filter(Boolean).join(', ');
    found.notes.push(`ComfyUI ${what}: Gooni does not offer a choice of sampler; the model's own was used.`);
  }
  if (typeof s.denoise === 'number' && s.denoise !== 1) found.notes.push(`Denoise ${s.denoise} was not used (Gooni starts from an empty image).`);

  const latent = follow(g, linkTarget(s.latent_image), ['samples', 'latent'], (n) => typeof n.inputs.width === 'number' && typeof n.inputs.height === 'number');
  if (latent) {
    found.params.width = latent.node.inputs.width as number;
    found.params.height = latent.node.inputs.height as number;
  } else found.notes.push('The image size could not be read from the graph (the latent does not come from an empty latent image).');

  const loras: string[] = [];
  const loader = follow(g, linkTarget(s.model), ['model'], (n) => {
    if (typeof n.inputs.lora_name === 'string') loras.push(short(n.inputs.lora_name));
    return typeof n.inputs.ckpt_name === 'string' || typeof n.inputs.unet_name === 'string';
  });
  if (loader) found.model_name = (stringInput(g, loader.node, 'ckpt_name') ?? stringInput(g, loader.node, 'unet_name')) || null;
  else found.notes.push('The model loader could not be found in the graph.');
  if (loras.length) found.notes.push(listNote('LoRAs are not applied by Gooni', loras));
  return found;
}

// -------------------------------------------------------------- Gooni's JSON

function fromGooni(json: string, notes: string[]): Found | null {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    notes.push('The gooni chunk is not valid JSON; it was not used.');
    return null;
  }
  if (!isRecord(raw) || typeof raw.model !== 'string' || typeof raw.prompt !== 'string') {
    notes.push('The gooni chunk does not hold Gooni settings; it was not used.');
    return null;
  }
  const found: Found = {
    model_name: raw.model,
    mode: typeof raw.mode === 'string' ? raw.mode : null,
    prompt: raw.prompt,
    negative_prompt: typeof raw.negative_prompt === 'string' ? raw.negative_prompt : '',
    params: {},
    task_id: typeof raw.task_id === 'string' ? raw.task_id : null,
    notes: [],
  };
  if (isRecord(raw.params)) {
    for (const [k, v] of Object.entries(raw.params)) {
      if ((typeof v === 'number' && Number.isFinite(v)) || typeof v === 'string' || typeof v === 'boolean') found.params[k] = v;
      else found.notes.push(`The setting ${short(k, 40)} has a value Gooni cannot use; it was left out.`);
    }
  }
  return found;
}

// ----------------------------------------------------------- catalog mapping

const normalize = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, '');

// resolveModel finds the catalog model a file names: its id or an alias
// (ignoring case, folders and a file extension), else the one model whose id
// or alias the name contains (a checkpoint file name such as
// "ponyDiffusionV6XL.safetensors"), noted as a guess.
export function resolveModel(catalog: Catalog, name: string, notes: string[]): Model | null {
  const base = name.trim().split(/[\\/]/).pop()!.replace(/\.(safetensors|ckpt|pt|pth|bin|gguf|sft)$/i, '');
  const exact = catalog.models.find((m) => [m.id, ...(m.aliases ?? [])].some((a) => a.toLowerCase() === base.toLowerCase()));
  if (exact) return exact;
  const n = normalize(base);
  const hits = catalog.models.filter((m) => [m.id, ...(m.aliases ?? [])].some((a) => normalize(a).length >= 4 && n.includes(normalize(a))));
  if (hits.length === 1) {
    notes.push(`The model “${short(name)}” was taken to be ${hits[0].label} from its name; check it.`);
    return hits[0];
  }
  notes.push(`The model “${short(name)}” is not one Gooni offers; choose a model.`);
  return null;
}

function range(p: Param): string {
  return `${p.min ?? '−∞'}–${p.max ?? '∞'}`;
}

// fitParams keeps the values model accepts: unknown names and wrong kinds are
// dropped, numbers are brought into [min, max] and onto the step (a seed out
// of range is dropped rather than changed), each change noted.
export function fitParams(model: Model, values: Record<string, ImportValue>, notes: string[]): Record<string, ImportValue> {
  const out: Record<string, ImportValue> = {};
  const unknown: string[] = [];
  for (const [name, v] of Object.entries(values)) {
    const p = model.params.find((q) => q.name === name);
    if (!p) {
      unknown.push(`${name} ${short(String(v), 30)}`);
      continue;
    }
    const label = p.label || p.name;
    if (p.kind === 'bool') {
      if (typeof v === 'boolean') out[name] = v;
      else notes.push(`${label} “${short(String(v))}” is not on/off; it was left at its default.`);
      continue;
    }
    if (p.kind === 'enum') {
      if (typeof v === 'string' && (p.options ?? []).includes(v)) out[name] = v;
      else notes.push(`${label} “${short(String(v))}” is not one of ${model.label}'s choices; it was left at its default.`);
      continue;
    }
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
    if (!Number.isFinite(n)) {
      notes.push(`${label} “${short(String(v))}” is not a number; it was left at its default.`);
      continue;
    }
    const low = p.min ?? -Infinity;
    const high = p.max ?? Infinity;
    if (name === 'seed' && (n < low || n > high || !Number.isInteger(n))) {
      notes.push(`Seed ${n} is outside the range ${range(p)} of ${model.label}; a random seed will be used.`);
      continue;
    }
    let fit = Math.min(high, Math.max(low, n));
    if (p.kind === 'int') fit = Math.round(fit);
    if (p.step && p.min !== undefined) {
      fit = p.min + Math.round((fit - p.min) / p.step) * p.step;
      if (fit > high) fit -= p.step;
      fit = Number(fit.toPrecision(12)); // 0.1-sized steps: drop binary noise
    }
    if (fit !== n) {
      const why = n < low || n > high ? `is outside the range ${range(p)} of ${model.label}` : p.kind === 'int' && !Number.isInteger(n) ? 'is not a whole number' : `is not a multiple of ${p.step}`;
      notes.push(`${label} ${n} ${why}; it was set to ${fit}.`);
    }
    out[name] = fit;
  }
  if (unknown.length) notes.push(listNote(`Not settings of ${model.label}`, unknown));
  return out;
}

// importTexts maps a PNG's texts (as readPngTexts gives them) onto catalog.
export function importTexts(texts: Map<string, string>, catalog: Catalog): PngImport {
  const notes: string[] = [];
  let source: ImportSource | null = null;
  let found: Found | null = null;
  const gooni = texts.get('gooni');
  if (gooni !== undefined) {
    found = fromGooni(gooni, notes);
    if (found) source = 'gooni';
  }
  const parameters = texts.get('parameters');
  if (!found && parameters !== undefined) {
    found = fromA1111(parameters);
    source = 'parameters';
  }
  const prompt = texts.get('prompt');
  if (!found && prompt !== undefined) {
    found = fromComfy(prompt, notes);
    if (found) source = 'comfyui';
  }
  if (!found) {
    if (!notes.length) {
      notes.push(
        texts.has('workflow')
          ? 'The file has a ComfyUI workflow but no prompt graph; Gooni reads only the prompt graph.'
          : 'The file carries no generation settings Gooni can read (no gooni, parameters or ComfyUI prompt chunk).',
      );
    }
    return { source: null, model: null, model_name: null, mode: null, prompt: '', negative_prompt: '', params: {}, task_id: null, notes };
  }
  notes.push(...found.notes);

  const model = found.model_name !== null ? resolveModel(catalog, found.model_name, notes) : null;
  if (found.model_name === null) notes.push('The file does not name a model; choose one.');
  let params = found.params;
  let mode = found.mode;
  let negative = found.negative_prompt;
  if (model) {
    params = fitParams(model, params, notes);
    if (mode === 'i2v') notes.push('This was made from an input image, which the PNG does not carry; add one.');
    if (mode !== null && !model.modes.includes(mode)) {
      notes.push(`${model.label} does not offer the mode “${short(mode)}”.`);
      mode = null;
    }
    if (model.negative_prompt === false && negative.trim() !== '') {
      notes.push(`${model.label} takes no negative prompt; “${short(negative)}” was left out.`);
      negative = '';
    }
  }
  return { source, model: model ? model.id : null, model_name: found.model_name, mode, prompt: found.prompt, negative_prompt: negative, params, task_id: found.task_id, notes };
}

// importPng reads a PNG's bytes and maps its settings onto catalog. It never throws.
export async function importPng(bytes: Uint8Array, catalog: Catalog): Promise<PngImport> {
  const read = await readPngTexts(bytes);
  const result = importTexts(read.texts, catalog);
  if (!read.png) result.notes = read.notes; // "not a PNG" says it all
  else result.notes = [...read.notes, ...result.notes];
  return result;
}
