// Tests ui/src/pngimport.ts under Node 20 (node --test test/). The module is
// bundled in memory by esbuild (ui's devDependency) and imported from a data
// URL, so nothing is written to disk. Run from Go: internal/pngmeta/node_test.go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const uiDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(uiDir, '..');
const built = await esbuild.build({
  absWorkingDir: uiDir,
  entryPoints: ['src/pngimport.ts'],
  bundle: true,
  write: false,
  format: 'esm',
  platform: 'neutral',
  logLevel: 'error',
});
await esbuild.stop(); // the service process is not needed after the build
const mod = await import('data:text/javascript;base64,' + Buffer.from(built.outputFiles[0].contents).toString('base64'));
const { importPng, readPngTexts, parseA1111, resolveModel, fitParams, MAX_PNG_BYTES, MAX_TEXT_CHUNK } = mod;

const catalog = JSON.parse(readFileSync(join(repo, 'inference_settings.json'), 'utf8'));
const fixture = (name) => new Uint8Array(readFileSync(join(repo, 'e2e/browser/testdata/import', name)));
const model = (id) => catalog.models.find((m) => m.id === id);
// notes name models by their catalog label, which the catalog may change
const label = (id) => model(id).label;
const labelRe = (id) => label(id).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// ------------------------------------------------------------ PNG building

const table = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = table[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
const enc = (s) => (typeof s === 'string' ? Buffer.from(s, 'latin1') : Buffer.from(s));
function chunk(type, data) {
  const d = enc(data);
  const out = Buffer.alloc(12 + d.length);
  out.writeUInt32BE(d.length, 0);
  out.write(type, 4, 'latin1');
  d.copy(out, 8);
  out.writeUInt32BE(crc(out.subarray(4, 8 + d.length)), 8 + d.length);
  return out;
}
const SIG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const IHDR = chunk('IHDR', Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]));
const IDAT = chunk('IDAT', deflateSync(Buffer.from([0, 0x80])));
const IEND = chunk('IEND', '');
const png = (...texts) => new Uint8Array(Buffer.concat([SIG, IHDR, ...texts, IDAT, IEND]));
const tEXt = (k, v) => chunk('tEXt', Buffer.concat([enc(k), Buffer.from([0]), enc(v)]));
const zTXt = (k, z) => chunk('zTXt', Buffer.concat([enc(k), Buffer.from([0, 0]), z]));
const iTXt = (k, v, zip = false) =>
  chunk('iTXt', Buffer.concat([enc(k), Buffer.from([0, zip ? 1 : 0, 0, 0, 0]), zip ? deflateSync(Buffer.from(v, 'utf8')) : Buffer.from(v, 'utf8')]));

function find(bytes, ascii) {
  const i = Buffer.from(bytes).indexOf(ascii, 0, 'latin1');
  assert.ok(i > 0, `${ascii} not in file`);
  return i;
}
function flip(bytes, at) {
  const c = new Uint8Array(bytes);
  c[at] ^= 0xff;
  return c;
}
const hasNote = (r, re) => assert.ok(r.notes.some((n) => re.test(n)), `no note matching ${re} in ${JSON.stringify(r.notes)}`);

// ------------------------------------------------------------ the fixtures

test('gooni-flux.png fills everything from the gooni chunk, with no notes', async () => {
  const r = await importPng(fixture('gooni-flux.png'), catalog);
  assert.deepEqual(r, {
    source: 'gooni',
    model: 'flux',
    model_name: 'flux',
    mode: 't2i',
    prompt: '富士山の上の猫、夕焼け — a cat on Mount Fuji at sunset 🌅',
    negative_prompt: '',
    params: { width: 1024, height: 768, steps: 28, guidance: 3.5, seed: 1234 },
    task_id: '01JQZ8W3K5T1V2X3Y4Z5A6B7C8',
    notes: [],
  });
});

