// CPU profile of one job (option profileJobs): a V8 profile of the chosen attempt, cut to the
// samples of its own event-loop slices, written as a .cpuprofile, its path on the process span and
// a link on the dashboard. Real BullMQ on the local Redis.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import type * as Inspector from 'node:inspector';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DiagLogLevel, diag } from '@opentelemetry/api';
import { MetricReader } from '@opentelemetry/sdk-metrics';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CpuProfile, keepSlices } from '../src/core/profiling/cpuprofile.js';
import { resolveConfig } from '../src/config.js';
import { MAX_FILES } from '../src/core/profiling/files.js';
import { type MetricReaderClass, createDashboard } from '../src/dashboard/server.js';
import { readSettings } from '../src/register/env.js';
import { type Otel, setupOtel } from './helpers/otel.js';
import { connection, queueName, until } from './helpers/redis.js';

// Every inspector session opened in this process is counted (queue-otel's and this file's own).
const inspector = process.getBuiltinModule('node:inspector') as typeof Inspector;
const connectSession = inspector.Session.prototype.connect;
let sessionsOpened = 0;
inspector.Session.prototype.connect = function (this: Inspector.Session) {
  sessionsOpened++;
  return connectSession.call(this);
};

const warnings: string[] = [];
diag.setLogger(
  {
    error: (...args: unknown[]) => warnings.push(args.join(' ')),
    warn: (...args: unknown[]) => warnings.push(args.join(' ')),
    info() {},
    debug() {},
    verbose() {},
  },
  DiagLogLevel.WARN,
);

let otel: Otel;
const directory = mkdtempSync(join(tmpdir(), 'queue-otel-profile-test-'));
const closers: Array<() => Promise<unknown>> = [];
beforeAll(() => {
  otel = setupOtel();
});
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await otel.shutdown();
  inspector.Session.prototype.connect = connectSession;
  rmSync(directory, { recursive: true, force: true });
});

/** CPU-bound in short slices: spins `ms`, `slices` times, with an await of the event loop between. */
async function hotLoop(slices: number, ms: number): Promise<void> {
  for (let i = 0; i < slices; i++) {
    const end = performance.now() + ms;
    while (performance.now() < end);
    await new Promise((r) => setImmediate(r));
  }
}

async function otherLoop(slices: number, ms: number): Promise<void> {
  for (let i = 0; i < slices; i++) {
    const end = performance.now() + ms;
    while (performance.now() < end);
    await new Promise((r) => setImmediate(r));
  }
}

function queueWithWorker(label: string, processor: any, opts: object = {}) {
  const name = queueName(label);
  const queue = new otel.bullmq.Queue(name, { connection: connection() });
  const worker = new otel.bullmq.Worker(name, processor, { connection: connection(), ...opts });
  closers.push(async () => {
    await worker.close();
    await queue.obliterate({ force: true });
    await queue.close();
  });
  return { name, queue, worker };
}

const spansOf = (queue: string): ReadableSpan[] => otel.spans.getFinishedSpans().filter((s) => s.name === `process ${queue}`);
const profilePathOf = (span: ReadableSpan) => span.attributes['queue.job.profile.path'] as string | undefined;

/**
 * Checks what Chrome DevTools and speedscope rely on; returns the profile. `cut`: a profile cut to
 * a job's slices, whose hit counts are recounted (V8's own count more than its samples list).
 */
function validProfile(path: string, cut = true): CpuProfile {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const ids = new Set(profile.nodes.map((n) => n.id));
  expect(ids.size).toBe(profile.nodes.length);
  expect(profile.nodes[0]!.callFrame.functionName).toBe('(root)');
  const parents = new Map<number, number>();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) {
      expect(ids.has(child)).toBe(true);
      expect(parents.has(child)).toBe(false); // a tree: one parent each
      parents.set(child, node.id);
    }
  }
  for (const node of profile.nodes.slice(1)) expect(parents.has(node.id)).toBe(true);
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  expect(samples.length).toBeGreaterThan(0);
  expect(deltas.length).toBe(samples.length);
  for (const id of samples) expect(ids.has(id)).toBe(true);
  for (const d of deltas) expect(d).toBeGreaterThanOrEqual(0);
  const hits = new Map<number, number>();
  for (const id of samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  if (cut) for (const node of profile.nodes) expect(node.hitCount ?? 0).toBe(hits.get(node.id) ?? 0);
  expect(profile.startTime + deltas.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(profile.endTime + 1);
  return profile;
}

/** Samples whose stack holds a function of each name (a sample may count for several). */
function samplesIn(profile: CpuProfile, names: string[], from = -Infinity, to = Infinity): { total: number; by: Record<string, number> } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const by: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
  let total = 0;
  let t = profile.startTime;
  (profile.samples ?? []).forEach((id, i) => {
    t += profile.timeDeltas![i]!;
    if (t < from || t > to) return;
    total++;
    const stack = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) stack.add(byId.get(at)!.callFrame.functionName);
    for (const name of names) if (stack.has(name)) by[name]!++;
  });
  return { total, by };
}

