#!/usr/bin/env node
// The version matrix: runs the version-dependent test files of each queue library against each
// version listed in test/matrix/versions.json, and writes what passed to a JSON result file
// (test/matrix/table.mjs turns it into the compatibility tables of docs/compatibility.md and README.md).
//
//   npm run test:matrix                      (builds, then runs every library and version)
//   node test/matrix/run.mjs [--only bullmq | --only bullmq@5.0.0]... [--out file.json] [--list]
//                            [--parallel N] [--except-installed]
//
// --parallel N runs N versions at a time (default 3: the tests mostly wait on Redis, PostgreSQL
// and timers). --except-installed leaves out each library's version this repository has
// installed, which `npm test` has just run with every test file (CI uses it).
//
// Each version is installed once, from the npm registry, into a folder of its own outside the
// repository: $QUEUE_OTEL_MATRIX_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/queue-otel-matrix/<lib>@<version>
// (reused by later runs). The tests load it from there through test/helpers/library.ts, told by
// QUEUE_OTEL_TEST_LIBRARY, QUEUE_OTEL_TEST_LIBRARY_VERSION and QUEUE_OTEL_TEST_LIBRARY_DIR. Every
// run also includes test/matrix/library.test.ts, which checks that the requested version is the
// one loaded and that queue-otel patched it (or, for a version outside the supported range, left
// it alone with one warning). Needs the build (dist/) for the declared ranges and for the fixtures.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import semver from 'semver';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SANITY = 'test/matrix/library.test.ts';
const RUN_TIMEOUT_MS = 10 * 60_000;
const INSTALL_PARALLEL = 4;

const { values: args } = parseArgs({
  options: {
    only: { type: 'string', multiple: true, default: [] },
    out: { type: 'string', default: join(ROOT, 'test/matrix/results.json') },
    list: { type: 'boolean', default: false },
    parallel: { type: 'string', default: '3' },
    'except-installed': { type: 'boolean', default: false },
  },
});
const PARALLEL = Math.max(1, Number.parseInt(args.parallel, 10) || 1);

const cacheRoot =
  process.env.QUEUE_OTEL_MATRIX_CACHE ?? join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'queue-otel-matrix');
const spec = JSON.parse(readFileSync(join(ROOT, 'test/matrix/versions.json'), 'utf8'));

// ---- what to run ------------------------------------------------------------------------------

/** The supported ranges each instrumentation declares (from the build: the source of truth). */
async function declaredRanges() {
  const entry = join(ROOT, 'dist/esm/index.js');
  if (!existsSync(entry)) throw new Error('dist/ is missing: run `npm run build` first (npm run test:matrix does)');
  const { getQueueInstrumentations } = await import(pathToFileURL(entry).href);
  const ranges = {};
  for (const instrumentation of getQueueInstrumentations({ enabled: false })) {
    for (const definition of instrumentation.getModuleDefinitions()) {
      const real = definition.supportedVersions.filter((r) => r !== '*');
      if (real.length > 0) ranges[definition.name] = real.join(' || ');
    }
  }
  return ranges;
}

function selected(library, version) {
  if (args['except-installed'] && installedVersion(ROOT, library) === version) return false;
  if (args.only.length === 0) return true;
  return args.only.some((o) => o === library || o === `${library}@${version}`);
}

/** Every run: library, version, why, whether it is in the range, and its test files. */
function plan(ranges) {
  const runs = [];
  for (const [library, entry] of Object.entries(spec.libraries)) {
    const range = ranges[library];
    if (range === undefined) throw new Error(`no instrumentation declares a range for ${library}`);
    for (const { version, why, with: extra } of entry.versions) {
      if (!semver.satisfies(version, range)) throw new Error(`${library}@${version} is listed as supported but is outside ${range}`);
      if (selected(library, version)) runs.push({ library, version, why, range, supported: true, with: extra ?? {}, files: [...entry.files, SANITY] });
    }
    for (const { version, why, with: extra } of entry.unsupported ?? []) {
      if (semver.satisfies(version, range)) throw new Error(`${library}@${version} is listed as unsupported but is inside ${range}`);
      if (selected(library, version)) runs.push({ library, version, why, range, supported: false, with: extra ?? {}, files: [SANITY] });
    }
  }
  return runs;
}

// ---- installing -------------------------------------------------------------------------------

/** Runs a command in a process group of its own, killed whole (vitest's workers too) on timeout. */
function run(command, argv, options) {
  return new Promise((resolveRun) => {
    const child = spawn(command, argv, { ...options, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const kill = () => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const timer = options.timeoutMs ? setTimeout(kill, options.timeoutMs) : undefined;
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolveRun({ code: code ?? (signal ? 1 : 0), signal, output });
    });
  });
}

