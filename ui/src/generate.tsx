// The Generate page, a workstation: a form rendered entirely from the
// catalog, the selected task's progress and result, and a Queue of this
// browser's tasks kept live by the tab's one GET /events stream.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { Catalog, Model, Param, TaskView } from './api';
import { ApiError, base, findModel, hintFor } from './api';
import { capitalize, keyParams, modeName, needsImage } from './format';
import type { Draft, ParamValue } from './settings';
import { defaultParams, loadDraft, loadTaskId, paramValues, saveDraft, saveTaskId, takeHandoffImage } from './settings';
import { ImportSettings } from './importpanel';
import { cancelTask, etaText, isOpen, myTasks, rememberTasks, retryTask, statusText, submitGenerate, useLiveTasks, useMyTasks } from './tasks';
import { ErrorNote } from './widgets';

const maxCount = 8;
// after a submission the Generate button stays off this long, so the second
// click of a double click (or an impatient one) cannot send it again
const submitCooldownMs = 800;

const maxPrompt = 2000;
const maxImageBytes = 10 * 1024 * 1024;
const imageTypes = ['image/png', 'image/jpeg', 'image/webp'];

interface ParamControlProps {
  param: Param;
  value: ParamValue;
  error?: string;
  onChange: (v: ParamValue) => void;
  // for the seed: the seed the selected task used, shown while random
  usedSeed?: number | null;
}

function numericStep(p: Param): number | undefined {
  if (p.step !== undefined && p.step > 0) return p.step;
  return p.kind === 'int' ? 1 : undefined;
}

function SeedControl({ param: p, value, error, onChange, usedSeed }: ParamControlProps) {
  const id = `param-${p.name}`;
  const errId = `${id}-error`;
  const random = String(value).trim() === '-1';
  const shown = random ? (usedSeed != null ? String(usedSeed) : '') : String(value);
  return (
    <div class={`field field-num${error ? ' has-error' : ''}`}>
      <div class="field-head">
        <label for={id}>{p.label}</label>
        <label class="inline-check">
          <input
            type="checkbox"
            aria-label="Random seed"
            checked={random}
            onChange={(e) => onChange((e.currentTarget as HTMLInputElement).checked ? '-1' : String(usedSeed ?? 0))}
          />
          Random seed
        </label>
      </div>
      <input
        type="number"
        id={id}
        aria-label={p.label}
        class="num"
        min={0}
        max={p.max}
        step={1}
        inputMode="numeric"
        readOnly={random}
        placeholder={random ? 'random' : undefined}
        value={shown}
        aria-invalid={error ? 'true' : undefined}
        aria-describedby={error ? errId : `${id}-hint`}
        onInput={(e) => onChange((e.currentTarget as HTMLInputElement).value)}
      />
      {error ? (
        <p class="field-error" id={errId}>
          {error}
        </p>
      ) : (
        <p class="hint" id={`${id}-hint`}>
          {random ? (usedSeed != null ? 'The seed the shown result used. A new one is drawn for each task.' : 'A new seed is drawn for each task.') : 'Tasks of a batch count up from this seed.'}
        </p>
      )}
    </div>
  );
}