/** Interleaved hot and other jobs at concurrency 10: 10 of each, each 40 slices of 3 ms. */
async function runInterleaved(label: string) {
  const { name, queue } = queueWithWorker(
    label,
    async (job: { name: string }) => (job.name === 'hot' ? hotLoop(40, 3) : otherLoop(40, 3)),
    { concurrency: 10 },
  );
  await queue.addBulk(Array.from({ length: 20 }, (_, i) => ({ name: i % 2 === 0 ? 'hot' : 'other', data: {} })));
  await until(() => spansOf(name).length === 20, 60_000, '20 jobs');
  return { name, spans: spansOf(name) };
}

describe('off', () => {
  it('opens no inspector session and writes nothing: by default, and when no job of a listed name runs', async () => {
    const before = sessionsOpened;
    const first = await runInterleaved('prof-off');
    otel.instrumentation.setConfig({ profileJobs: ['not-run-here'], profileInterval: 1, profileDirectory: directory });
    const second = await runInterleaved('prof-off-named');
    otel.instrumentation.setConfig({});
    expect(sessionsOpened - before).toBe(0);
    for (const span of [...first.spans, ...second.spans]) expect(profilePathOf(span)).toBeUndefined();
    expect(readdirSync(directory)).toEqual([]);
  });
});

describe('a job on the shared event loop', () => {
  it('the profile of a hot job holds hotLoop and (under 5% of its samples) otherLoop, though other jobs ran between its slices', async () => {
    otel.instrumentation.setConfig({ profileJobs: ['hot'], profileInterval: 1, profileDirectory: directory });
    // This file's own profile of the whole process, for comparison (V8 runs both profilers).
    const session = new inspector.Session();
    session.connect();
    const post = (method: string, params: object = {}) =>
      new Promise<any>((resolve, reject) => session.post(method, params, (e, r) => (e ? reject(e) : resolve(r))));
    await post('Profiler.enable');
    await post('Profiler.setSamplingInterval', { interval: 250 });
    const t0 = performance.now();
    await post('Profiler.start');
    const t1 = performance.now();
    let whole: CpuProfile;
    let run: Awaited<ReturnType<typeof runInterleaved>>;
    try {
      run = await runInterleaved('prof-hot');
    } finally {
      whole = (await post('Profiler.stop')).profile;
      session.disconnect();
    }
    otel.instrumentation.setConfig({});

    const profiled = run.spans.filter((s) => profilePathOf(s) !== undefined);
    expect(profiled.length).toBeGreaterThan(0);
    for (const span of profiled) expect(span.attributes['queue.job.name']).toBe('hot');
    // Only hot jobs were profiled, one at a time: not all ten of them ran alone.
    expect(profiled.length).toBeLessThan(10);

    // Written once the attempt ended, beside the job (asynchronously).
    await until(() => profiled.every((s) => existsSync(profilePathOf(s)!)), 5000, 'the files');
    for (const span of profiled) {
      const profile = validProfile(profilePathOf(span)!);
      const { total, by } = samplesIn(profile, ['hotLoop', 'otherLoop']);
      expect(total).toBeGreaterThanOrEqual(20);
      expect(by.hotLoop! / total).toBeGreaterThan(0.5);
      expect(by.otherLoop! / total).toBeLessThan(0.05);
      // The slices laid end to end: as long as the job's own time on the loop (queue.job.cpu.time).
      const seconds = (profile.endTime - profile.startTime) / 1e6;
      expect(Math.abs(seconds - Number(span.attributes['queue.job.cpu.time']))).toBeLessThan(0.005);
    }

    // The whole process's profile over the same attempt's time holds plenty of otherLoop: the cut
    // is what took it out. Its clock is anchored at its own start (V8 stamps startTime then), with
    // the margin of how long that call took, taken off both ends of the attempt's window.
    const span = profiled[0]!;
    const margin = (t1 - t0) * 1000;
    const toV8 = (hr: [number, number]) => (hr[0] * 1e3 + hr[1] / 1e6 - performance.timeOrigin - t0) * 1000 + whole.startTime;
    const window = samplesIn(whole, ['hotLoop', 'otherLoop'], toV8(span.startTime) + margin, toV8(span.endTime) - margin);
    expect(window.total).toBeGreaterThan(0);
    expect(window.by.otherLoop! / window.total).toBeGreaterThan(0.2);
  });

  it('a job that throws is still profiled; the worker sees the very error it threw', async () => {
    otel.instrumentation.setConfig({ profileJobs: ['boom'], profileInterval: 1, profileDirectory: directory });
    const thrown = new Error('boom');
    const { name, queue, worker } = queueWithWorker('prof-throw', async () => {
      await hotLoop(30, 3);
      throw thrown;
    });
    const failed = new Promise<unknown>((resolve) => worker.on('failed', (_job: unknown, error: unknown) => resolve(error)));
    await queue.add('boom', {});
    expect(await failed).toBe(thrown);
    await until(() => spansOf(name).length === 1, 10_000, 'the span');
    otel.instrumentation.setConfig({});
    const [span] = spansOf(name);
    expect(span!.attributes['queue.job.outcome']).toBe('failed');
    const path = profilePathOf(span!);
    expect(path).toBeDefined();
    await until(() => readdirSync(directory).some((f) => join(directory, f) === path), 5000, 'the file');
    const { total, by } = samplesIn(validProfile(path!), ['hotLoop']);
    expect(by.hotLoop! / total).toBeGreaterThan(0.5);
  });

  it(`keeps at most ${MAX_FILES} files of this process, the newest`, async () => {
    const own = mkdtempSync(join(tmpdir(), 'queue-otel-profile-files-'));
    closers.push(async () => rmSync(own, { recursive: true, force: true }));
    otel.instrumentation.setConfig({ profileJobs: ['small'], profileInterval: 1, profileDirectory: own });
    const { name, queue } = queueWithWorker('prof-files', async () => hotLoop(10, 3), { concurrency: 1 });
    const jobs = MAX_FILES + 6;
    await queue.addBulk(Array.from({ length: jobs }, () => ({ name: 'small', data: {} })));
    await until(() => spansOf(name).length === jobs, 60_000, 'the jobs');
    otel.instrumentation.setConfig({});
    const paths = spansOf(name)
      .sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1])
      .map(profilePathOf)
      .filter((p): p is string => p !== undefined);
    expect(paths.length).toBeGreaterThan(MAX_FILES);
    await until(() => existsSync(paths.at(-1)!) && readdirSync(own).length === MAX_FILES, 5000, `the newest ${MAX_FILES} files`);
    expect(readdirSync(own).map((f) => join(own, f)).sort()).toEqual(paths.slice(-MAX_FILES).sort());
  });
});