test('a1111-pony.png maps the parameters and says what it left out', async () => {
  const r = await importPng(fixture('a1111-pony.png'), catalog);
  assert.equal(r.source, 'parameters');
  assert.equal(r.model, 'pony');
  assert.equal(r.model_name, 'ponyDiffusionV6XL_v6StartWithThisOne');
  assert.equal(r.mode, 't2i');
  assert.equal(r.prompt, 'score_9, score_8_up, a red fox in a snowy forest, detailed fur');
  assert.equal(r.negative_prompt, 'blurry, lowres, bad anatomy');
  assert.deepEqual(r.params, { steps: 30, guidance: 6.5, seed: 987654321, width: 832, height: 1216 });
  hasNote(r, /Sampler “DPM\+\+ 2M Karras”: Gooni does not offer/);
  hasNote(r, new RegExp(`ponyDiffusionV6XL_v6StartWithThisOne.*taken to be ${labelRe('pony')} from`));
  hasNote(r, /Not used.*Schedule type: Karras; Model hash: 67ab2fd8ec; Version: v1\.10\.1/);
  assert.equal(r.notes.length, 3);
});

test('comfyui-pony.png reads the CLIPTextEncode linked to KSampler positive, not the first one', async () => {
  const r = await importPng(fixture('comfyui-pony.png'), catalog);
  assert.equal(r.source, 'comfyui');
  assert.equal(r.model, 'pony');
  assert.equal(r.model_name, 'ponyDiffusionV6XL_v6StartWithThisOne.safetensors');
  assert.equal(r.prompt, 'score_9, a lighthouse on a cliff at dawn, café terrace, oil painting');
  assert.equal(r.negative_prompt, 'text, watermark, blurry');
  assert.deepEqual(r.params, { seed: 424242, steps: 25, guidance: 7.5, width: 896, height: 1152 });
  hasNote(r, /sampler “euler_ancestral”, scheduler “normal”: Gooni does not offer/);
  hasNote(r, new RegExp(`taken to be ${labelRe('pony')} from`));
  assert.equal(r.notes.length, 2);
});

test('a1111-unknown-model.png keeps the settings and says the model is unknown', async () => {
  const r = await importPng(fixture('a1111-unknown-model.png'), catalog);
  assert.equal(r.source, 'parameters');
  assert.equal(r.model, null);
  assert.equal(r.model_name, 'sd_xl_base_1.0');
  assert.equal(r.prompt, 'a watercolor map of an imaginary island');
  assert.equal(r.negative_prompt, '');
  assert.deepEqual(r.params, { steps: 20, guidance: 7, seed: 3141592, width: 1024, height: 1024 });
  hasNote(r, /“sd_xl_base_1\.0” is not one Gooni offers; choose a model/);
  hasNote(r, /Sampler “Euler a”/);
});

// ------------------------------------------------------------ source order

test('gooni wins over parameters, which wins over a ComfyUI prompt', async () => {
  const gooni = JSON.stringify({ model: 'pony', mode: 't2i', prompt: 'from gooni', negative_prompt: 'n', params: { steps: 5 }, task_id: 't' });
  const comfy = readPngTexts(fixture('comfyui-pony.png')).then((t) => t.texts.get('prompt'));
  const all = png(tEXt('prompt', await comfy), tEXt('parameters', 'from a1111\nSteps: 9, Seed: 1, Size: 512x512'), iTXt('gooni', gooni));
  assert.equal((await importPng(all, catalog)).prompt, 'from gooni');
  const noGooni = png(tEXt('prompt', await comfy), tEXt('parameters', 'from a1111\nSteps: 9, Seed: 1, Size: 512x512'));
  assert.equal((await importPng(noGooni, catalog)).source, 'parameters');
});

test('a broken gooni chunk falls back to parameters, with a note', async () => {
  for (const bad of ['{not json', '[1,2]', '{"model": 3}', '['.repeat(200000)]) {
    const r = await importPng(png(iTXt('gooni', bad), tEXt('parameters', 'a cat\nSteps: 9, Seed: 1, Model: flux')), catalog);
    assert.equal(r.source, 'parameters', bad.slice(0, 20));
    assert.equal(r.model, 'flux');
    hasNote(r, /gooni chunk/);
  }
});