/** The version of a package in this repository's node_modules. */
function repoVersion(pkg) {
  return JSON.parse(readFileSync(join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')).version;
}

/**
 * What goes into a version's folder: the library, packages the entry lists under `with` (a version,
 * or "repo" for this repository's), and @opentelemetry/api at the tests' version (pg-boss 12.38
 * has it as a peer; one version keeps one global API).
 */
function dependenciesOf(r) {
  const dependencies = { [r.library]: r.version, '@opentelemetry/api': repoVersion('@opentelemetry/api') };
  for (const [pkg, version] of Object.entries(r.with)) dependencies[pkg] = version === 'repo' ? repoVersion(pkg) : version;
  return dependencies;
}

function installedVersion(dir, library) {
  try {
    return JSON.parse(readFileSync(join(dir, 'node_modules', library, 'package.json'), 'utf8')).version;
  } catch {
    return undefined;
  }
}

function sameDependencies(marker, dependencies) {
  try {
    return JSON.stringify(JSON.parse(readFileSync(marker, 'utf8')).dependencies) === JSON.stringify(dependencies);
  } catch {
    return false;
  }
}

/** Installs a run's library version into its cache folder unless it is there already; returns the folder. */
async function ensureInstalled(r) {
  const { library, version } = r;
  const dir = join(cacheRoot, `${library}@${version}`);
  const marker = join(dir, '.queue-otel-matrix.json');
  const dependencies = dependenciesOf(r);
  if (installedVersion(dir, library) === version && sameDependencies(marker, dependencies)) return { dir, installed: false };
  // Into a fresh folder, renamed into place when complete: an interrupted install is never reused.
  const staging = `${dir}.staging-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  writeFileSync(join(staging, 'package.json'), JSON.stringify({ name: 'queue-otel-matrix-copy', private: true, dependencies }, null, 2));
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const result = await run(npm, ['install', '--no-audit', '--no-fund', '--loglevel=error', '--prefer-offline'], { cwd: staging, timeoutMs: RUN_TIMEOUT_MS });
  if (result.code !== 0 || installedVersion(staging, library) !== version) {
    rmSync(staging, { recursive: true, force: true });
    throw new Error(`npm install ${library}@${version} failed:\n${result.output.trim()}`);
  }
  writeFileSync(join(staging, '.queue-otel-matrix.json'), JSON.stringify({ library, version, dependencies }, null, 2));
  rmSync(dir, { recursive: true, force: true });
  try {
    renameSync(staging, dir);
  } catch (error) {
    // Another run installed the same version meanwhile: use that one.
    rmSync(staging, { recursive: true, force: true });
    if (installedVersion(dir, library) !== version) throw error;
  }
  return { dir, installed: true };
}

async function installAll(runs) {
  const queue = [...runs];
  const failures = new Map();
  const worker = async () => {
    for (let r = queue.shift(); r !== undefined; r = queue.shift()) {
      const started = Date.now();
      try {
        const { dir, installed } = await ensureInstalled(r);
        r.dir = dir;
        if (installed) console.log(`matrix: installed ${r.library}@${r.version} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      } catch (error) {
        failures.set(r, error);
      }
    }
  };
  await Promise.all(Array.from({ length: INSTALL_PARALLEL }, worker));
  return failures;
}

// ---- testing ----------------------------------------------------------------------------------

function firstLines(text, n) {
  return String(text ?? '').split('\n').slice(0, n).join('\n');
}

async function testOne(r, logDir) {
  const report = join(logDir, `${r.library}@${r.version}.json`);
  const log = join(logDir, `${r.library}@${r.version}.log`);
  rmSync(report, { force: true });
  const env = {
    ...process.env,
    QUEUE_OTEL_TEST_LIBRARY: r.library,
    QUEUE_OTEL_TEST_LIBRARY_VERSION: r.version,
    QUEUE_OTEL_TEST_LIBRARY_DIR: r.dir,
    VITE_CONFIG_NATIVE_IGNORE_WARNING: 'true',
  };
  const vitest = join(ROOT, 'node_modules/vitest/vitest.mjs');
  const argv = [vitest, 'run', ...r.files, '--reporter=default', '--reporter=json', `--outputFile.json=${report}`];
  const started = Date.now();
  const result = await run(process.execPath, argv, { cwd: ROOT, env, timeoutMs: RUN_TIMEOUT_MS });
  writeFileSync(log, result.output);
  const outcome = { passed: 0, failed: 0, skipped: 0, failures: [] };
  try {
    const json = JSON.parse(readFileSync(report, 'utf8'));
    outcome.passed = json.numPassedTests;
    outcome.failed = json.numFailedTests;
    outcome.skipped = json.numPendingTests + json.numTodoTests;
    for (const file of json.testResults) {
      for (const a of file.assertionResults) {
        if (a.status === 'failed') outcome.failures.push({ file: relative(ROOT, file.name), test: a.fullName, message: firstLines(a.failureMessages?.[0], 6) });
      }
      if (file.status === 'failed' && file.assertionResults.every((a) => a.status !== 'failed')) {
        outcome.failures.push({ file: relative(ROOT, file.name), test: '(file)', message: firstLines(file.message, 6) });
      }
    }
  } catch {
    // No report: vitest crashed or was killed.
  }
  // A run that failed without a failing test (a crash, a timeout, a file that did not load) counts as one failure.
  if (result.code !== 0 && outcome.failed === 0) {
    outcome.failed = 1;
    if (outcome.failures.length === 0) {
      const why = result.signal ? `killed (${result.signal}) after ${RUN_TIMEOUT_MS / 1000} s` : `vitest exited with ${result.code}`;
      outcome.failures.push({ file: '', test: '(run)', message: `${why}\n${result.output.trim().split('\n').slice(-15).join('\n')}` });
    }
  }
  return { ...outcome, exitCode: result.code, seconds: Math.round((Date.now() - started) / 100) / 10, log };
}