describe('sandboxed jobs', () => {
  const processor = fileURLToPath(new URL('./fixtures/profiled-processor.cjs', import.meta.url));

  it('a job in a worker thread is profiled in that thread', async () => {
    otel.instrumentation.setConfig({ profileJobs: ['sandboxed'], profileInterval: 1, profileDirectory: directory });
    const { name, queue } = queueWithWorker('prof-thread', processor, { useWorkerThreads: true });
    await queue.add('sandboxed', { slices: 40, ms: 3 });
    await until(() => spansOf(name).length === 1, 20_000, 'the span');
    otel.instrumentation.setConfig({});
    const path = profilePathOf(spansOf(name)[0]!);
    expect(path).toBeDefined();
    await until(() => readdirSync(directory).some((f) => join(directory, f) === path), 5000, 'the file');
    const { total, by } = samplesIn(validProfile(path!, false), ['sandboxLoop']);
    expect(by.sandboxLoop! / total).toBeGreaterThan(0.3);
  });

  it('a job in a child process is not profiled: one warning, the job runs as before', async () => {
    otel.instrumentation.setConfig({ profileJobs: ['sandboxed'], profileInterval: 1, profileDirectory: directory });
    const { name, queue, worker } = queueWithWorker('prof-child', processor, { useWorkerThreads: false });
    const completed = new Promise<unknown>((resolve) => worker.on('completed', (_job: unknown, result: unknown) => resolve(result)));
    await queue.addBulk([
      { name: 'sandboxed', data: { slices: 2, ms: 1 } },
      { name: 'sandboxed', data: { slices: 2, ms: 1 } },
    ]);
    expect(await completed).toBe('done');
    await until(() => spansOf(name).length === 2, 20_000, 'the spans');
    otel.instrumentation.setConfig({});
    for (const span of spansOf(name)) expect(profilePathOf(span)).toBeUndefined();
    expect(warnings.filter((w) => /runs in a child process, which cannot be profiled/.test(w))).toHaveLength(1);
  });
});