function ParamControl(props: ParamControlProps) {
  const { param: p, value, error, onChange } = props;
  if (p.name === 'seed' && p.kind === 'int' && (p.min ?? 0) <= -1) return <SeedControl {...props} />;
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
    if (p.min !== undefined && p.min === p.max) return `${p.label} must be ${p.min}.`;
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


function seedOf(t: TaskView | null | undefined): number | null {
  const s = t?.params?.seed;
  return typeof s === 'number' && Number.isInteger(s) && s >= 0 ? s : null;
}

export function GeneratePage({ catalog }: GenerateProps) {
  const [draft, setDraft] = useState<Draft>(() => loadDraft(catalog));
  const mine = useMyTasks();
  const tracked = useMemo(() => mine.slice(0, 20), [mine]);
  const { views, connected } = useLiveTasks(tracked);
  const [selected, setSelected] = useState<string | null>(() => loadTaskId() ?? tracked[0] ?? null);
  // an i2v task's input image comes along with the Gallery's "Use these settings"
  const [image, setImage] = useState<File | null>(takeHandoffImage);
  const [imageURL, setImageURL] = useState<string | null>(null);
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const [submitError, setSubmitError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [sending, setSending] = useState(false);
  const [count, setCount] = useState('1');
  const busyRef = useRef(false);
  const formRef = useRef<HTMLFormElement>(null);
  const fileRef = useRef<HTMLInputElement>(null);
  const task = selected ? (views.get(selected) ?? null) : null;

  useEffect(() => saveDraft(draft), [draft]);
  useEffect(() => {
    // a task followed by an older version of this page joins the queue
    const old = loadTaskId();
    if (old && !myTasks().includes(old)) rememberTasks([old]);
  }, []);
  useEffect(() => {
    // an image handed over by "Use these settings" shows in the file field too
    const el = fileRef.current;
    if (!image || !el || el.files?.[0] === image || typeof DataTransfer === 'undefined') return;
    try {
      const dt = new DataTransfer();
      dt.items.add(image);
      el.files = dt.files;
    } catch {
      // the preview still shows it
    }
  });
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
    // a deleted task cannot come back: follow the newest one instead
    if (selected && !mine.includes(selected) && loadTaskId() === selected) {
      saveTaskId(null);
      setSelected(mine[0] ?? null);
    }
  }, [mine, selected]);

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
  const usedSeed = task && findModel(catalog, task.model)?.id === model.id ? seedOf(task) : null;

  const onImage = (e: Event) => {
    const file = (e.currentTarget as HTMLInputElement).files?.[0] ?? null;
    const errs = { ...fieldErrors };
    delete errs.image;
    if (file && !imageTypes.includes(file.type)) errs.image = 'Choose a PNG, JPEG or WebP image.';
    else if (file && file.size > maxImageBytes) errs.image = 'The image must be 10 MiB or smaller.';
    setFieldErrors(errs);
    setImage(file && !errs.image ? file : null);
  };

  const follow = (id: string) => {
    saveTaskId(id);
    setSelected(id);
  };

  // send runs one submission at a time: busyRef is set before the first
  // await, so a second click in the same instant finds it taken.
  const send = async (make: () => Promise<{ task_id: string }>) => {
    if (busyRef.current) return;
    busyRef.current = true;
    setBusy(true);
    setSending(true);
    setSubmitError(null);
    try {
      const res = await make();
      follow(res.task_id);
      // on a phone the result sits below the form: bring it into view
      const out = document.getElementById('output-title');
      if (out && out.getBoundingClientRect().top > window.innerHeight) out.scrollIntoView({ block: 'start' });
    } catch (err) {
      const field = err instanceof ApiError ? err.details?.field : undefined;
      if (typeof field === 'string' && field !== 'count') {
        setFieldErrors({ [field]: (err as ApiError).message });
      }
      setSubmitError(err);
    } finally {
      setSending(false);
      window.setTimeout(() => {
        busyRef.current = false;
        setBusy(false);
      }, submitCooldownMs);
    }
  };

  const submit = async (e?: Event) => {
    e?.preventDefault();
    if (busyRef.current) return;
    const errs: Record<string, string> = {};
    const prompt = draft.prompt.trim();
    if (!prompt) errs.prompt = 'Write a prompt first.';
    else if (draft.prompt.length > maxPrompt) errs.prompt = `The prompt must be at most ${maxPrompt} characters.`;
    if (model.negative_prompt && draft.negative.length > maxPrompt) errs.negative_prompt = `The negative prompt must be at most ${maxPrompt} characters.`;
    for (const p of model.params) {
      const msg = checkParam(p, values[p.name]);
      if (msg) errs[`params.${p.name}`] = msg;
    }
    const n = Number(count);
    if (!Number.isInteger(n) || n < 1 || n > maxCount) errs.count = `Count must be a whole number from 1 to ${maxCount}.`;
    if (wantsImage && !image && !errs.image) errs.image = 'Choose an input image for this mode.';
    setFieldErrors(errs);
    setSubmitError(null);
    if (Object.keys(errs).length > 0) {
      const first = formRef.current?.querySelector<HTMLElement>('[aria-invalid="true"]');
      first?.focus();
      return;
    }
    await send(async () => {
      const params: Record<string, unknown> = {};
      for (const p of model.params) params[p.name] = toWire(p, values[p.name]);
      const body: Record<string, unknown> = { model: model.id, mode, prompt: draft.prompt, params };
      if (n > 1) body.count = n;
      if (model.negative_prompt && draft.negative.trim()) body.negative_prompt = draft.negative;
      if (wantsImage && image) body.image = await readDataURL(image);
      return submitGenerate(body);
    });
  };

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      void submit();
    }
  };

  const fe = (k: string) => fieldErrors[k];
  const queue = tracked.map((id) => views.get(id)).filter((t): t is TaskView => !!t);

  return (
    <section class="page page-generate" aria-labelledby="generate-title">
      <h1 id="generate-title" tabIndex={-1}>
        Generate
      </h1>
      <div class="conn-slot" role="status" aria-live="polite">
        {connected ? null : <p class="note note-warn conn-lost">Connection lost, reconnecting… Tasks keep running on the server.</p>}
      </div>
      <div class="generate-grid">
        <form ref={formRef} class="card form" onSubmit={submit} onKeyDown={onKeyDown} noValidate aria-label="Generation settings">
          <ImportSettings
            catalog={catalog}
            current={model}
            onImport={(f) => {
              setDraft((d) => ({
                ...d,
                model: f.model,
                modes: f.mode ? { ...d.modes, [f.model]: f.mode } : d.modes,
                params: { ...d.params, [f.model]: f.params },
                prompt: f.prompt,
                negative: f.negative,
              }));
              setFieldErrors({});
              setSubmitError(null);
            }}
          />
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
              <p class="hint kbd-hint" id="gen-prompt-hint">
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
                  <ParamControl
                    key={`${model.id}.${p.name}`}
                    param={p}
                    value={values[p.name]}
                    error={fe(`params.${p.name}`)}
                    onChange={(v) => setParam(p.name, v)}
                    usedSeed={usedSeed}
                  />
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

          <div class="actions">
            <div class={`field field-count${fe('count') ? ' has-error' : ''}`}>
              <label for="gen-count">Count</label>
              <input
                type="number"
                id="gen-count"
                aria-label="Count"
                class="num num-small"
                min={1}
                max={maxCount}
                step={1}
                inputMode="numeric"
                value={count}
                aria-invalid={fe('count') ? 'true' : undefined}
                onInput={(e) => setCount((e.currentTarget as HTMLInputElement).value)}
              />
            </div>
            <button
              type="submit"
              class="primary big"
              disabled={busy}
              aria-busy={busy ? 'true' : undefined}
              onClick={(e) => {
                // the second click of a double click never submits again
                if ((e as MouseEvent).detail > 1) e.preventDefault();
              }}
            >
              Generate
            </button>
            {sending ? <span class="muted">Sending…</span> : null}
          </div>
          {fe('count') ? <p class="field-error">{fe('count')}</p> : null}
        </form>

        <div class="stack generate-side">
          <TaskPanel
            catalog={catalog}
            task={task}
            waiting={!!selected && !task}
            submitError={submitError}
            canReuseSeed={usedSeed != null}
            onReuseSeed={() => usedSeed != null && setParam('seed', String(usedSeed))}
          />
          <QueuePanel
            catalog={catalog}
            tasks={queue}
            selected={selected}
            onSelect={follow}
            onRetry={(t) => void send(() => retryTask(t))}
            onError={setSubmitError}
          />
        </div>
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
  waiting: boolean;
  submitError: unknown;
  canReuseSeed: boolean;
  onReuseSeed: () => void;
}

