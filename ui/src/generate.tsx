// The Generate page: a form rendered entirely from the catalog, and the
// running task's progress and result.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { Catalog, Model, Param, TaskView } from './api';
import { ApiError, base, ensureSession, findModel, hintFor, request } from './api';
import { capitalize, keyParams, modeName, needsImage } from './format';
import type { Draft, ParamValue } from './settings';
import { defaultParams, loadDraft, loadTaskId, paramValues, saveDraft, saveTaskId } from './settings';
import { ErrorNote } from './widgets';

const maxPrompt = 2000;
const maxImageBytes = 10 * 1024 * 1024;
const imageTypes = ['image/png', 'image/jpeg', 'image/webp'];

function isTerminal(t: TaskView | null): boolean {
  return !!t && (t.status === 'done' || t.status === 'failed');
}

// useTask follows one task: SSE first, polling GET /status every 2 s when the
// stream fails (or EventSource is missing).
export function useTask(id: string | null) {
  const [task, setTask] = useState<TaskView | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    setTask(null);
    setError(null);
    if (!id) return;
    let stopped = false;
    let source: EventSource | null = null;
    let timer = 0;
    const apply = (t: TaskView): boolean => {
      if (stopped) return true;
      setTask(t);
      setError(null);
      return isTerminal(t);
    };
    const poll = async () => {
      if (stopped) return;
      try {
        const t = await request<TaskView>(`/status/${encodeURIComponent(id)}`);
        if (apply(t)) return;
      } catch (e) {
        if (stopped) return;
        setError(e);
        if (e instanceof ApiError && (e.code === 'task_not_found' || e.status === 404)) return;
      }
      timer = window.setTimeout(poll, 2000);
    };
    const listen = async () => {
      await ensureSession().catch(() => undefined);
      if (stopped) return;
      if (typeof EventSource === 'undefined') {
        void poll();
        return;
      }
      const es = new EventSource(base(`/events/${encodeURIComponent(id)}`));
      source = es;
      es.addEventListener('task', (ev) => {
        let t: TaskView;
        try {
          t = JSON.parse((ev as MessageEvent<string>).data) as TaskView;
        } catch {
          return;
        }
        if (apply(t)) {
          es.close();
          source = null;
        }
      });
      es.onerror = () => {
        es.close();
        source = null;
        void poll();
      };
    };
    void listen();
    return () => {
      stopped = true;
      source?.close();
      window.clearTimeout(timer);
    };
  }, [id]);
  return { task, error };
}

interface ParamControlProps {
  param: Param;
  value: ParamValue;
  error?: string;
  onChange: (v: ParamValue) => void;
}

function numericStep(p: Param): number | undefined {
  if (p.step !== undefined && p.step > 0) return p.step;
  return p.kind === 'int' ? 1 : undefined;
}

function ParamControl({ param: p, value, error, onChange }: ParamControlProps) {
  const id = `param-${p.name}`;
  const errId = `${id}-error`;
  if (p.kind === 'bool') {
    return (
      <div class="field field-check">
        <input
          type="checkbox"
          id={id}
          aria-label={p.label}
          checked={value === true}
          onChange={(e) => onChange((e.currentTarget as HTMLInputElement).checked)}
        />
        <label for={id}>{p.label}</label>
      </div>
    );
  }
  if (p.kind === 'enum') {
    return (
      <div class="field">
        <label for={id}>{p.label}</label>
        <select id={id} aria-label={p.label} value={String(value)} onChange={(e) => onChange((e.currentTarget as HTMLSelectElement).value)}>
          {(p.options ?? []).map((o) => (
            <option key={o} value={o}>
              {o}
            </option>
          ))}
        </select>
      </div>
    );
  }
  const step = numericStep(p);
  const hasRange = p.min !== undefined && p.max !== undefined && p.max > p.min;
  // a slider with millions of stops (a seed) helps nobody; the number field stays
  const sliderStep = step ?? (hasRange ? (p.max! - p.min!) / 100 : 1);
  const showSlider = hasRange && (p.max! - p.min!) / sliderStep <= 5000;
  const n = Number(value);
  const sliderValue = Number.isFinite(n) && String(value).trim() !== '' ? n : Number(p.default ?? p.min ?? 0);
  return (
    <div class={`field field-num${error ? ' has-error' : ''}`}>
      <div class="field-head">
        <label for={id}>{p.label}</label>
        {hasRange ? (
          <span class="range-hint" aria-hidden="true">
            {p.min} – {p.max}
          </span>
        ) : null}
      </div>
      <div class="num-row">
        {showSlider ? (
          <input
            type="range"
            class="slider"
            tabIndex={-1}
            aria-hidden="true"
            min={p.min}
            max={p.max}
            step={sliderStep}
            value={sliderValue}
            onInput={(e) => onChange((e.currentTarget as HTMLInputElement).value)}
          />
        ) : null}
        <input
          type="number"
          id={id}
          aria-label={p.label}
          class={showSlider ? 'num num-small' : 'num'}
          min={p.min}
          max={p.max}
          step={step ?? 'any'}
          inputMode={p.kind === 'int' && (p.min ?? 0) >= 0 ? 'numeric' : 'decimal'}
          value={String(value)}
          aria-invalid={error ? 'true' : undefined}
          aria-describedby={error ? errId : undefined}
          onInput={(e) => onChange((e.currentTarget as HTMLInputElement).value)}
        />
      </div>
      {error ? (
        <p class="field-error" id={errId}>
          {error}
        </p>
      ) : null}
    </div>
  );
}