describe('dashboard', () => {
  it('links the latest profile of each job name and serves only the files queue-otel wrote', async () => {
    const dashboard = createDashboard(MetricReader as unknown as MetricReaderClass, { port: 0 });
    closers.push(() => dashboard.close());
    const base = await dashboard.ready;
    const snapshot = (await (await fetch(new URL('api/snapshot', base))).json()) as {
      profiles: Array<{ queue: string; job?: string; url: string; writtenAt: number }>;
    };
    const links = snapshot.profiles.filter((p) => p.job === 'hot');
    expect(links.length).toBeGreaterThan(0);
    const paths = otel.spans
      .getFinishedSpans()
      .filter((s) => s.attributes['queue.job.name'] === 'hot')
      .map(profilePathOf)
      .filter((p): p is string => p !== undefined);
    const response = await fetch(new URL(links[0]!.url, base));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-disposition')).toMatch(/^attachment; filename=".+\.cpuprofile"$/);
    const body = await response.text();
    // The latest profile of the hot jobs of that queue.
    expect(body).toBe(readFileSync(paths.at(-1)!, 'utf8'));
    for (const path of ['/profiles/999999.cpuprofile', '/profiles/0.cpuprofile', '/profiles/..%2f..%2fetc%2fpasswd', '/profiles/%2e%2e/%2e%2e/etc/passwd', '/profiles/1.cpuprofile/..%2f..%2fpackage.json', '/profiles/']) {
      expect((await fetch(new URL(path, base))).status, path).toBe(404);
    }
  });
});

describe('options', () => {
  it('QUEUE_OTEL_PROFILE_JOBS, QUEUE_OTEL_PROFILE_INTERVAL and QUEUE_OTEL_PROFILE_DIRECTORY set the options', () => {
    expect(
      readSettings({ QUEUE_OTEL_PROFILE_JOBS: 'report, sync', QUEUE_OTEL_PROFILE_INTERVAL: '300000', QUEUE_OTEL_PROFILE_DIRECTORY: ' /var/tmp/p ' }).instrumentation,
    ).toEqual({ profileJobs: ['report', 'sync'], profileInterval: 300000, profileDirectory: '/var/tmp/p' });
  });

  it('a wrong value warns, naming it, and its default applies (profiling stays off)', () => {
    const said: string[] = [];
    const settings = readSettings({ QUEUE_OTEL_PROFILE_JOBS: 'a,,b', QUEUE_OTEL_PROFILE_INTERVAL: '0' }, process.cwd(), (m) => said.push(m));
    expect(settings.instrumentation).toEqual({});
    expect(said.join('\n')).toMatch(/QUEUE_OTEL_PROFILE_JOBS.*comma-separated list of job names/);
    expect(said.join('\n')).toMatch(/QUEUE_OTEL_PROFILE_INTERVAL.*milliseconds/);
    const resolved = resolveConfig({ profileJobs: 'report', profileDirectory: '' }, (m) => said.push(m));
    expect(resolved.profileJobs).toEqual([]);
    expect(resolved.profileDirectory).toBe(join(tmpdir(), 'queue-otel-profiles'));
    expect(said.join('\n')).toMatch(/"profileJobs".*array of job names/);
    expect(said.join('\n')).toMatch(/"profileDirectory".*folder path/);
  });
});

describe('keepSlices', () => {
  // Samples every 100 µs from t=1000; node 2 = job code, node 3 = other code, under the root.
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: { functionName: '(root)', scriptId: '0', url: '', lineNumber: -1, columnNumber: -1 }, hitCount: 0, children: [2, 3] },
      { id: 2, callFrame: { functionName: 'job', scriptId: '1', url: 'a.js', lineNumber: 1, columnNumber: 1 }, hitCount: 5, positionTicks: [{ line: 2, ticks: 5 }] },
      { id: 3, callFrame: { functionName: 'other', scriptId: '1', url: 'a.js', lineNumber: 9, columnNumber: 1 }, hitCount: 5 },
    ],
    startTime: 1000,
    endTime: 2100,
    samples: [2, 2, 3, 3, 2, 3, 3, 2, 2, 3],
    timeDeltas: [100, 100, 100, 100, 100, 100, 100, 100, 100, 100],
  };

  it('keeps the samples inside the slices, each with its time since the one before cut at the slice start, laid end to end', () => {
    // Samples at 1100..2000. Slices [1050, 1250] (samples 1100, 1200) and [1450, 1500] (1500) and [1750, 1900] (1800, 1900).
    const kept = keepSlices(profile, { count: 3, starts: [1050, 1450, 1750], ends: [1250, 1500, 1900] })!;
    expect(kept.samples).toEqual([2, 2, 2, 2, 2]);
    expect(kept.timeDeltas).toEqual([50, 100, 50, 50, 100]);
    expect(kept.startTime).toBe(1050);
    expect(kept.endTime).toBe(1050 + 200 + 50 + 150);
    expect(kept.nodes.map((n) => n.id)).toEqual([1, 2]);
    expect(kept.nodes[0]!.children).toEqual([2]);
    expect(kept.nodes[1]!.hitCount).toBe(5);
    expect(kept.nodes[1]!.positionTicks).toBeUndefined();
  });

  it('is undefined when no sample falls in a slice', () => {
    expect(keepSlices(profile, { count: 1, starts: [1101], ends: [1199] })).toBeUndefined();
    expect(keepSlices(profile, { count: 0, starts: [], ends: [] })).toBeUndefined();
  });
});