test('a damaged gooni chunk (bad CRC) is refused and parameters used', async () => {
  const f = fixture('gooni-flux.png');
  const r = await importPng(flip(f, find(f, 'iTXtgooni') + 20), catalog);
  assert.equal(r.source, 'parameters');
  assert.equal(r.model, 'flux');
  assert.equal(r.prompt, '富士山の上の猫、夕焼け — a cat on Mount Fuji at sunset 🌅');
  assert.deepEqual(r.params, { steps: 28, guidance: 3.5, seed: 1234, width: 1024, height: 768 });
  hasNote(r, /“gooni” chunk is damaged/);
});

test('files with nothing to import say so', async () => {
  let r = await importPng(png(), catalog);
  assert.equal(r.source, null);
  hasNote(r, /no generation settings/);
  r = await importPng(png(tEXt('workflow', '{"nodes": []}')), catalog);
  assert.equal(r.source, null);
  hasNote(r, /ComfyUI workflow but no prompt graph/);
  r = await importPng(new Uint8Array(Buffer.from('\xff\xd8\xff\xe0\x00\x10JFIF', 'latin1')), catalog);
  assert.deepEqual(r.notes, ['This is not a PNG file.']);
  r = await importPng(new Uint8Array(0), catalog);
  assert.deepEqual(r.notes, ['This is not a PNG file.']);
});

// ------------------------------------------------------------ hostile files

test('a damaged parameters chunk is not used', async () => {
  const f = fixture('a1111-pony.png');
  const r = await importPng(flip(f, find(f, 'fox')), catalog);
  assert.equal(r.source, null);
  hasNote(r, /“parameters” chunk is damaged/);
});

test('a file cut short keeps what came before the cut', async () => {
  const f = fixture('a1111-pony.png');
  const r = await importPng(f.subarray(0, find(f, 'IDAT') + 100), catalog);
  assert.equal(r.source, 'parameters');
  assert.equal(r.model, 'pony');
  hasNote(r, /cut short inside its IDAT chunk/);
  const noEnd = await importPng(f.subarray(0, f.length - 12), catalog);
  assert.equal(noEnd.source, 'parameters');
  hasNote(noEnd, /ends without its IEND/);
});

test('hostile length fields and chunk types stop the walk without a throw', async () => {
  const huge = Buffer.concat([SIG, IHDR, Buffer.from([0x7f, 0xff, 0xff, 0xff]), Buffer.from('tEXtparameters\0x')]);
  let r = await readPngTexts(new Uint8Array(huge));
  assert.equal(r.texts.size, 0);
  assert.match(r.notes.join(' '), /cut short inside its tEXt chunk/);
  const over = Buffer.concat([SIG, IHDR, Buffer.from([0x80, 0, 0, 0]), Buffer.from('IDAT1234')]);
  r = await readPngTexts(new Uint8Array(over));
  assert.match(r.notes.join(' '), /damaged at byte 33/);
  const badType = Buffer.concat([SIG, IHDR, chunk('t3Xt', 'k\0v'), tEXt('parameters', 'x')]);
  r = await readPngTexts(new Uint8Array(badType));
  assert.equal(r.texts.size, 0);
  assert.match(r.notes.join(' '), /damaged at byte 33/);
});

test('files over MAX_PNG_BYTES are refused before reading', async () => {
  const big = new Uint8Array(MAX_PNG_BYTES + 1);
  big.set(png(tEXt('parameters', 'a\nSteps: 1, Seed: 1, Model: flux')));
  const r = await importPng(big, catalog);
  assert.equal(r.source, null);
  assert.match(r.notes[0], /larger than 64 MiB/);
});