// checkParam mirrors the server's rule: within [min, max] and on min + k*step.
function checkParam(p: Param, v: ParamValue): string | null {
  if (p.kind !== 'int' && p.kind !== 'float') return null;
  const raw = String(v).trim();
  const n = Number(raw);
  if (raw === '' || !Number.isFinite(n)) return `${p.label} must be a number.`;
  if (p.kind === 'int' && !Number.isInteger(n)) return `${p.label} must be a whole number.`;
  if ((p.min !== undefined && n < p.min) || (p.max !== undefined && n > p.max)) {
    return `${p.label} must be between ${p.min ?? '−∞'} and ${p.max ?? '∞'}.`;
  }
  if (p.step !== undefined && p.step > 0) {
    const base = p.min ?? 0;
    const k = (n - base) / p.step;
    if (Math.abs(k - Math.round(k)) > 1e-6) return `${p.label} must be ${base} plus a multiple of ${p.step}.`;
  }
  return null;
}

function toWire(p: Param, v: ParamValue): unknown {
  if (p.kind === 'int') return Math.round(Number(v));
  if (p.kind === 'float') return Number(v);
  return v;
}

function readDataURL(file: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result));
    r.onerror = () => reject(new Error('The image could not be read.'));
    r.readAsDataURL(file);
  });
}

function modelOptions(catalog: Catalog) {
  const groups = new Map<string, Model[]>();
  for (const m of catalog.models) {
    const g = groups.get(m.type) ?? [];
    g.push(m);
    groups.set(m.type, g);
  }
  return [...groups.entries()].map(([type, models]) => (
    <optgroup key={type} label={capitalize(type)}>
      {models.map((m) => (
        <option key={m.id} value={m.id}>
          {m.label} ({m.type})
        </option>
      ))}
    </optgroup>
  ));
}

interface GenerateProps {
  catalog: Catalog;
}

