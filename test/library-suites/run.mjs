#!/usr/bin/env node
// Runs a queue library's OWN test suite twice: plain, and with queue-otel's instrumentation
// patched into the library's source classes (setup-instrumented.mjs, added to the library's
// vitest setupFiles). Prints passed/failed/skipped for each run and the tests whose result
// differs. A test that fails only instrumented is a queue-otel bug until shown otherwise.
//
//   node test/library-suites/run.mjs <library> [--source DIR] [--plain | --instrumented]
//        [--repeat N] [--fetch] [--config FILE] [-- <vitest file filters>...]
//
// <library>: bullmq | pg-boss (test/library-suites/libraries.mjs).
// It needs a source snapshot of the library (its GitHub repository at a release tag, with its
// devDependencies installed): the default place is ~/.cache/queue-otel-suites/<library>-<version>,
// or --source DIR / QO_SUITE_SOURCE. --fetch makes one there (git clone of the release tag, npm
// install, the library's code generation): it needs GitHub and the npm registry, so CI, which
// cannot reach GitHub, runs this only where a snapshot was made beforehand.
//
// Needs a built queue-otel (npm run build). BullMQ's suite runs on a private redis-server on a
// free port (its tests flush and obliterate freely), started and stopped here; pg-boss's on the
// PostgreSQL at POSTGRES_HOST/POSTGRES_PORT (default 127.0.0.1:5432; it creates database pgboss
// and one schema per test). Exit status: 1 when a test fails only instrumented (in every repeat).
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LIBRARIES } from './libraries.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SETUP = join(ROOT, 'test/library-suites/setup-instrumented.mjs');
const SETUP_CJS = join(ROOT, 'test/library-suites/setup-instrumented.cjs');

function usage(message) {
  if (message) console.error(`library-suites: ${message}`);
  console.error(`usage: node test/library-suites/run.mjs <${Object.keys(LIBRARIES).join('|')}> [--source DIR] [--plain|--instrumented] [--repeat N] [--fetch] [--config FILE] [-- files...]`);
  process.exit(2);
}

const args = process.argv.slice(2);
const name = args.shift();
const library = LIBRARIES[name];
if (library === undefined) usage(`unknown library ${name ?? ''}`);
let source = process.env.QO_SUITE_SOURCE || join(homedir(), '.cache/queue-otel-suites', `${name}-${library.version}`);
let modes = ['plain', 'instrumented'];
let repeat = 1;
let fetch = false;
// The library's vitest config the run starts from (libraries.mjs `config` unless --config FILE,
// a path relative to the snapshot, e.g. BullMQ's vitest.ioredis.config.ts).
let config;
const filters = [];
while (args.length > 0) {
  const a = args.shift();
  if (a === '--source') source = resolve(args.shift() ?? usage('--source needs a folder'));
  else if (a === '--plain') modes = ['plain'];
  else if (a === '--instrumented') modes = ['instrumented'];
  else if (a === '--repeat') repeat = Math.max(1, Number(args.shift()) || 1);
  else if (a === '--fetch') fetch = true;
  else if (a === '--config') config = args.shift() ?? usage('--config needs a file');
  else if (a === '--') filters.push(...args.splice(0));
  else usage(`unknown argument ${a}`);
}

function run(cmd, cwd, env) {
  console.log(`library-suites: ${cwd}$ ${cmd.join(' ')}`);
  const r = spawnSync(cmd[0], cmd.slice(1), { cwd, stdio: 'inherit', env: { ...process.env, ...env } });
  return r.status === 0;
}

function howToGetSource() {
  return [
    `library-suites: ${name}'s suite needs a source snapshot of ${name} ${library.version} at ${source}; there is none.`,
    `  It is the library's GitHub repository at ${library.tag} with its devDependencies installed. Make one with`,
    `    node test/library-suites/run.mjs ${name} --fetch`,
    `  (needs github.com and the npm registry; CI cannot reach GitHub), or by hand:`,
    `    mkdir -p ${source} && cd ${source} && git init -q && git fetch --depth 1 ${library.repository} ${library.tag} && git checkout FETCH_HEAD`,
    `    cd ${source} && ${library.install.join(' ')}`,
    ...library.prepare.flatMap((p) => p.steps.map((c) => `    ${c.join(' ')}${p.optional ? '   (optional)' : ''}`)),
    `  then pass --source DIR if it is elsewhere.`,
  ].join('\n');
}

