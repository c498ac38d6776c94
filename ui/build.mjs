// Builds the UI into ../dist: hashed, minified assets under dist/assets and an
// index.html that references them. Deterministic: same sources, same bytes.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const uiDir = dirname(fileURLToPath(import.meta.url));
const distDir = resolve(uiDir, '..', 'dist');
const assetsDir = join(distDir, 'assets');

// empty dist first so stale hashed files never linger
rmSync(distDir, { recursive: true, force: true });
mkdirSync(assetsDir, { recursive: true });

const result = await esbuild.build({
  absWorkingDir: uiDir,
  entryPoints: ['src/main.tsx', 'src/styles.css'],
  entryNames: '[name]-[hash]',
  outdir: assetsDir,
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'none',
  sourcemap: false,
  charset: 'utf8',
  metafile: true,
  logLevel: 'warning',
});

const outputs = {};
for (const [file, meta] of Object.entries(result.metafile.outputs)) {
  // relative to index.html, so the page works under any base path a proxy strips
  if (meta.entryPoint) outputs[meta.entryPoint] = relative(distDir, resolve(uiDir, file)).split('\\').join('/');
}
const js = outputs['src/main.tsx'];
const css = outputs['src/styles.css'];
if (!js || !css) throw new Error(`build: missing entry outputs in ${JSON.stringify(outputs)}`);

const icon = readFileSync(join(uiDir, 'src', 'icon.svg'));
const iconName = `icon-${createHash('sha256').update(icon).digest('hex').slice(0, 8).toUpperCase()}.svg`;
writeFileSync(join(assetsDir, iconName), icon);

const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark">
<meta name="theme-color" content="#0d0f14">
<meta name="description" content="Gooni: generate images and videos on your own GPU workspaces.">
<title>Gooni</title>
<link rel="icon" type="image/svg+xml" href="assets/${iconName}">
<link rel="stylesheet" href="${css}">
<script type="module" src="${js}"></script>
</head>
<body>
<div id="app"></div>
<noscript><p>Gooni needs JavaScript to run its interface.</p></noscript>
</body>
</html>
`;
writeFileSync(join(distDir, 'index.html'), html);

for (const f of [js, css, `assets/${iconName}`]) console.log(`dist/${f}`);
console.log(`dist/index.html (${basename(distDir)})`);
