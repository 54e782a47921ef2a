// pg-boss schedules (`schedule()`): `queue.schedule.lag` from the minute of each occurrence until
// pg-boss forwards it as a job (the send-it handler of its timekeeper: the job it sends carries
// nothing that ties it to its schedule), by queue and key; and missed runs, which pg-boss 12.38
// tells for schedules with `missed: 'once'`: a gap no cron pass covered (here: every instance was
// down for 10 minutes) owes one catch-up run, counted once. Under `missed: 'skip'` (the default)
// pg-boss does not look for missed occurrences, and nothing is counted. The second test runs an
// app through `--import queue-otel/register`, where pg-boss is imported and its timekeeper reached
// through the loader hook (the first one requires pg-boss, and reaches it from pg-boss's folder).
import { createRequire } from 'node:module';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { PgBossInstrumentation } from '../src/index.js';
import { histogram, points, total } from './helpers/otel.js';
import { dropSchemas, pgUrl, schemaName } from './helpers/postgres.js';
import { freePort, startNode } from './helpers/processes.js';
import { queueName, until } from './helpers/redis.js';
import { setupTelemetry } from './helpers/sdk.js';

const require = createRequire(import.meta.url);
const otel = setupTelemetry(new PgBossInstrumentation({ queueState: false }));
const { PgBoss } = require('pg-boss') as typeof import('pg-boss');
const schema = schemaName('pgboss_sched');
const appSchema = schemaName('sched_app');
const bosses: Array<InstanceType<typeof PgBoss>> = [];
afterAll(async () => {
  for (const boss of bosses) await boss.stop({ graceful: false }).catch(() => {});
  await dropSchemas(schema, appSchema, `${appSchema}_boss`);
  await otel.shutdown();
});

function boss(scheduling: boolean) {
  const b = new PgBoss({
    connectionString: pgUrl(),
    schema,
    schedule: scheduling,
    cronWorkerIntervalSeconds: 1,
    cronMonitorIntervalSeconds: 1,
    superviseIntervalSeconds: 1,
    monitorIntervalSeconds: 1,
  });
  b.on('error', () => {});
  bosses.push(b);
  return b;
}

describe('schedule lag and missed runs (pg-boss)', () => {
  it('every instance down for 10 minutes: the catch-up schedule counts one missed run with a lag past the due window; the default one none', async () => {
    const catchUp = queueName('pgboss-sched-once').replace(/-/g, '_');
    const skip = queueName('pgboss-sched-skip').replace(/-/g, '_');
    // Set up the schedules with an instance that does not schedule, then stop it.
    const setup = boss(false);
    await setup.start();
    await setup.createQueue(catchUp);
    await setup.createQueue(skip);
    await setup.schedule(catchUp, '* * * * *', { run: 'billing' }, { key: 'nightly', missed: 'once' });
    await setup.schedule(skip, '* * * * *', { run: 'digest' });
    await setup.stop({ graceful: false });
    // What a 10-minute outage leaves: the last cron pass 10 minutes ago, schedules older than that.
    const client = new pg.Client({ connectionString: pgUrl() });
    await client.connect();
    await client.query(`UPDATE ${schema}.schedule SET created_on = now() - interval '15 minutes'`);
    await client.query(`UPDATE ${schema}.version SET cron_on = now() - interval '10 minutes'`);
    await client.end();

    const live = boss(true);
    await live.start();
    const received: Array<{ queue: string; data: unknown }> = [];
    await live.work(catchUp, { pollingIntervalSeconds: 0.5 }, async ([job]) => void received.push({ queue: catchUp, data: job!.data }));
    const catchUpAttrs = { 'messaging.system': 'pg-boss', 'messaging.destination.name': catchUp, 'queue.schedule.name': `${catchUp}:nightly` };
    const skipAttrs = { 'messaging.system': 'pg-boss', 'messaging.destination.name': skip, 'queue.schedule.name': skip };
    await until(async () => {
      const m = await otel.collect();
      return histogram(m.get('queue.schedule.lag'), catchUpAttrs).count >= 2 && histogram(m.get('queue.schedule.lag'), skipAttrs).count >= 1;
    }, 30_000, 'the catch-up run, and the runs due now');
    await until(() => received.length >= 2, 20_000, 'the forwarded jobs');

    const m = await otel.collect();
    const lag = histogram(m.get('queue.schedule.lag'), catchUpAttrs);
    console.log(`schedules: pg-boss after a 10-minute outage: ${lag.count} runs of the catch-up schedule, the latest missed one ${lag.max.toFixed(1)} s late`);
    expect(total(m.get('queue.schedule.missed'), catchUpAttrs)).toBe(1);
    // The occurrence missed is older than pg-boss's one-minute due window when the pass finds it.
    expect(lag.max).toBeGreaterThanOrEqual(59);
    expect(lag.max).toBeLessThan(10 * 60);
    expect(points(m.get('queue.schedule.missed'), { 'messaging.destination.name': skip })).toEqual([]);
    // The jobs pg-boss sends carry the schedule's data and nothing of the schedule: no lag on them.
    expect(received.every((r) => (r.data as { run: string }).run === 'billing')).toBe(true);
    const processSpans = otel.spans.getFinishedSpans().filter((s) => s.attributes['messaging.destination.name'] === catchUp && s.attributes['queue.job.outcome'] !== undefined);
    for (const span of processSpans) expect(span.attributes['queue.schedule.lag']).toBeUndefined();
  });

  it('through register (pg-boss imported as an ES module): the same catch-up, and graphile-worker\'s backfill, on /metrics', async () => {
    const queue = queueName('sched-app').replace(/-/g, '_');
    const port = await freePort();
    const app = startNode(['--import', 'queue-otel/register'], 'test/fixtures/register/schedules-app.mjs', {
      PG_URL: pgUrl(),
      QO_SCHEMA: appSchema,
      QO_QUEUE: queue,
      QO_DOWN_MIN: '4',
      OTEL_TRACES_EXPORTER: 'none',
      OTEL_METRICS_EXPORTER: 'prometheus',
      OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
      OTEL_EXPORTER_PROMETHEUS_PORT: String(port),
    });
    try {
      await app.waitFor(/SCHEDULES_DONE/, 40_000);
      const metric = (name: string, system: string, schedule: string) =>
        (async () => {
          const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
          const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(`messaging_system="${system}"`) && l.includes(`queue_schedule_name="${schedule}"`));
          return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
        })();
      await until(async () => (await metric('queue_schedule_missed_total', 'pg-boss', `${queue}:nightly`)) === 1, 20_000, 'the pg-boss catch-up on /metrics');
      expect(await metric('queue_schedule_lag_count', 'pg-boss', `${queue}:nightly`)).toBeGreaterThanOrEqual(1);
      const backfilled = (await metric('queue_schedule_missed_total', 'graphile-worker', 'nightly-billing'))!;
      expect(backfilled).toBeGreaterThanOrEqual(3);
      expect(backfilled).toBeLessThanOrEqual(4);
      expect(await metric('queue_schedule_lag_count', 'graphile-worker', 'nightly-billing')).toBeGreaterThanOrEqual(backfilled);
      // The oldest backfilled minute was due at least three minutes before it ran.
      expect(await metric('queue_schedule_lag_sum', 'graphile-worker', 'nightly-billing')).toBeGreaterThanOrEqual(180);
    } finally {
      await app.stop();
    }
  }, 60_000);
});
