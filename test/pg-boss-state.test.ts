// pg-boss queue state as a user relies on it: pg-boss's own counts (never its row's default zeros),
// exact oldest ages from index probes, and a read that outlasts its timeout stopped by PostgreSQL.
import { createRequire } from 'node:module';
import { type DiagLogger, DiagLogLevel, diag } from '@opentelemetry/api';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAILED_PROBE } from '../src/adapters/pg-boss-state.js';
import { PgBossInstrumentation } from '../src/index.js';
import { points } from './helpers/otel.js';
import { dropSchemas, pgUrl, schemaName } from './helpers/postgres.js';
import { queueName, sleep, until } from './helpers/redis.js';
import { setupTelemetry } from './helpers/sdk.js';

const require = createRequire(import.meta.url);
const INTERVAL = 300;
const TIMEOUT = 300;
const warnings: string[] = [];
const logger: DiagLogger = {
  error: () => {},
  warn: (...args: unknown[]) => void warnings.push(args.map(String).join(" ")),
  info: () => {},
  debug: () => {},
  verbose: () => {},
};
diag.setLogger(logger, DiagLogLevel.WARN);
const otel = setupTelemetry(new PgBossInstrumentation({ queueStateInterval: INTERVAL, queueStateTimeout: TIMEOUT }));
const { PgBoss } = require('pg-boss') as typeof import('pg-boss');
const schema = schemaName('pgboss_state');
// No supervisor: pg-boss's monitor counts only when the test asks (getQueueStats with force).
const boss = new PgBoss({ connectionString: pgUrl(), schema, supervise: false, schedule: false });
boss.on('error', () => {});
const admin = new pg.Client({ connectionString: pgUrl() });

beforeAll(async () => {
  await admin.connect();
  await boss.start();
});
afterAll(async () => {
  await boss.stop({ graceful: false });
  await admin.end();
  await dropSchemas(schema);
  await otel.shutdown();
});

async function stateOf(name: string) {
  const m = await otel.collect();
  const attrs = { 'messaging.destination.name': name };
  return {
    counts: Object.fromEntries(points(m.get('queue.job.count'), attrs).map((p) => [p.attributes['queue.job.state'], p.value])),
    oldest: points(m.get('queue.oldest.age'), attrs)[0]?.value,
    failedOldest: points(m.get('queue.failed.oldest.age'), attrs)[0]?.value,
  };
}