// ---- main -------------------------------------------------------------------------------------

const started = Date.now();
const ranges = await declaredRanges();
const runs = plan(ranges);
if (args.list) {
  for (const r of runs) console.log(`${r.library}@${r.version}${r.supported ? '' : ' (unsupported)'}: ${r.files.join(' ')}`);
  process.exit(0);
}
if (runs.length === 0) {
  console.error(`matrix: nothing matches ${args.only.join(', ')}`);
  process.exit(2);
}
mkdirSync(cacheRoot, { recursive: true });
const logDir = join(cacheRoot, 'logs');
mkdirSync(logDir, { recursive: true });
console.log(`matrix: ${runs.length} runs, ${PARALLEL} at a time; libraries installed under ${cacheRoot}`);

const installFailures = await installAll(runs);
const results = new Array(runs.length);
const pending = runs.map((r, i) => [r, i]);
async function testWorker() {
  for (let next = pending.shift(); next !== undefined; next = pending.shift()) results[next[1]] = await testAndReport(next[0]);
}

async function testAndReport(r) {
  let outcome;
  if (installFailures.has(r)) {
    const message = firstLines(installFailures.get(r).message, 12);
    outcome = { passed: 0, failed: 1, skipped: 0, exitCode: 1, seconds: 0, failures: [{ file: '', test: '(install)', message }] };
  } else {
    outcome = await testOne(r, logDir);
  }
  const { dir, ...rest } = r;
  const entry = { ...rest, ...outcome };
  const status = entry.failed === 0 ? 'pass' : 'FAIL';
  console.log(
    `matrix: ${status} ${`${r.library}@${r.version}`.padEnd(24)} ${String(entry.passed).padStart(3)} passed, ${entry.failed} failed, ${entry.skipped} skipped  (${entry.seconds} s)`,
  );
  for (const f of entry.failures) console.log(`  ✗ ${f.file} > ${f.test}\n${f.message.replace(/^/gm, '      ')}`);
  if (entry.failures.length > 0 && entry.log) console.log(`    full output: ${entry.log}`);
  return entry;
}
await Promise.all(Array.from({ length: PARALLEL }, testWorker));

const totals = results.reduce(
  (t, r) => ({ passed: t.passed + r.passed, failed: t.failed + r.failed, skipped: t.skipped + r.skipped }),
  { passed: 0, failed: 0, skipped: 0 },
);
const seconds = Math.round((Date.now() - started) / 1000);
const output = {
  $comment: 'Written by test/matrix/run.mjs; test/matrix/table.mjs makes the table of docs/compatibility.md from it.',
  date: new Date().toISOString(),
  node: process.version,
  platform: `${process.platform}-${process.arch}`,
  ranges,
  seconds,
  totals,
  runs: results.map(({ log, ...r }) => r),
};
mkdirSync(dirname(resolve(args.out)), { recursive: true });
writeFileSync(resolve(args.out), `${JSON.stringify(output, null, 2)}\n`);

console.log('\nmatrix summary');
for (const r of results) {
  console.log(`  ${r.failed === 0 ? 'pass' : 'FAIL'}  ${`${r.library}@${r.version}`.padEnd(24)} ${r.passed}/${r.passed + r.failed} passed${r.skipped ? `, ${r.skipped} skipped` : ''}`);
}
console.log(`matrix: results in ${relative(process.cwd(), resolve(args.out)) || args.out}; ${seconds} s`);
console.log(`matrix: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exitCode = totals.failed === 0 ? 0 : 1;