function TaskPanel({ catalog, task, waiting, submitError, canReuseSeed, onReuseSeed }: TaskPanelProps) {
  const running = isOpen(task);
  const progress = task ? Math.max(0, Math.min(100, Math.round(task.progress ?? 0))) : 0;
  const model = task ? findModel(catalog, task.model) : undefined;
  const ref = useRef<HTMLElement>(null);
  const seen = useRef<Record<string, string>>({});
  let status = task ? statusText(task) : '';
  if (task && running) {
    const eta = etaText(task);
    if (eta) status += ` · ${eta}`;
  }
  useEffect(() => {
    if (!task) return;
    const before = seen.current[task.task_id];
    seen.current[task.task_id] = task.status;
    // when the followed task finishes, its result and Download link come into view
    if (task.status === 'done' && before && before !== 'done') {
      window.setTimeout(() => {
        const el = ref.current;
        if (!el) return;
        const r = el.getBoundingClientRect();
        if (r.top < 0 || r.bottom > window.innerHeight) el.scrollIntoView({ block: 'start' });
        const link = el.querySelector<HTMLElement>('a[download]');
        if (link && link.getBoundingClientRect().bottom > window.innerHeight) link.scrollIntoView({ block: 'end' });
      }, 0);
    }
  }, [task?.task_id, task?.status]);
  return (
    <section ref={ref} class="card output" aria-labelledby="output-title">
      <div class="output-head">
        <h2 id="output-title">Result</h2>
        {task ? (
          <span class="muted small">
            {model?.label ?? task.model} · {task.mode}
          </span>
        ) : null}
      </div>
      {submitError ? <ErrorNote error={submitError} /> : null}
      <div class="status-line" role="status" aria-live="polite">
        {status}
      </div>
      <div class="progress-slot">
        {running && task ? (
          <div
            class="progress"
            role="progressbar"
            aria-label="Generation progress"
            aria-valuenow={progress}
            aria-valuemin={0}
            aria-valuemax={100}
            aria-valuetext={status}
          >
            <div class={`progress-fill${task.status === 'pending' ? ' waiting' : ''}`} style={{ width: `${Math.max(progress, 2)}%` }} />
          </div>
        ) : null}
      </div>
      {task?.status === 'failed' ? (
        <div class="note note-error" role="alert">
          <p>{task.error?.message || 'The task failed.'}</p>
          {task.error?.code && hintFor(task.error.code, task.error.message) ? <p class="hint">{hintFor(task.error.code, task.error.message)}</p> : null}
        </div>
      ) : null}
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
          {canReuseSeed ? (
            <button type="button" class="secondary" onClick={onReuseSeed}>
              Reuse this seed
            </button>
          ) : null}
          <span class="muted small">{keyParams(model?.params, task.params ?? undefined, 4)}</span>
        </div>
      ) : null}
    </section>
  );
}

