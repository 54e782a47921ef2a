// graphile-worker queue state as a user relies on it: exact up to 10,000 jobs, PostgreSQL's
// estimates above (the active count and the oldest failure left out), exact again with the opt-in
// indexes, and nothing created in the database by queue-otel.
import { createRequire } from 'node:module';
import { type DiagLogger, DiagLogLevel, diag } from '@opentelemetry/api';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXACT_UP_TO, FAILED_INDEX, LOCKED_INDEX } from '../src/adapters/graphile-worker-state.js';
import { GraphileWorkerInstrumentation } from '../src/index.js';
import { points } from './helpers/otel.js';
import { dropSchemas, pgUrl, schemaName } from './helpers/postgres.js';
import { until } from './helpers/redis.js';
import { setupTelemetry } from './helpers/sdk.js';

const require = createRequire(import.meta.url);
const warnings: string[] = [];
const logger: DiagLogger = {
  error: () => {},
  warn: (...args: unknown[]) => void warnings.push(args.map(String).join(" ")),
  info: () => {},
  debug: () => {},
  verbose: () => {},
};
diag.setLogger(logger, DiagLogLevel.WARN);
const otel = setupTelemetry(new GraphileWorkerInstrumentation({ queueStateInterval: 300, queueStateTimeout: 1_000 }));
const gw = require('graphile-worker') as typeof import('graphile-worker');
const schema = schemaName('gw_state');
const table = `${schema}._private_jobs`;
const admin = new pg.Client({ connectionString: pgUrl() });
let utils: import('graphile-worker').WorkerUtils;

beforeAll(async () => {
  await admin.connect();
  utils = await gw.makeWorkerUtils({ connectionString: pgUrl(), schema, logger: new gw.Logger(() => () => {}) });
  await utils.migrate();
});
afterAll(async () => {
  await utils.release();
  await admin.end();
  await dropSchemas(schema);
  await otel.shutdown();
});

async function stateOf() {
  const m = await otel.collect();
  const attrs = { 'messaging.destination.name': schema };
  return {
    at: Date.now(),
    counts: Object.fromEntries(points(m.get('queue.job.count'), attrs).map((p) => [p.attributes['queue.job.state'], p.value])),
    oldest: points(m.get('queue.oldest.age'), attrs)[0]?.value,
    failedOldest: points(m.get('queue.failed.oldest.age'), attrs)[0]?.value,
  };
}

const truth = async () =>
  (
    await admin.query(`SELECT count(*) FILTER (WHERE is_available AND run_at <= now())::int AS waiting,
      count(*) FILTER (WHERE is_available AND run_at > now())::int AS delayed,
      count(*) FILTER (WHERE locked_at IS NOT NULL)::int AS active,
      count(*) FILTER (WHERE NOT is_available AND locked_at IS NULL)::int AS failed,
      floor(extract(epoch FROM min(run_at) FILTER (WHERE is_available AND run_at <= now())) * 1000)::float8 AS ready,
      floor(extract(epoch FROM min(run_at - exp(least(attempts, 10)) * interval '1 second') FILTER (WHERE NOT is_available AND locked_at IS NULL)) * 1000)::float8 AS failed_at
    FROM ${table}`)
  ).rows[0] as { waiting: number; delayed: number; active: number; failed: number; ready: number; failed_at: number };

/** Jobs as graphile-worker stores them: waiting (3 priorities), delayed, locked, and failed by its failJobs. */
async function fill(from: number, to: number): Promise<void> {
  await admin.query(
    `INSERT INTO ${table} (task_id, payload, priority, run_at, attempts, max_attempts, last_error, locked_at, locked_by)
     SELECT (SELECT id FROM ${schema}._private_tasks LIMIT 1), '{}', (g % 3)::smallint,
       CASE WHEN g % 10 = 7 THEN now() + g * interval '1 second'
         WHEN g % 10 = 9 THEN now() - g * interval '1 second' + exp(least(g % 4 + 1, 10)) * interval '1 second'
         ELSE now() - g * interval '1 second' END,
       CASE WHEN g % 10 = 9 THEN g % 4 + 1 WHEN g <= 3 THEN 1 ELSE 0 END,
       CASE WHEN g % 10 = 9 THEN g % 4 + 1 ELSE 25 END,
       CASE WHEN g % 10 = 9 THEN 'boom' END,
       CASE WHEN g <= 3 THEN now() END, CASE WHEN g <= 3 THEN 'a-worker' END
     FROM generate_series($1::int, $2::int) g`,
    [from, to],
  );
  await admin.query(`ANALYZE ${table}`);
}

const objects = async () =>
  (await admin.query(`SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 ORDER BY 1`, [schema])).rows.map((r) => r.relname as string);

describe('graphile-worker queue state', () => {
  it('exact up to 10,000 jobs, estimates above, exact again with the opt-in indexes; nothing created', async () => {
    await utils.addJob('task', {}); // makes the task row; also what starts watching the schema
    await admin.query(`DELETE FROM ${table}`);
    await fill(1, 500);
    const created = await objects();

    // Small: every figure exact, the oldest failure undone from graphile-worker's run_at.
    let expected = await truth();
    await until(async () => (await stateOf()).counts.waiting === expected.waiting, 10_000, 'exact counts');
    let s = await stateOf();
    expect(s.counts).toEqual({ waiting: expected.waiting, delayed: expected.delayed, active: 3, failed: expected.failed });
    expect(Math.abs(s.at - s.oldest! * 1000 - expected.ready)).toBeLessThan(1_000);
    expect(Math.abs(s.at - s.failedOldest! * 1000 - expected.failed_at)).toBeLessThan(1_000);

    // Large: counts are PostgreSQL's estimates; no active count and no oldest failure without the
    // indexes (and a warning saying so); the oldest ready job is still exact.
    await fill(501, EXACT_UP_TO + 2_000);
    expected = await truth();
    await until(async () => (await stateOf()).counts.active === undefined, 10_000, 'the estimates');
    s = await stateOf();
    expect(Object.keys(s.counts).sort()).toEqual(['delayed', 'failed', 'waiting']);
    for (const state of ['waiting', 'delayed', 'failed'] as const) {
      expect(Math.abs(s.counts[state]! - expected[state]) / expected[state], `${state}: ${s.counts[state]} for ${expected[state]}`).toBeLessThan(0.2);
    }
    expect(s.failedOldest).toBeUndefined();
    expect(Math.abs(s.at - s.oldest! * 1000 - expected.ready)).toBeLessThan(1_000);
    expect(warnings.some((w) => w.includes(`"${schema}"`) && w.includes('estimates'))).toBe(true);

    // The opt-in indexes (docs/queue-state.md): exact active and failed counts, and the oldest failure.
    await admin.query(`CREATE INDEX ${LOCKED_INDEX} ON ${table} (locked_at) WHERE locked_at IS NOT NULL`);
    await admin.query(`CREATE INDEX ${FAILED_INDEX} ON ${table} (attempts, run_at) WHERE is_available = false AND locked_at IS NULL`);
    await until(async () => (await stateOf()).counts.active === 3, 10_000, 'exact active count');
    s = await stateOf();
    expect(s.counts.failed).toBe(expected.failed);
    expect(Math.abs(s.at - s.failedOldest! * 1000 - expected.failed_at)).toBeLessThan(1_000);

    // queue-otel created nothing in the schema (the two indexes are the test's).
    expect((await objects()).filter((o) => o !== LOCKED_INDEX && o !== FAILED_INDEX)).toEqual(created);
  }, 60_000);
});