describe('pg-boss queue state', () => {
  it("counts are pg-boss's own: left out until its monitor has counted the queue, then what getQueueStats reports", async () => {
    const name = queueName('pgboss-counts').replace(/-/g, '_');
    await boss.createQueue(name);
    for (let i = 0; i < 5; i++) await boss.send(name, {});
    await boss.send(name, {}, { startAfter: 3_600 });
    await boss.send(name, {}, { startAfter: 3_600 });
    await until(async () => (await stateOf(name)).oldest !== undefined, 10_000, 'the oldest age');
    await sleep(3 * INTERVAL);
    expect((await stateOf(name)).counts, 'not counted yet: nothing, not zeros').toEqual({});
    const [stats] = await boss.getQueueStats(name, { force: true });
    await until(async () => (await stateOf(name)).counts.waiting === 5, 10_000, 'the counts');
    expect((await stateOf(name)).counts).toEqual({ waiting: stats!.readyCount, delayed: stats!.deferredCount, 'waiting-children': 0, active: stats!.activeCount, failed: stats!.failedCount });
    expect(stats).toMatchObject({ readyCount: 5, deferredCount: 2 });
  });

  it('oldest ages are exact: the ready job from index probes, the oldest failure from bounded index reads', async () => {
    const job = `${schema}.job`;
    const truth = async (name: string) =>
      (
        await admin.query(
          `SELECT floor(extract(epoch FROM (SELECT min(greatest(start_after, created_on)) FROM ${job} WHERE name = $1 AND state < 'active' AND NOT blocked AND start_after <= now())) * 1000) AS ready,
            floor(extract(epoch FROM (SELECT min(completed_on) FROM ${job} WHERE name = $1 AND state = 'failed')) * 1000) AS failed`,
          [name],
        )
      ).rows[0] as { ready: string; failed: string };
    const close = async (name: string) => {
      const expected = await truth(name);
      await until(
        async () => {
          const at = Date.now();
          const s = await stateOf(name);
          return (
            s.oldest !== undefined &&
            s.failedOldest !== undefined &&
            Math.abs(at - s.oldest * 1000 - Number(expected.ready)) < 1_000 &&
            Math.abs(at - s.failedOldest * 1000 - Number(expected.failed)) < 1_000
          );
        },
        10_000,
        `oldest ages of ${name} near ${JSON.stringify(expected)}`,
      );
    };
    // Insert as pg-boss stores them: ready jobs (created and retry, some with a later start_after
    // than others), deferred ones, completed ones, failed ones.
    const fill = (name: string, completedFirst: number, failed: number, failedOrder: 'same' | 'reversed') =>
      admin.query(
        `INSERT INTO ${job} (name, state, start_after, created_on, started_on, completed_on)
        SELECT $1, 'created'::${schema}.job_state, now() - g * interval '1 minute', now() - g * interval '1 minute' - interval '1 second', NULL::timestamptz, NULL::timestamptz FROM generate_series(1, 300) g
        UNION ALL SELECT $1, 'retry', now() - interval '10 hours' + g * interval '1 second', now() - interval '1 day', NULL, NULL FROM generate_series(1, 50) g
        UNION ALL SELECT $1, 'created', now() + interval '1 hour', now() - interval '2 days', NULL, NULL FROM generate_series(1, 50) g
        UNION ALL SELECT $1, 'completed', now() - interval '3 days', now() - interval '3 days', now() - interval '3 days', now() - interval '3 days' + g * interval '1 second' FROM generate_series(1, $2::int) g
        UNION ALL SELECT $1, 'failed', now() - interval '2 days' + g * interval '1 second', now() - interval '2 days', now() - interval '2 days',
          now() - interval '1 day' + (CASE WHEN $4 = 'same' THEN g ELSE $3::int - g END) * interval '1 second' FROM generate_series(1, $3::int) g`,
        [name, completedFirst, failed, failedOrder],
      );
    // The oldest failure among the first entries of job_i16 (few completed jobs before it).
    const a = queueName('pgboss-ages-a').replace(/-/g, '_');
    await boss.createQueue(a);
    await fill(a, 10, 2 * FAILED_PROBE, 'reversed');
    await boss.send(a, {});
    await close(a);
    // More completed jobs than the probe before any failure, but few failed jobs: exact from job_i14.
    const b = queueName('pgboss-ages-b').replace(/-/g, '_');
    await boss.createQueue(b);
    await fill(b, 2 * FAILED_PROBE, FAILED_PROBE / 2, 'reversed');
    await boss.send(b, {});
    await close(b);
  });

  it('a read that outlasts the timeout is stopped by PostgreSQL, not left running', async () => {
    const name = queueName('pgboss-timeout').replace(/-/g, '_');
    await boss.createQueue(name);
    await boss.send(name, {});
    await until(async () => (await stateOf(name)).oldest !== undefined, 10_000, 'a first read');
    const locker = new pg.Client({ connectionString: pgUrl() });
    await locker.connect();
    const runningTooLong: unknown[] = [];
    let blocked = 0;
    try {
      // Every read of the queue's row now waits for this lock.
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE ${schema}.queue IN ACCESS EXCLUSIVE MODE`);
      const until_ = Date.now() + 10 * INTERVAL;
      while (Date.now() < until_) {
        const { rows } = await admin.query(
          `SELECT pid, wait_event_type, extract(epoch FROM now() - query_start) * 1000 AS ms FROM pg_stat_activity
           WHERE application_name = 'queue-otel' AND state = 'active' AND position($1 in query) > 0`,
          [`${schema}.`],
        );
        for (const row of rows) {
          if (row.wait_event_type === 'Lock') blocked++;
          // The server cancels at the timeout; allow for scheduling on a loaded machine.
          if (Number(row.ms) > TIMEOUT + 700) runningTooLong.push(row);
        }
        await sleep(25);
      }
      expect(blocked, 'reads were made and waited for the lock').toBeGreaterThan(0);
      expect(runningTooLong, 'no read left running past its timeout').toEqual([]);
      expect(warnings.some((w) => w.includes(`queue state of "${name}" not read`) || w.includes('queue state of more queues'))).toBe(true);
      expect((await stateOf(name)).oldest, 'left out while it cannot be read').toBeUndefined();
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
    }
    await until(async () => (await stateOf(name)).oldest !== undefined, 10_000, 'state back once the lock is gone');
  });
});