test('zTXt and compressed iTXt are read; a zlib bomb and a text chunk over the limit are not', async () => {
  let r = await readPngTexts(png(zTXt('Comment', deflateSync(Buffer.from('caf\xe9 au lait', 'latin1'))), iTXt('Title', '猫の絵', true)));
  assert.equal(r.texts.get('Comment'), 'café au lait');
  assert.equal(r.texts.get('Title'), '猫の絵');
  assert.deepEqual(r.notes, []);

  // 32 MiB each, 8 times the limit, a few dozen KiB compressed. The
  // decompressor is wrapped to count the bytes it hands out: reading stops
  // near the 4 MiB limit, it does not inflate the whole 32 MiB first.
  const bombs = png(zTXt('parameters', deflateSync(Buffer.alloc(32 << 20), { level: 1 })), iTXt('gooni', 'x'.repeat(32 << 20), true));
  const Real = globalThis.DecompressionStream;
  const inflated = [];
  globalThis.DecompressionStream = class extends Real {
    get readable() {
      const i = inflated.push(0) - 1;
      return super.readable.pipeThrough(new TransformStream({
        transform(chunk, c) {
          inflated[i] += chunk.length;
          c.enqueue(chunk);
        },
      }));
    }
  };
  try {
    r = await readPngTexts(bombs);
  } finally {
    globalThis.DecompressionStream = Real;
  }
  assert.equal(r.texts.size, 0);
  assert.equal(r.notes.filter((n) => /decompresses to more than 4194304 bytes/.test(n)).length, 2);
  assert.equal(inflated.length, 2);
  for (const n of inflated) {
    assert.ok(n > 4 << 20 && n < 6 << 20, `a bomb was inflated to ${n} bytes; want just past the 4 MiB limit, not its 32 MiB`);
  }

  r = await readPngTexts(png(zTXt('broken', Buffer.from('not zlib at all')), tEXt('big', 'x'.repeat(MAX_TEXT_CHUNK + 1)), tEXt('ok', 'yes')));
  assert.deepEqual([...r.texts], [['ok', 'yes']]);
  assert.match(r.notes.join(' '), /“broken” chunk's compressed text is damaged/);
  assert.match(r.notes.join(' '), /“big” chunk is larger than 4194304 bytes/);
});

test('text encodings: Latin-1 tEXt, invalid UTF-8 iTXt replaced and noted, first keyword wins', async () => {
  const bad = chunk('iTXt', Buffer.concat([Buffer.from('gooni\0\0\0\0\0'), Buffer.from([0x7b, 0xff, 0xfe, 0x7d])]));
  const r = await readPngTexts(png(tEXt('Gr\xf6\xdfe', 'caf\xe9'), bad, tEXt('Gr\xf6\xdfe', 'second')));
  assert.equal(r.texts.get('Größe'), 'café');
  assert.equal(r.texts.get('gooni'), '{\ufffd\ufffd}');
  assert.match(r.notes.join(' '), /“gooni” chunk is not valid UTF-8/);
  const malformed = await readPngTexts(png(chunk('iTXt', 'k\0\0\0no-terminators'), chunk('tEXt', 'no keyword separator')));
  assert.equal(malformed.texts.size, 0);
  assert.match(malformed.notes.join(' '), /“k” chunk is malformed/);
});

test('mangled fixtures never throw', async () => {
  let seed = 12345;
  const rand = (n) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
  const files = ['gooni-flux.png', 'a1111-pony.png', 'comfyui-pony.png', 'a1111-unknown-model.png'].map(fixture);
  for (let i = 0; i < 1500; i++) {
    const f = new Uint8Array(files[i % files.length]);
    const textEnd = find(f, 'IDAT');
    for (let k = 1 + rand(4); k > 0; k--) f[rand(textEnd)] = rand(256); // mostly in the text chunks
    const cut = rand(3) === 0 ? f.subarray(0, rand(f.length)) : f;
    const r = await importPng(cut, catalog);
    assert.ok(Array.isArray(r.notes) && typeof r.prompt === 'string' && typeof r.params === 'object');
  }
});

// ------------------------------------------------------------ AUTOMATIC1111

test('parseA1111 splits prompt, negative and the key/value line as A1111 does', () => {
  assert.deepEqual(parseA1111('  a cat\non a mat\nNegative prompt: dog\nugly\nSteps: 20, Sampler: Euler a, Lora hashes: "a: 1, b: 2", Seed: 5\n'), {
    prompt: 'a cat\non a mat',
    negative_prompt: 'dog\nugly',
    fields: [['Steps', '20'], ['Sampler', 'Euler a'], ['Lora hashes', 'a: 1, b: 2'], ['Seed', '5']],
  });
  // fewer than three pairs: the last line is prompt
  assert.deepEqual(parseA1111('a cat\nStyle: oil, Mood: calm'), { prompt: 'a cat\nStyle: oil, Mood: calm', negative_prompt: '', fields: [] });
  assert.deepEqual(parseA1111(''), { prompt: '', negative_prompt: '', fields: [] });
});

test('bad numbers in parameters are said, not used', async () => {
  const r = await importPng(png(tEXt('parameters', 'p\nSteps: many, CFG scale: 7, Seed: 1.5, Size: big, Model: pony')), catalog);
  assert.deepEqual(r.params, { guidance: 7 });
  hasNote(r, /Steps “many” is not a whole number/);
  hasNote(r, /Seed “1.5” is not a whole number/);
  hasNote(r, /Size “big” is not WIDTHxHEIGHT/);
});

// ------------------------------------------------------------ ComfyUI graphs

const comfy = (graph) => png(tEXt('prompt', JSON.stringify(graph)));

test('a FLUX graph: UNETLoader through a LoRA, FluxGuidance, a primitive seed', async () => {
  const r = await importPng(
    comfy({
      10: { class_type: 'UNETLoader', inputs: { unet_name: 'flux1-dev.safetensors', weight_dtype: 'default' } },
      11: { class_type: 'LoraLoaderModelOnly', inputs: { model: ['10', 0], lora_name: 'detail.safetensors', strength_model: 0.8 } },
      12: { class_type: 'CLIPTextEncode', inputs: { text: 'a neon city at night', clip: ['20', 0] } },
      13: { class_type: 'FluxGuidance', inputs: { conditioning: ['12', 0], guidance: 3.5 } },
      14: { class_type: 'CLIPTextEncode', inputs: { text: '', clip: ['20', 0] } },
      15: { class_type: 'EmptySD3LatentImage', inputs: { width: 1024, height: 1024, batch_size: 1 } },
      16: { class_type: 'PrimitiveNode', inputs: { value: 77 } },
      17: { class_type: 'KSampler', inputs: { model: ['11', 0], positive: ['13', 0], negative: ['14', 0], latent_image: ['15', 0], seed: ['16', 0], steps: 20, cfg: 1, sampler_name: 'euler', scheduler: 'simple', denoise: 1 } },
    }),
    catalog,
  );
  assert.equal(r.source, 'comfyui');
  assert.equal(r.model, 'flux');
  assert.equal(r.prompt, 'a neon city at night');
  assert.equal(r.negative_prompt, '');
  assert.deepEqual(r.params, { seed: 77, steps: 20, guidance: 3.5, width: 1024, height: 1024 });
  hasNote(r, /LoRAs are not applied by Gooni: detail\.safetensors/);
  hasNote(r, new RegExp(`flux1-dev\\.safetensors.*taken to be ${labelRe('flux')} from`));
});

test('a hires-fix graph takes the first pass; odd graphs give notes, never hang', async () => {
  const base = {
    1: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'pony.safetensors' } },
    2: { class_type: 'CLIPTextEncode', inputs: { text: 'pos', clip: ['1', 1] } },
    3: { class_type: 'CLIPTextEncode', inputs: { text: 'neg', clip: ['1', 1] } },
    4: { class_type: 'EmptyLatentImage', inputs: { width: 768, height: 768, batch_size: 1 } },
    6: { class_type: 'LatentUpscale', inputs: { samples: ['9', 0], width: 1536, height: 1536, upscale_method: 'nearest-exact', crop: 'disabled' } },
    5: { class_type: 'KSampler', inputs: { model: ['1', 0], positive: ['2', 0], negative: ['3', 0], latent_image: ['6', 0], seed: 2, steps: 10, cfg: 5, denoise: 0.5 } },
    9: { class_type: 'KSampler', inputs: { model: ['1', 0], positive: ['2', 0], negative: ['3', 0], latent_image: ['4', 0], seed: 1, steps: 30, cfg: 6 } },
  };
  let r = await importPng(comfy(base), catalog);
  assert.equal(r.model, 'pony');
  assert.deepEqual(r.params, { seed: 1, steps: 30, guidance: 6, width: 768, height: 768 });
  hasNote(r, /2 samplers; settings were taken from node 9/);

  // a cycle through conditioning nodes, a missing node, a link of the wrong shape
  r = await importPng(
    comfy({
      1: { class_type: 'ConditioningCombine', inputs: { conditioning_1: ['2', 0] } },
      2: { class_type: 'ConditioningCombine', inputs: { conditioning_1: ['1', 0] } },
      3: { class_type: 'KSampler', inputs: { positive: ['1', 0], negative: ['99', 0], latent_image: 'nope', model: [1, 2, 3], seed: 1e300 * 10, steps: 4, cfg: 2 } },
    }),
    catalog,
  );
  assert.equal(r.source, 'comfyui');
  assert.equal(r.prompt, '');
  assert.equal(r.model, null);
  hasNote(r, /size could not be read/);
  hasNote(r, /model loader could not be found/);

  r = await importPng(comfy({ 1: { class_type: 'SamplerCustomAdvanced', inputs: {} } }), catalog);
  assert.equal(r.source, null);
  hasNote(r, /no KSampler node \(it uses SamplerCustomAdvanced\)/);
  r = await importPng(png(tEXt('prompt', '{"1": 5}')), catalog);
  assert.equal(r.source, null);
  hasNote(r, /no nodes Gooni can read/);
});

