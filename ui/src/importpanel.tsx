// "Load settings from image" on the Generate page: a picked PNG, or one
// dropped anywhere on the page, fills the form from its `gooni` chunk, else
// `parameters` (AUTOMATIC1111), else a ComfyUI `prompt` graph (CONTRACT
// section 13, read by pngimport.ts); what could not be mapped is listed in
// a notice. Nothing is sent: the person checks the form and presses Generate.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Catalog, Model } from './api';
import { findModel } from './api';
import type { ImportSource, PngImport } from './pngimport';
import { MAX_PNG_BYTES, fitParams, importPng } from './pngimport';
import type { ParamValue } from './settings';
import { paramValues } from './settings';

// Imported is what the form takes from a file.
export interface Imported {
  model: string; // a catalog id: the file's model, else the one already chosen
  mode: string | null;
  prompt: string;
  negative: string;
  params: Record<string, ParamValue>; // every param of model: the file's values, defaults for the rest
}

const sourceNames: Record<ImportSource, string> = {
  gooni: 'Gooni settings',
  parameters: 'AUTOMATIC1111 parameters',
  comfyui: 'a ComfyUI prompt graph',
};

interface Notice {
  file: string;
  source: ImportSource | null;
  notes: string[];
}

// toForm maps an import onto the catalog; a file whose model Gooni does not
// offer keeps the chosen model, its settings fitted to it (and noted).
export function toForm(catalog: Catalog, current: Model, r: PngImport): { form: Imported; notes: string[] } {
  const notes = [...r.notes];
  const known = r.model ? findModel(catalog, r.model) : undefined;
  const model = known ?? current;
  let params = r.params;
  if (!known) {
    params = fitParams(model, params, notes);
    notes.push(`Its settings were applied to ${model.label}, the model already chosen.`);
  }
  const mode = r.mode && model.modes.includes(r.mode) ? r.mode : null;
  let negative = r.negative_prompt;
  if (!model.negative_prompt && negative.trim() !== '') {
    if (known) negative = ''; // importTexts noted it already
    else {
      notes.push(`${model.label} takes no negative prompt; it was left out.`);
      negative = '';
    }
  }
  return { form: { model: model.id, mode, prompt: r.prompt, negative, params: paramValues(model, params) }, notes };
}

function isFileDrag(e: DragEvent): boolean {
  return !!e.dataTransfer && [...e.dataTransfer.types].includes('Files');
}

// a drop on a file field (the i2v Image) is that field's, not an import
function onFileField(e: Event): boolean {
  const t = e.target as HTMLElement | null;
  return !!t?.closest?.('input[type="file"]');
}

interface Props {
  catalog: Catalog;
  current: Model;
  onImport: (f: Imported) => void;
}

export function ImportSettings({ catalog, current, onImport }: Props) {
  const [notice, setNotice] = useState<Notice | null>(null);
  const [reading, setReading] = useState(false);
  const [dragging, setDragging] = useState(false);
  const latest = useRef({ catalog, current, onImport });
  latest.current = { catalog, current, onImport };
  const inputRef = useRef<HTMLInputElement>(null);

  const load = async (file: File) => {
    if (file.size > MAX_PNG_BYTES) {
      setNotice({ file: file.name, source: null, notes: [`The file is larger than ${MAX_PNG_BYTES / (1024 * 1024)} MiB; it was not read.`] });
      return;
    }
    setReading(true);
    try {
      const { catalog: c, current: m, onImport: apply } = latest.current;
      const r = await importPng(new Uint8Array(await file.arrayBuffer()), c);
      if (!r.source) {
        setNotice({ file: file.name, source: null, notes: r.notes });
        return;
      }
      const { form, notes } = toForm(c, m, r);
      apply(form);
      setNotice({ file: file.name, source: r.source, notes });
    } catch {
      setNotice({ file: file.name, source: null, notes: ['The file could not be read.'] });
    } finally {
      setReading(false);
      if (inputRef.current) inputRef.current.value = '';
    }
  };
  const loadRef = useRef(load);
  loadRef.current = load;

  // a PNG dropped anywhere on the page does what the file input does
  useEffect(() => {
    let timer = 0;
    const over = (e: DragEvent) => {
      if (!isFileDrag(e) || onFileField(e)) return;
      e.preventDefault();
      if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
      setDragging(true);
      window.clearTimeout(timer);
      timer = window.setTimeout(() => setDragging(false), 200);
    };
    const drop = (e: DragEvent) => {
      if (!isFileDrag(e) || onFileField(e)) return;
      e.preventDefault();
      setDragging(false);
      const file = e.dataTransfer?.files?.[0];
      if (file) void loadRef.current(file);
    };
    window.addEventListener('dragover', over);
    window.addEventListener('drop', drop);
    return () => {
      window.clearTimeout(timer);
      window.removeEventListener('dragover', over);
      window.removeEventListener('drop', drop);
    };
  }, []);

  return (
    <div class="import">
      <div class="import-row">
        <label for="gen-import" class="import-label">
          Load settings from image
        </label>
        <input
          ref={inputRef}
          type="file"
          id="gen-import"
          accept="image/png"
          aria-label="Load settings from image"
          aria-describedby="gen-import-hint"
          onChange={(e) => {
            const f = (e.currentTarget as HTMLInputElement).files?.[0];
            if (f) void load(f);
          }}
        />
      </div>
      <p class="hint" id="gen-import-hint">
        A PNG from Gooni, AUTOMATIC1111 or ComfyUI; or drop one anywhere on this page. Nothing is sent until you press Generate.
      </p>
      <div class="import-slot" role="status" aria-live="polite">
        {reading ? <p class="muted small">Reading the file…</p> : null}
        {notice && !reading ? (
          <div class={`note ${notice.source ? (notice.notes.length ? 'note-warn' : 'note-ok') : 'note-warn'} import-note`}>
            <p>
              {notice.source
                ? `Settings loaded from ${notice.file} (${sourceNames[notice.source]}). Check them, then press Generate.`
                : `No settings were loaded from ${notice.file}.`}
            </p>
            {notice.notes.length ? (
              <ul>
                {notice.notes.map((n, i) => (
                  <li key={i}>{n}</li>
                ))}
              </ul>
            ) : null}
            <button type="button" class="link-button small" onClick={() => setNotice(null)}>
              Dismiss
            </button>
          </div>
        ) : null}
      </div>
      {dragging ? (
        <div class="drop-overlay" aria-hidden="true">
          <p>Drop a PNG to load its settings</p>
        </div>
      ) : null}
    </div>
  );
}
