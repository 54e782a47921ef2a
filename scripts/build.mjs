// Builds the ESM and CommonJS outputs with plain tsc, then marks each folder with its module type
// so Node loads dist/esm as ESM and dist/cjs as CommonJS whatever the root package.json says.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
rmSync('dist', { recursive: true, force: true });
for (const [project, type] of [['tsconfig.json', 'module'], ['tsconfig.cjs.json', 'commonjs']]) {
  execFileSync(process.execPath, [tsc, '-p', project], { stdio: 'inherit' });
  const dir = type === 'module' ? 'dist/esm' : 'dist/cjs';
  writeFileSync(`${dir}/package.json`, JSON.stringify({ type }) + '\n');
}
// src/self-url.ts says where the module is with import.meta.url, which CommonJS lacks.
writeFileSync(
  'dist/cjs/self-url.js',
  '"use strict";\n// Written by scripts/build.mjs: the CommonJS form of src/self-url.ts.\n' +
    'Object.defineProperty(exports, "__esModule", { value: true });\n' +
    'exports.selfUrl = require("node:url").pathToFileURL(__filename).href;\n',
);
// The live dashboard's page, and uPlot (MIT) from its npm package, served from the package: no CDN.
const assets = 'dist/assets/dashboard';
mkdirSync(assets, { recursive: true });
cpSync('src/dashboard/page', assets, { recursive: true });
const uplot = dirname(createRequire(import.meta.url).resolve('uplot/package.json'));
cpSync(join(uplot, 'dist/uPlot.iife.min.js'), join(assets, 'uPlot.iife.min.js'));
cpSync(join(uplot, 'dist/uPlot.min.css'), join(assets, 'uPlot.min.css'));
cpSync(join(uplot, 'LICENSE'), join(assets, 'uPlot.LICENSE'));