if (fetch) {
  if (!existsSync(source)) {
    mkdirSync(dirname(source), { recursive: true });
    // A tag or a commit: fetched alone, at depth 1.
    mkdirSync(source, { recursive: true });
    const ok = run(['git', 'init', '-q'], source) && run(['git', 'fetch', '-q', '--depth', '1', library.repository, library.tag], source) && run(['git', 'checkout', '-q', 'FETCH_HEAD'], source);
    if (!ok) process.exit(1);
  }
  if (!existsSync(join(source, 'node_modules')) && !run(library.install, source)) process.exit(1);
}
if (!existsSync(join(source, 'package.json')) || !existsSync(join(source, library.sourceEntry))) {
  console.error(howToGetSource());
  process.exit(2);
}
if (!existsSync(join(source, 'node_modules', library.runner ?? 'vitest'))) {
  console.error(`library-suites: ${source} has no node_modules/${library.runner ?? 'vitest'}: install its devDependencies (cd ${source} && ${library.install.join(' ')}).`);
  process.exit(2);
}
const version = JSON.parse(readFileSync(join(source, 'package.json'), 'utf8')).version;
// The library's code generation and build (libraries.mjs `prepare`), each when what it makes is
// missing; once one has run, the later ones run too (a build follows a new generation).
let prepared = false;
for (const p of library.prepare) {
  if (p.optional) {
    // Optional generation (pg-boss's Prisma client): its tests fail plain and instrumented alike without it.
    if (fetch) for (const step of p.steps) if (!run(step, source)) console.log('library-suites: that step failed; the tests that need it fail in both runs.');
    continue;
  }
  if (!prepared && existsSync(join(source, p.creates))) continue;
  for (const step of p.steps) if (!run(step, source)) process.exit(1);
  if (!existsSync(join(source, p.creates))) {
    console.error(`library-suites: ${p.steps.map((c) => c.join(' ')).join(' && ')} did not make ${p.creates}`);
    process.exit(1);
  }
  prepared = true;
}
if (!existsSync(join(ROOT, 'dist/esm/index.js'))) {
  console.error('library-suites: queue-otel is not built: npm run build');
  process.exit(2);
}

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

async function startRedis() {
  const port = await freePort();
  const dir = join(tmpdir(), `queue-otel-suite-redis-${port}`);
  mkdirSync(dir, { recursive: true });
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  await new Promise((ok, fail) => {
    child.once('error', fail);
    const deadline = Date.now() + 10_000;
    const tick = () => {
      const r = spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' });
      if (r.stdout?.trim() === 'PONG') ok();
      else if (Date.now() > deadline) fail(new Error('redis-server did not start'));
      else setTimeout(tick, 100);
    };
    tick();
  });
  return { port, stop: () => { child.kill('SIGTERM'); rmSync(dir, { recursive: true, force: true }); } };
}

/** A config beside the library's own: its config, our setup file added for instrumented runs. */
function writeConfig(mode) {
  const file = join(source, `vitest.queue-otel-${mode}.config.mts`);
  const setup = mode === 'instrumented' ? JSON.stringify(SETUP) : '';
  writeFileSync(
    file,
    `// Written by queue-otel's test/library-suites/run.mjs.\n` +
      `import base from './${config ?? library.config}';\n` +
      `const setupFiles = [].concat(base.test?.setupFiles ?? []);\n` +
      (setup ? `setupFiles.push(${setup});\n` : '') +
      `export default { ...base, test: { ...base.test, setupFiles } };\n`,
  );
  return file;
}

