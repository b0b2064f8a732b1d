// Builds the console into ../src/admin/console/, where the admin listener embeds it
// (src/admin/console.rs): index.html, assets/console.js, assets/console.css and
// assets/favicon.svg, under fixed names (the server gives them an ETag of their content).
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';

const out = new URL('../src/admin/console/', import.meta.url);
const assets = new URL('assets/', out);

await rm(out, { recursive: true, force: true });
await mkdir(assets, { recursive: true });
await build({
  entryPoints: { console: 'src/main.tsx' },
  outdir: assets.pathname,
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'eof',
  charset: 'utf8',
  // Served beside the bundle, not bundled.
  external: ['/assets/*'],
  logLevel: 'warning',
});
await copyFile(new URL('public/index.html', import.meta.url), new URL('index.html', out));
await copyFile(new URL('public/favicon.svg', import.meta.url), new URL('favicon.svg', assets));
