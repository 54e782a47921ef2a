// Hostile input, for every library: what a user's app does when fed garbage must be the same with
// queue-otel as without it, and queue-otel's own books must balance.
//
// What it proves. Each scenario runs twice, each time in a fresh Node process (the same SDK in
// both; queue-otel's instrumentation only in the second), so a crash, an unhandled rejection or a
// process that no longer exits is seen as the user would see it: as the process's exit. The two
// runs must agree on every job's stored outcome (state, result, failed reason, attempts), on how
// often the processor ran each job, on what the library rejected or emitted as an error, on the
// exit status, and nothing may reach Object.prototype. In the instrumented run, after the jobs
// settled, `queue.job.active` is back to 0 and every `process` span that started has ended (a job
// that never settles must stay counted as running); metric collection never fails, no instrument
// overflows the SDK's cardinality limit, and no 64 KiB or 1 MiB value becomes a metric attribute.
// Scenarios: garbage trace carriers written by another service and prototype-pollution payloads;
// thrown non-errors of every kind; a processor that never settles; throwing and rejecting hooks;
// huge and odd job and queue names; library objects closed mid-collection and the store's
// connections dropped mid-job; and a producer object made per request beside a long-lived worker,
// whose heap after GC must stay flat.
//
// How to run: `npm run build && npx vitest run test/hostile.test.ts` (the children load queue-otel
// from dist/). Needs Redis and PostgreSQL as the other tests do, and `redis-server` on PATH: each
// Redis-backed run gets a redis-server of its own, each PostgreSQL-backed run a database of its own
// (created and dropped). Children run six at a time (they mostly wait); a child must exit within
// 30 s of printing its report. QO_HOSTILE_SYSTEMS=bullmq (a comma-separated list) runs only
// those libraries.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { describe, type ExpectStatic, it } from 'vitest';
import { type ChildRun, describeRun, limiter, runChild } from './helpers/child.js';
import { privateRedis } from './helpers/monitor.js';
import { pgUrl } from './helpers/postgres.js';

const SCRIPT = 'test/fixtures/hostile/run.mjs';
const ALL_SYSTEMS = ['bullmq', 'bull', 'bee-queue', 'pg-boss', 'graphile-worker'] as const;
type System = (typeof ALL_SYSTEMS)[number];
/** QO_HOSTILE_SYSTEMS=bullmq,bull runs those libraries only (a CI step for another bullmq version). */
const only = process.env.QO_HOSTILE_SYSTEMS?.split(',').map((s) => s.trim());
const SYSTEMS = ALL_SYSTEMS.filter((s) => only === undefined || only.includes(s));
const POSTGRES: readonly System[] = ['pg-boss', 'graphile-worker'];
const MiB = 1 << 20;

/** Children at a time: each mostly waits on its store (about 1 s of CPU per run, 5-7 s for a per-request run). */
const limit = limiter(6);
/**
 * PostgreSQL-backed children at a time: one opens up to about 45 connections (20 queues with a
 * runner each), and PostgreSQL allows 100 by default.
 */
const postgresLimit = limiter(2);

interface Accounting {
  active: number;
  processSpansStarted: number;
  processSpansEnded: number;
  openProcessSpans: number;
  collectErrors: string[];
  metricAttributeMaxLength: number;
  mostPointsPerMetric: number;
  overflow: boolean;
  diagnostics: string[];
}
interface Report {
  results: Record<string, unknown>;
  addErrors: Record<string, unknown>;
  errors: string[];
  polluted: boolean;
  accounting: Accounting;
  accountingWhileHanging?: Accounting;
  heap?: Array<[number, number]>;
}

interface RunOptions {
  hooks?: 'throw' | 'reject';
  config?: Record<string, unknown>;
  requests?: number;
}