// ------------------------------------------------------------ catalog mapping

test('resolveModel: id, alias, case, folders and extensions; a guess only when unambiguous', () => {
  const notes = [];
  assert.equal(resolveModel(catalog, 'wan-remix', notes).id, 'phr00t');
  assert.equal(resolveModel(catalog, 'FLUX', notes).id, 'flux');
  assert.equal(resolveModel(catalog, 'models\\checkpoints/pony.safetensors', notes).id, 'pony');
  assert.deepEqual(notes, []);
  assert.equal(resolveModel(catalog, 'fluxPonyMerge_v2', notes), null);
  assert.match(notes[0], /not one Gooni offers/);
});

test('fitParams brings values into the model bounds and says so', () => {
  const notes = [];
  const out = fitParams(model('flux'), { width: 1000, height: 4096, steps: 150.4, guidance: 0.5, seed: 4294967295, sampler: 'x', fps: 3 }, notes);
  assert.deepEqual(out, { width: 1008, height: 2048, steps: 50, guidance: 1 });
  assert.deepEqual(notes, [
    'Width 1000 is not a multiple of 16; it was set to 1008.',
    `Height 4096 is outside the range 256–2048 of ${label('flux')}; it was set to 2048.`,
    `Steps 150.4 is outside the range 1–50 of ${label('flux')}; it was set to 50.`,
    `Guidance 0.5 is outside the range 1–10 of ${label('flux')}; it was set to 1.`,
    `Seed 4294967295 is outside the range -1–2147483647 of ${label('flux')}; a random seed will be used.`,
    `Not settings of ${label('flux')}: sampler x; fps 3.`,
  ]);
});

test('a negative prompt for FLUX and an i2v task are noted', async () => {
  let r = await importPng(png(tEXt('parameters', 'a cat\nNegative prompt: dog\nSteps: 9, Seed: 1, Model: flux')), catalog);
  assert.equal(r.negative_prompt, '');
  hasNote(r, new RegExp(`^${labelRe('flux')} takes no negative prompt; “dog” was left out`));
  const g = JSON.stringify({ model: 'anisora', mode: 'i2v', prompt: 'waves', negative_prompt: '', params: { fps: 16, seed: { x: 1 } }, task_id: 't' });
  r = await importPng(png(iTXt('gooni', g)), catalog);
  assert.equal(r.mode, 'i2v');
  assert.deepEqual(r.params, { fps: 16 });
  hasNote(r, /input image, which the PNG does not carry/);
  hasNote(r, /seed has a value Gooni cannot use/);
  r = await importPng(png(iTXt('gooni', JSON.stringify({ model: 'flux', mode: 'i2v', prompt: 'x' }))), catalog);
  assert.equal(r.mode, null);
  hasNote(r, new RegExp(`^${labelRe('flux')} does not offer the mode “i2v”`));
});