async function runSuite(mode, round) {
  const out = join(tmpdir(), `queue-otel-suite-${name}-${mode}-${round}-${process.pid}.json`);
  const report = join(tmpdir(), `queue-otel-suite-${name}-${mode}-${round}-${process.pid}.report`);
  rmSync(report, { force: true });
  const ava = library.runner === 'ava';
  const mocha = library.runner === 'mocha';
  const vitestConfig = ava || mocha ? undefined : writeConfig(mode);
  const namespace = library.redis === 'namespace';
  const redis = library.redis && !namespace ? await startRedis() : undefined;
  const env = { QO_SUITE_LIB: name, QO_SUITE_SOURCE: source, QO_SUITE_REPORT: report, FORCE_COLOR: '0' };
  if (redis) Object.assign(env, { REDIS_HOST: '127.0.0.1', REDIS_PORT: String(redis.port) });
  let cmd = mocha
    ? [
        // Mocha's JSON reporter on stdout (the log); the CommonJS setup --require'd first.
        process.execPath, 'node_modules/mocha/bin/mocha', '--reporter', 'json', '--exit', '--timeout', '5000',
        ...(mode === 'instrumented' ? ['--require', SETUP_CJS] : []),
        ...(filters.length > 0 ? filters : ['test/test_*']),
      ]
    : ava
    ? [
        // ava's TAP output is parsed; each test file runs in its own child process, which
        // --require's the CommonJS setup before the test file loads the library's source.
        process.execPath, 'node_modules/ava/entrypoints/cli.mjs', '--tap', '--no-worker-threads', '--timeout=60s',
        ...(mode === 'instrumented' ? [`--node-arguments=--require=${SETUP_CJS}`] : []),
        ...filters,
      ]
    : [
        process.execPath, 'node_modules/vitest/vitest.mjs', 'run', '--config', vitestConfig,
        '--reporter=dot', '--reporter=json', `--outputFile.json=${out}`,
        ...(library.fileParallelism ? [] : ['--no-file-parallelism']),
        ...filters,
      ];
  const started = Date.now();
  console.log(`library-suites: ${name} ${version} ${mode}${repeat > 1 ? ` (round ${round})` : ''}: ${cmd.slice(1).join(' ')}`);
  if (namespace) {
    // A network namespace of its own (unshare -n, root or user namespaces): its loopback has a
    // redis-server on 6379 that only these tests see, so tests that hard-code 6379 and flush it
    // touch nothing else on the machine.
    const pidfile = join(tmpdir(), `queue-otel-suite-${name}-${process.pid}.redis.pid`);
    const script = `ip link set lo up && redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --pidfile ${pidfile} --dir ${tmpdir()} >/dev/null && sleep 0.5 && { "$@"; rc=$?; kill $(cat ${pidfile}); exit $rc; }`;
    cmd = ['unshare', '-n', 'sh', '-c', script, 'sh', ...cmd];
  }
  const log = join(tmpdir(), `queue-otel-suite-${name}-${version}-${mode}-${round}-${process.pid}.log`);
  const fd = openSync(log, 'w');
  await new Promise((ok) => {
    const child = spawn(cmd[0], cmd.slice(1), { cwd: source, stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
    child.on('exit', ok);
  });
  closeSync(fd);
  console.log(`library-suites: the test runner's output: ${log}`);
  redis?.stop();
  if (vitestConfig) rmSync(vitestConfig, { force: true });
  const results = new Map();
  let files;
  if (mocha) {
    // The JSON document is the last thing on stdout: find where it starts.
    const text = readFileSync(log, 'utf8');
    const start = text.lastIndexOf('{\n  "stats"');
    if (start < 0) throw new Error(`mocha wrote no JSON results (${log})`);
    const json = JSON.parse(text.slice(start));
    for (const t of json.tests) {
      const status = json.pending.some((p) => p.fullTitle === t.fullTitle && p.file === t.file) ? 'skipped'
        : t.err && Object.keys(t.err).length > 0 ? 'failed' : 'passed';
      results.set(`${(t.file ?? '').replace(`${source}/`, '')} > ${t.fullTitle}`, status);
    }
    for (const f of json.failures) {
      const key = `${(f.file ?? '').replace(`${source}/`, '')} > ${f.fullTitle}`;
      if (!results.has(key)) results.set(key, 'failed');
    }
    files = filters.length > 0 ? filters.length : readdirSync(join(source, 'test')).filter((f) => library.testFiles.test(f)).length;
  } else if (ava) {
    // TAP: "ok N - file › title", "not ok N - ...", "# SKIP" / "# TODO" directives.
    for (const line of readFileSync(log, 'utf8').split('\n')) {
      const m = /^(not ok|ok) \d+ - (.*?)(?: # (SKIP|TODO)\b.*)?$/.exec(line);
      if (!m) continue;
      const title = m[2];
      results.set(title, m[3] ? 'skipped' : m[1] === 'ok' ? 'passed' : 'failed');
    }
    files = filters.length > 0 ? filters.length : readdirSync(join(source, 'test')).filter((f) => library.testFiles.test(f)).length;
  } else {
  if (!existsSync(out)) throw new Error(`vitest wrote no results (${out})`);
  const json = JSON.parse(readFileSync(out, 'utf8'));
  files = json.testResults.length;
  for (const file of json.testResults) {
    const rel = file.name.startsWith(source) ? file.name.slice(source.length + 1) : file.name;
    if (file.assertionResults.length === 0 && file.status === 'failed') results.set(`${rel} (file)`, 'failed');
    for (const t of file.assertionResults) {
      const status = t.status === 'passed' ? 'passed' : t.status === 'failed' ? 'failed' : 'skipped';
      // Two tests of a file may share a name: number the later ones, in file order.
      let key = `${rel} > ${t.fullName}`;
      for (let n = 2; results.has(key); n += 1) key = `${rel} > ${t.fullName} (#${n})`;
      results.set(key, status);
    }
  }
  }
  let instrumentation;
  if (mode === 'instrumented') {
    const lines = existsSync(report) ? readFileSync(report, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
    instrumentation = { files: lines.length, spans: lines.reduce((a, l) => a + l.spans, 0), metricPoints: lines.reduce((a, l) => a + l.metricPoints, 0) };
  }
  rmSync(out, { force: true });
  rmSync(report, { force: true });
  const counts = { passed: 0, failed: 0, skipped: 0 };
  for (const s of results.values()) counts[s] += 1;
  return { mode, round, files, counts, results, instrumentation, seconds: Math.round((Date.now() - started) / 1000) };
}

const runs = [];
for (let round = 1; round <= repeat; round += 1) {
  for (const mode of modes) {
    const r = await runSuite(mode, round);
    runs.push(r);
    const extra = r.instrumentation ? `; instrumentation: ${r.instrumentation.spans} spans, ${r.instrumentation.metricPoints} metric points exported over ${r.instrumentation.files} files` : '';
    console.log(`library-suites: ${name} ${version} ${mode}${repeat > 1 ? ` round ${round}` : ''}: ${r.files} files, ${r.counts.passed} passed, ${r.counts.failed} failed, ${r.counts.skipped} skipped (${r.seconds} s)${extra}`);
    for (const [test, s] of r.results) if (s === 'failed') console.log(`  failed: ${test}`);
    if (r.instrumentation && r.instrumentation.spans === 0) console.log('library-suites: WARNING no span was exported: no job ran through the instrumentation (the patch itself was checked; files that run no job, such as BullMQ\'s child-pool tests, export none)');
  }
}

let exit = 0;
if (modes.length === 2) {
  const plain = runs.filter((r) => r.mode === 'plain');
  const inst = runs.filter((r) => r.mode === 'instrumented');
  const names = new Set(runs.flatMap((r) => [...r.results.keys()]));
  const differs = [];
  for (const test of names) {
    const p = plain.map((r) => r.results.get(test) ?? 'absent');
    const i = inst.map((r) => r.results.get(test) ?? 'absent');
    if (p.join() === i.join()) continue;
    // Repeats: a test that fails instrumented in every round and passes plain in every round.
    const onlyInstrumented = i.every((s) => s === 'failed') && p.every((s) => s !== 'failed');
    differs.push({ test, plain: p.join('/'), instrumented: i.join('/'), onlyInstrumented });
  }
  console.log(`library-suites: ${name} ${version}: ${differs.length} tests differ between plain and instrumented${repeat > 1 ? ` (over ${repeat} rounds)` : ''}`);
  for (const d of differs) console.log(`  ${d.onlyInstrumented ? 'FAILS INSTRUMENTED' : 'differs'}: ${d.test} (plain ${d.plain}, instrumented ${d.instrumented})`);
  if (differs.some((d) => d.onlyInstrumented)) exit = 1;
} else if (runs.some((r) => r.counts.failed > 0)) {
  exit = 1;
}
process.exit(exit);
