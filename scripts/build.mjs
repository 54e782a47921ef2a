// Builds the ESM and CommonJS outputs with plain tsc, then marks each folder with its module type
// so Node loads dist/esm as ESM and dist/cjs as CommonJS whatever the root package.json says.
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
rmSync('dist', { recursive: true, force: true });
for (const [project, type] of [['tsconfig.json', 'module'], ['tsconfig.cjs.json', 'commonjs']]) {
  execFileSync(process.execPath, [tsc, '-p', project], { stdio: 'inherit' });
  const dir = type === 'module' ? 'dist/esm' : 'dist/cjs';
  writeFileSync(`${dir}/package.json`, JSON.stringify({ type }) + '\n');
}