export function GeneratePage({ catalog }: GenerateProps) {
  const [draft, setDraft] = useState<Draft>(() => loadDraft(catalog));
  const [taskId, setTaskId] = useState<string | null>(() => loadTaskId());
  const [image, setImage] = useState<File | null>(null);
  const [imageURL, setImageURL] = useState<string | null>(null);
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const [submitError, setSubmitError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const formRef = useRef<HTMLFormElement>(null);
  const fileRef = useRef<HTMLInputElement>(null);
  const { task, error: taskError } = useTask(taskId);

  useEffect(() => saveDraft(draft), [draft]);
  useEffect(() => {
    if (!image) {
      setImageURL(null);
      return;
    }
    const url = URL.createObjectURL(image);
    setImageURL(url);
    return () => URL.revokeObjectURL(url);
  }, [image]);
  useEffect(() => {
    // a deleted task cannot come back: stop remembering it
    if (taskError instanceof ApiError && taskError.code === 'task_not_found') {
      saveTaskId(null);
      setTaskId(null);
    }
  }, [taskError]);

  const model = findModel(catalog, draft.model) ?? catalog.models[0];
  // Until a mode is chosen, prefer one that needs only a prompt, so a first
  // visit can generate at once.
  const firstMode = model ? (model.modes.find((m) => !needsImage(m)) ?? model.modes[0]) : '';
  const mode = model && model.modes.includes(draft.modes[model.id] ?? '') ? draft.modes[model.id] : firstMode;
  const values = useMemo(() => (model ? paramValues(model, draft.params[model.id]) : {}), [model, draft.params]);
  const wantsImage = needsImage(mode);

  if (!model) {
    return (
      <section class="page">
        <h1 tabIndex={-1}>Generate</h1>
        <p class="empty">The catalog has no models. An admin must add one to inference_settings.json.</p>
      </section>
    );
  }

  const update = (patch: Partial<Draft>) => setDraft((d) => ({ ...d, ...patch }));
  const setParam = (name: string, v: ParamValue) => {
    setDraft((d) => ({ ...d, params: { ...d.params, [model.id]: { ...paramValues(model, d.params[model.id]), [name]: v } } }));
    setFieldErrors((f) => {
      if (!f[`params.${name}`]) return f;
      const next = { ...f };
      delete next[`params.${name}`];
      return next;
    });
  };

  const onImage = (e: Event) => {
    const file = (e.currentTarget as HTMLInputElement).files?.[0] ?? null;
    const errs = { ...fieldErrors };
    delete errs.image;
    if (file && !imageTypes.includes(file.type)) errs.image = 'Choose a PNG, JPEG or WebP image.';
    else if (file && file.size > maxImageBytes) errs.image = 'The image must be 10 MiB or smaller.';
    setFieldErrors(errs);
    setImage(file && !errs.image ? file : null);
  };

  const submit = async (e?: Event) => {
    e?.preventDefault();
    if (busy) return;
    const errs: Record<string, string> = {};
    const prompt = draft.prompt.trim();
    if (!prompt) errs.prompt = 'Write a prompt first.';
    else if (draft.prompt.length > maxPrompt) errs.prompt = `The prompt must be at most ${maxPrompt} characters.`;
    if (model.negative_prompt && draft.negative.length > maxPrompt) errs.negative_prompt = `The negative prompt must be at most ${maxPrompt} characters.`;
    for (const p of model.params) {
      const msg = checkParam(p, values[p.name]);
      if (msg) errs[`params.${p.name}`] = msg;
    }
    if (wantsImage && !image && !errs.image) errs.image = 'Choose an input image for this mode.';
    setFieldErrors(errs);
    setSubmitError(null);
    if (Object.keys(errs).length > 0) {
      const first = formRef.current?.querySelector<HTMLElement>('[aria-invalid="true"]');
      first?.focus();
      return;
    }
    setBusy(true);
    try {
      const params: Record<string, unknown> = {};
      for (const p of model.params) params[p.name] = toWire(p, values[p.name]);
      const body: Record<string, unknown> = { model: model.id, mode, prompt: draft.prompt, params };
      if (model.negative_prompt && draft.negative.trim()) body.negative_prompt = draft.negative;
      if (wantsImage && image) body.image = await readDataURL(image);
      const res = await request<{ task_id: string }>('/generate', { method: 'POST', body });
      saveTaskId(res.task_id);
      setTaskId(res.task_id);
      // on a phone the result sits below the form: bring it into view
      const out = document.getElementById('output-title');
      if (out && out.getBoundingClientRect().top > window.innerHeight) out.scrollIntoView({ behavior: 'smooth', block: 'start' });
    } catch (err) {
      const field = err instanceof ApiError ? err.details?.field : undefined;
      if (typeof field === 'string') {
        setFieldErrors({ [field]: (err as ApiError).message });
      }
      setSubmitError(err);
    } finally {
      setBusy(false);
    }
  };

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      void submit();
    }
  };

  const fe = (k: string) => fieldErrors[k];

  return (
    <section class="page page-generate" aria-labelledby="generate-title">
      <h1 id="generate-title" tabIndex={-1}>
        Generate
      </h1>
      <div class="generate-grid">
        <form ref={formRef} class="card form" onSubmit={submit} onKeyDown={onKeyDown} noValidate aria-label="Generation settings">
          <div class="row2">
            <div class="field">
              <label for="gen-model">Model</label>
              <select
                id="gen-model"
                aria-label="Model"
                value={model.id}
                onChange={(e) => {
                  update({ model: (e.currentTarget as HTMLSelectElement).value });
                  setFieldErrors({});
                }}
              >
                {modelOptions(catalog)}
              </select>
            </div>
            <div class="field">
              <label for="gen-mode">Mode</label>
              <select
                id="gen-mode"
                aria-label="Mode"
                value={mode}
                onChange={(e) => update({ modes: { ...draft.modes, [model.id]: (e.currentTarget as HTMLSelectElement).value } })}
              >
                {model.modes.map((m) => (
                  <option key={m} value={m}>
                    {modeName(m)}
                  </option>
                ))}
              </select>
            </div>
          </div>

          {wantsImage ? (
            <div class={`field${fe('image') ? ' has-error' : ''}`}>
              <label for="gen-image">Image</label>
              <div class="image-pick">
                <div class="image-preview">
                  {imageURL ? <img src={imageURL} alt="Selected input image" /> : <span class="muted">No image chosen</span>}
                </div>
                <input
                  ref={fileRef}
                  type="file"
                  id="gen-image"
                  aria-label="Image"
                  accept={imageTypes.join(',')}
                  onChange={onImage}
                  aria-invalid={fe('image') ? 'true' : undefined}
                  aria-describedby={fe('image') ? 'gen-image-error' : 'gen-image-hint'}
                />
              </div>
              {fe('image') ? (
                <p class="field-error" id="gen-image-error">
                  {fe('image')}
                </p>
              ) : (
                <p class="hint" id="gen-image-hint">
                  PNG, JPEG or WebP, up to 10 MiB. Generation starts from this image.
                </p>
              )}
            </div>
          ) : null}

          <div class={`field${fe('prompt') ? ' has-error' : ''}`}>
            <div class="field-head">
              <label for="gen-prompt">Prompt</label>
              <span class={`counter${draft.prompt.length > maxPrompt ? ' over' : ''}`} aria-hidden="true">
                {draft.prompt.length} / {maxPrompt}
              </span>
            </div>
            <textarea
              id="gen-prompt"
              aria-label="Prompt"
              rows={5}
              placeholder="Describe what you want to see…"
              value={draft.prompt}
              aria-invalid={fe('prompt') ? 'true' : undefined}
              aria-describedby={fe('prompt') ? 'gen-prompt-error' : 'gen-prompt-hint'}
              onInput={(e) => update({ prompt: (e.currentTarget as HTMLTextAreaElement).value })}
            />
            {fe('prompt') ? (
              <p class="field-error" id="gen-prompt-error">
                {fe('prompt')}
              </p>
            ) : (
              <p class="hint" id="gen-prompt-hint">
                Press Ctrl+Enter (⌘+Enter on a Mac) to generate.
              </p>
            )}
          </div>

          {model.negative_prompt ? (
            <div class={`field${fe('negative_prompt') ? ' has-error' : ''}`}>
              <label for="gen-negative">Negative prompt</label>
              <textarea
                id="gen-negative"
                aria-label="Negative prompt"
                rows={2}
                placeholder="What to avoid (optional)"
                value={draft.negative}
                aria-invalid={fe('negative_prompt') ? 'true' : undefined}
                onInput={(e) => update({ negative: (e.currentTarget as HTMLTextAreaElement).value })}
              />
              {fe('negative_prompt') ? <p class="field-error">{fe('negative_prompt')}</p> : null}
            </div>
          ) : null}

          {model.params.length > 0 ? (
            <fieldset class="params">
              <legend>Parameters</legend>
              <div class="params-grid">
                {model.params.map((p) => (
                  <ParamControl key={`${model.id}.${p.name}`} param={p} value={values[p.name]} error={fe(`params.${p.name}`)} onChange={(v) => setParam(p.name, v)} />
                ))}
              </div>
              <button
                type="button"
                class="link-button"
                onClick={() => {
                  setDraft((d) => ({ ...d, params: { ...d.params, [model.id]: defaultParams(model) } }));
                  setFieldErrors({});
                }}
              >
                Reset parameters
              </button>
            </fieldset>
          ) : null}

          {submitError ? <ErrorNote error={submitError} /> : null}

          <div class="actions">
            <button type="submit" class="primary big" disabled={busy} aria-busy={busy ? 'true' : undefined}>
              Generate
            </button>
            {busy ? <span class="muted">Sending…</span> : null}
          </div>
        </form>

        <TaskPanel catalog={catalog} task={task} error={taskError} waiting={!!taskId && !task} />
      </div>
    </section>
  );
}