/** A statement on the server's `postgres` database (creating and dropping a run's database). */
async function admin(sql: string): Promise<void> {
  const url = new URL(pgUrl());
  url.pathname = '/postgres';
  const client = new pg.Client({ connectionString: url.href });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * One run of `scenario` in a fresh process, on a store of its own: a redis-server, or a
 * PostgreSQL database (graphile-worker announces migrations to every worker of a database, which
 * stops workers of other runs).
 */
function run(system: System, scenario: string, mode: 'plain' | 'instrumented', options: RunOptions = {}, extra: { env?: Record<string, string>; nodeArgs?: string[] } = {}): Promise<ChildRun> {
  const postgres = POSTGRES.includes(system);
  return (postgres ? postgresLimit : <T>(task: () => Promise<T>) => task())(() => limit(async () => {
    const id = randomUUID().slice(0, 8);
    const database = `qo_hostile_${id}`;
    const redis = postgres ? undefined : await privateRedis();
    const url = new URL(pgUrl());
    if (postgres) {
      await admin(`create database ${database}`);
      url.pathname = `/${database}`;
    }
    try {
      return await runChild(SCRIPT, {
        args: [system, scenario, mode, JSON.stringify(options)],
        nodeArgs: extra.nodeArgs,
        env: {
          ...(redis ? { REDIS_URL: `redis://${redis.host}:${redis.port}` } : {}),
          PG_URL: url.href,
          QO_TAG: `qo-hostile-${id}`,
          QO_SCHEMA: database,
          QO_APP: database,
          ...extra.env,
        },
        timeoutMs: 600_000, // a liveness bound: a loaded machine makes a 2,000-request run take minutes
      });
    } finally {
      await redis?.stop();
      if (postgres) await admin(`drop database if exists ${database} with (force)`);
    }
  }));
}

const reportOf = (r: ChildRun) => r.report as Report | undefined;

/** What must not change when queue-otel is added. */
function behaviour(r: ChildRun) {
  const report = reportOf(r);
  return {
    exit: r.signal ?? r.code,
    exitedOnItsOwn: !r.hung,
    results: report?.results,
    rejectedAdds: report?.addErrors,
    libraryErrors: report?.errors,
    prototypePolluted: report?.polluted,
  };
}


/** The instrumented run behaves as the plain one; queue-otel's books balance. */
function expectSameAndBalanced(expect: ExpectStatic, plain: ChildRun, instrumented: ChildRun, books = { active: 0, open: 0 }): void {
  expect(reportOf(plain), `the plain run itself must work:\n${describeRun(plain)}`).toBeDefined();
  expect(reportOf(plain)?.polluted).toBe(false);
  expect.soft(behaviour(instrumented), `instrumented run:\n${describeRun(instrumented)}`).toEqual(behaviour(plain));
  const a = reportOf(instrumented)?.accounting;
  expect(a, 'the instrumented run printed no report').toBeDefined();
  if (a === undefined) return;
  // A library with telemetry of its own (pg-boss) may leave its own spans open, plain too:
  // queue-otel must leave none open beyond those.
  const libraryOpen = reportOf(plain)?.accounting.openProcessSpans ?? 0;
  expect.soft({ active: a.active, openProcessSpans: a.openProcessSpans - libraryOpen }, `queue-otel's books (diag: ${a.diagnostics.join(' | ')})`).toEqual({ active: books.active, openProcessSpans: books.open });
  expect.soft(a.collectErrors, 'metric collection failed').toEqual([]);
  expect.soft(a.overflow, "an instrument reached the SDK's cardinality limit").toBe(false);
  expect.soft(a.mostPointsPerMetric).toBeLessThan(2_000);
  // The hostile names and error names are 64 KiB and 1 MiB long: a bounded attribute is far shorter.
  expect.soft(a.metricAttributeMaxLength, 'a 64 KiB or 1 MiB value became a metric attribute').toBeLessThan(64 * 1024);
}

/** The canary job (added last, nothing odd about it) completed in the plain run: the scenario ran. */
function expectCanaryCompleted(expect: ExpectStatic, plain: ChildRun): void {
  const canary = reportOf(plain)?.results?.canary as { state?: string } | undefined;
  expect(canary?.state, `plain canary:\n${describeRun(plain)}`).toMatch(/^(completed|succeeded)/);
}

/** One line per scenario of what its runs cost (wall time and CPU of each child). */
function cost(label: string, runs: Record<string, ChildRun>): void {
  const each = Object.entries(runs).map(([mode, r]) => `${mode} ${(r.durationMs / 1000).toFixed(1)} s (${(((r.report as { cpuMs?: number } | undefined)?.cpuMs ?? NaN) / 1000).toFixed(1)} s CPU)`);
  console.log(`${label}: ${each.join(', ')}`);
}

async function pair(system: System, scenario: string, options: RunOptions = {}, extra: { env?: Record<string, string> } = {}) {
  const [plain, instrumented] = await Promise.all([run(system, scenario, 'plain', {}, extra), run(system, scenario, 'instrumented', options, extra)]);
  cost(`${system} ${scenario}${extra.env ? ` ${JSON.stringify(extra.env)}` : ''}`, { plain, instrumented });
  return { plain, instrumented };
}

/** A liveness bound only: children queue for the limiter, and the machine is shared. */
const SLOW = 15 * 60_000;

describe.concurrent.each(SYSTEMS)('hostile input: %s', (system) => {
  const redisBacked = !POSTGRES.includes(system);

  // Carrier garbage applies where a job carries the producer's context in a field queue-otel
  // reads (BullMQ, Bull, Bee-Queue: `opts.telemetry.metadata`, written here by a plain process of
  // the same library). pg-boss's context travels in its own column, read by pg-boss, not by
  // queue-otel; graphile-worker jobs have no field for it. Pollution payloads in names and data
  // apply to all five.
  it(`${redisBacked ? 'garbage trace carriers of every JSON type and ' : ''}prototype-pollution payloads in names and data`, { timeout: SLOW }, async ({ expect }) => {
    const { plain, instrumented } = await pair(system, 'carriers');
    expectCanaryCompleted(expect, plain);
    expectSameAndBalanced(expect, plain, instrumented);
  });

  it('thrown non-errors of every kind (rejected and thrown synchronously, one retry each)', { timeout: SLOW }, async ({ expect }) => {
    const { plain, instrumented } = await pair(system, 'thrown');
    expectCanaryCompleted(expect, plain);
    expectSameAndBalanced(expect, plain, instrumented);
  });

  if (system === 'pg-boss') {
    // With pg-boss's own telemetry on, its spans and messaging metrics are pg-boss's and
    // queue-otel annotates them: a second path through the same thrown values.
    it('thrown non-errors with pg-boss telemetry on', { timeout: SLOW }, async ({ expect }) => {
      const { plain, instrumented } = await pair(system, 'thrown', {}, { env: { PGBOSS_NATIVE: '1' } });
      expectCanaryCompleted(expect, plain);
      expectSameAndBalanced(expect, plain, instrumented);
    });
  }

  it('a processor that never settles: counted as running, not lost; the process exits as it does plain', { timeout: SLOW }, async ({ expect }) => {
    const { plain, instrumented } = await pair(system, 'neverSettling');
    expectCanaryCompleted(expect, plain);
    expectSameAndBalanced(expect, plain, instrumented, { active: 1, open: 1 });
    const hanging = reportOf(instrumented)?.accountingWhileHanging;
    expect.soft({ active: hanging?.active, openProcessSpans: hanging?.openProcessSpans }, 'while the job hangs').toEqual({ active: 1, openProcessSpans: 1 });
  });

  // The plain run has no hooks (one plain run serves both); the jobs must end as they do there.
  // (pg-boss runs with its own telemetry off here: with it on, queue-otel makes no spans and
  // calls no hook.)
  let plainHooks: Promise<ChildRun> | undefined;
  for (const hooks of ['throw', 'reject'] as const) {
    it(`processHook and sendHook that ${hooks === 'throw' ? 'throw synchronously' : 'return a rejected promise'}`, { timeout: SLOW }, async ({ expect }) => {
      plainHooks ??= run(system, 'hooks', 'plain');
      const [plain, instrumented] = await Promise.all([plainHooks, run(system, 'hooks', 'instrumented', { hooks })]);
      cost(`${system} hooks (${hooks})`, { plain, instrumented });
      expect(reportOf(plain)?.results).toMatchObject({ completes: { processorCalls: 1 } });
      expectSameAndBalanced(expect, plain, instrumented);
    });
  }

  // Job names where the library has them (BullMQ, Bull, graphile-worker's task identifiers, which
  // it limits to 128 characters: longer ones are its own rejection in both runs); queue names
  // where the library accepts them (graphile-worker's destination is a PostgreSQL schema: none
  // of the odd names is one). Bee-Queue and pg-boss jobs have no names.
  it('huge and odd job names, 10,000 distinct names, odd queue names', { timeout: SLOW }, async ({ expect }) => {
    const { plain, instrumented } = await pair(system, 'names');
    expectSameAndBalanced(expect, plain, instrumented);
  });

  it('library objects closed while a collection and a queue-state read are in flight; every connection dropped mid-job', { timeout: SLOW }, async ({ expect }) => {
    const config = { queueStateInterval: 25, queueStateTimeout: 200 };
    const { plain, instrumented } = await pair(system, 'closing', { config });
    expect(reportOf(plain)?.results).toMatchObject({ connectionsDropped: true });
    expectSameAndBalanced(expect, plain, instrumented);
  });

  // pg-boss: a request handler calls `send` on the application's one PgBoss; pg-boss has no
  // per-request producer object (a PgBoss per request starts its own pool and checks its schema,
  // about a quarter of a second each here), so there is nothing request-scoped to release.
  if (system !== 'pg-boss') {
    const what = { bullmq: 'new Queue → add → close', bull: 'new Queue → add → close', 'bee-queue': 'new Queue → createJob().save() → close', 'graphile-worker': 'makeWorkerUtils → addJob → release' }[system];
    it(`a producer made per request (${what}) 2,000 times beside a long-lived worker: heap after GC stays flat`, { timeout: SLOW }, async ({ expect }) => {
      const nodeArgs = ['--expose-gc'];
      const [plain, instrumented] = await Promise.all([
        run(system, 'perRequest', 'plain', {}, { nodeArgs }),
        run(system, 'perRequest', 'instrumented', {}, { nodeArgs }),
      ]);
      cost(`${system} perRequest`, { plain, instrumented });
      expectSameAndBalanced(expect, plain, instrumented);
      // Heap after GC at request 500 against request 2,000: what 1,500 more requests kept.
      const growth = (r: ChildRun) => {
        const heap = reportOf(r)?.heap ?? [];
        const at = (i: number) => heap.find(([n]) => n === i)?.[1] ?? NaN;
        return at(2_000) - at(500);
      };
      const figures = { plainMB: growth(plain) / MiB, instrumentedMB: growth(instrumented) / MiB };
      console.log(`${system} per-request heap growth over the last 1,500 requests:`, JSON.stringify(figures));
      expect.soft(figures.plainMB, 'the library itself, uninstrumented, grows').toBeLessThan(10);
      expect(figures.instrumentedMB, 'queue-otel keeps what a closed producer held').toBeLessThan(10);
    });
  }
});