interface QueueProps {
  catalog: Catalog;
  tasks: TaskView[];
  selected: string | null;
  onSelect: (id: string) => void;
  onRetry: (t: TaskView) => void;
  onError: (e: unknown) => void;
}

// How many finished tasks the Queue keeps showing under the open ones.
const finishedShown = 5;

function QueuePanel({ catalog, tasks, selected, onSelect, onRetry, onError }: QueueProps) {
  const [canceling, setCanceling] = useState<Record<string, boolean>>({});
  const open = tasks.filter(isOpen);
  const finished = tasks.filter((t) => !isOpen(t)).slice(0, finishedShown);
  const shown = [...open, ...finished];
  const cancel = async (t: TaskView) => {
    setCanceling((c) => ({ ...c, [t.task_id]: true }));
    try {
      await cancelTask(t.task_id);
    } catch (e) {
      // a task that finished meanwhile is fine: the stream brings its end
      if (!(e instanceof ApiError && e.code === 'task_finished')) onError(e);
    } finally {
      setCanceling((c) => ({ ...c, [t.task_id]: false }));
    }
  };
  return (
    <section class="card queue" role="region" aria-label="Queue">
      <div class="output-head">
        <h2>Queue</h2>
        <span class="muted small">{open.length > 0 ? `${open.length} running or waiting` : 'Nothing running'}</span>
      </div>
      {shown.length === 0 ? (
        <p class="muted small">Tasks you start in this browser are listed here.</p>
      ) : (
        <ul class="queue-list">
          {shown.map((t) => {
            const promptId = `q-${t.task_id}-prompt`;
            const label = findModel(catalog, t.model)?.label ?? t.model;
            const eta = isOpen(t) ? etaText(t) : '';
            const p = Math.max(0, Math.min(100, Math.round(t.progress ?? 0)));
            return (
              <li key={t.task_id} class={`queue-item status-${t.status}${t.task_id === selected ? ' selected' : ''}`} data-task-id={t.task_id} data-status={t.status}>
                <button type="button" class="queue-select" aria-pressed={t.task_id === selected ? 'true' : 'false'} onClick={() => onSelect(t.task_id)}>
                  <span class="queue-prompt" id={promptId}>
                    {t.prompt}
                  </span>
                  <span class="muted small">
                    {label} · {t.mode}
                    {typeof t.params?.seed === 'number' ? ` · seed ${t.params.seed}` : ''}
                  </span>
                </button>
                <div class="queue-line">
                  <span class="queue-status">
                    {statusText(t)}
                    {eta ? ` · ${eta}` : ''}
                  </span>
                  {isOpen(t) ? (
                    <button type="button" class="secondary small" aria-describedby={promptId} disabled={!!canceling[t.task_id]} onClick={() => void cancel(t)}>
                      Cancel
                    </button>
                  ) : null}
                  {t.status === 'failed' ? (
                    <button type="button" class="secondary small" aria-describedby={promptId} onClick={() => onRetry(t)}>
                      Retry
                    </button>
                  ) : null}
                </div>
                {t.status === 'processing' ? (
                  <div class="progress progress-thin" role="progressbar" aria-label={`Progress: ${t.prompt}`} aria-valuenow={p} aria-valuemin={0} aria-valuemax={100}>
                    <div class="progress-fill" style={{ width: `${Math.max(p, 2)}%` }} />
                  </div>
                ) : null}
                {t.status === 'failed' ? <p class="queue-error">{t.error?.message || 'The task failed.'}</p> : null}
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}