function aspect(task: TaskView): string {
  const w = Number(task.params?.width);
  const h = Number(task.params?.height);
  if (w > 0 && h > 0) return `${w} / ${h}`;
  return task.type === 'video' ? '16 / 9' : '1 / 1';
}

interface TaskPanelProps {
  catalog: Catalog;
  task: TaskView | null;
  error: unknown;
  waiting: boolean;
}

function TaskPanel({ catalog, task, error, waiting }: TaskPanelProps) {
  const running = !!task && (task.status === 'pending' || task.status === 'processing');
  const progress = task ? Math.max(0, Math.min(100, Math.round(task.progress ?? 0))) : 0;
  const model = task ? findModel(catalog, task.model) : undefined;
  let status = '';
  if (task?.status === 'pending') {
    status = task.queue_position ? `Waiting in queue, position ${task.queue_position}` : 'Waiting for a worker';
  } else if (task?.status === 'processing') {
    status = `Generating… ${progress}%`;
  } else if (task?.status === 'done') {
    status = 'Done';
  } else if (task?.status === 'failed') {
    status = 'Failed';
  }
  return (
    <section class="card output" aria-labelledby="output-title">
      <div class="output-head">
        <h2 id="output-title">Result</h2>
        {task ? (
          <span class="muted small">
            {model?.label ?? task.model} · {task.mode}
          </span>
        ) : null}
      </div>
      <div class="status-line" role="status" aria-live="polite">
        {status}
      </div>
      <div class="progress-slot">
      {running ? (
        <div
          class="progress"
          role="progressbar"
          aria-label="Generation progress"
          aria-valuenow={progress}
          aria-valuemin={0}
          aria-valuemax={100}
          aria-valuetext={status}
        >
          <div class={`progress-fill${task?.status === 'pending' ? ' waiting' : ''}`} style={{ width: `${Math.max(progress, 2)}%` }} />
        </div>
      ) : null}
      </div>
      {task?.status === 'failed' ? (
        <div class="note note-error" role="alert">
          <p>{task.error?.message || 'The task failed.'}</p>
          {task.error?.code && hintFor(task.error.code, task.error.message) ? <p class="hint">{hintFor(task.error.code, task.error.message)}</p> : null}
        </div>
      ) : null}
      {error && !task ? <ErrorNote error={error} /> : null}
      <div class="media-frame" style={{ aspectRatio: task ? aspect(task) : '16 / 9' }}>
        {task?.status === 'done' ? (
          task.type === 'video' ? (
            <video
              key={task.task_id}
              controls
              playsInline
              preload="metadata"
              poster={base(`/preview/${encodeURIComponent(task.task_id)}`)}
              src={base(`/results/${encodeURIComponent(task.task_id)}`)}
            />
          ) : (
            <img key={task.task_id} src={base(`/results/${encodeURIComponent(task.task_id)}`)} alt={task.prompt} />
          )
        ) : (
          <div class={`media-empty${running || waiting ? ' busy' : ''}`}>
            {running || waiting ? <span class="spinner" aria-hidden="true" /> : <span>Your result appears here.</span>}
          </div>
        )}
      </div>
      {task?.status === 'done' ? (
        <div class="actions">
          <a class="button primary" href={base(`/results/${encodeURIComponent(task.task_id)}?download=1`)} download>
            Download
          </a>
          <span class="muted small">
            {keyParams(model?.params, task.params ?? undefined, 4)}
          </span>
        </div>
      ) : null}
    </section>
  );
}
