// graphile-worker crontab runs: `queue.schedule.lag` from the `_cron.ts` graphile-worker puts in
// the payload of each job its crontab makes, by task identifier; and missed runs, which
// graphile-worker tells: a crontab item it already knew, whose minutes passed while no runner was
// up, is backfilled (`?fill=`) with `_cron.backfilled: true`, one job per missed minute.
import { createRequire } from 'node:module';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { GraphileWorkerInstrumentation } from '../src/index.js';
import { histogram, points, total } from './helpers/otel.js';
import { dropSchemas, pgUrl, schemaName } from './helpers/postgres.js';
import { until } from './helpers/redis.js';
import { setupTelemetry } from './helpers/sdk.js';

const require = createRequire(import.meta.url);
const otel = setupTelemetry(new GraphileWorkerInstrumentation({ queueState: false }));
const gw = require('graphile-worker') as typeof import('graphile-worker');
const logger = new gw.Logger(() => () => {});
const schemas: string[] = [];
afterAll(async () => {
  await dropSchemas(...schemas);
  await otel.shutdown();
});

/** Minutes the crontab item was known for before its runner started (its missed minutes). */
const DOWN_MIN = 4;

describe('schedule lag and missed runs (graphile-worker)', () => {
  it('a crontab item whose runner was down: each missed minute is backfilled and counted as missed, its lag at least its age', async () => {
    const schema = schemaName('gw_sched');
    schemas.push(schema);
    const utils = await gw.makeWorkerUtils({ connectionString: pgUrl(), schema, logger });
    await utils.migrate();
    // graphile-worker only backfills an item it already knew: known for DOWN_MIN minutes, never run.
    const client = new pg.Client({ connectionString: pgUrl() });
    await client.connect();
    await client.query(`INSERT INTO ${schema}._private_known_crontabs (identifier, known_since) VALUES ('nightly-billing', now() - interval '${DOWN_MIN} minutes')`);
    await client.end();

    const runs: Array<{ ts: string; backfilled: boolean }> = [];
    const startedAt = Date.now();
    const runner = await gw.run({
      connectionString: pgUrl(),
      schema,
      logger,
      pollInterval: 200,
      noHandleSignals: true,
      crontab: '* * * * * nightly-billing ?fill=10m',
      taskList: {
        'nightly-billing': async (payload) => void runs.push((payload as { _cron: { ts: string; backfilled: boolean } })._cron),
        plain: async () => {},
      },
    });
    try {
      await utils.addJob('plain', {});
      const consumer = () => otel.spans.getFinishedSpans().filter((s) => s.attributes['messaging.destination.name'] === schema && s.name.startsWith('process'));
      // One run per whole minute since the item became known (DOWN_MIN, or DOWN_MIN - 1 when the
      // insert fell on a whole minute), and the plain job.
      await until(() => runs.length >= DOWN_MIN - 1 && consumer().length >= runs.length + 1, 30_000, 'the backfilled runs');
      await new Promise((r) => setTimeout(r, 500));
      const backfilled = runs.filter((r) => r.backfilled);
      expect(backfilled.length).toBeGreaterThanOrEqual(DOWN_MIN - 1);
      expect(backfilled.length).toBeLessThanOrEqual(DOWN_MIN);
      const spans = consumer().filter((s) => s.attributes['queue.job.name'] === 'nightly-billing');
      expect(spans).toHaveLength(runs.length);
      for (const span of spans) expect(span.attributes['queue.schedule.name']).toBe('nightly-billing');
      const lags = spans.map((s) => s.attributes['queue.schedule.lag'] as number);
      console.log(`schedules: graphile-worker backfilled ${backfilled.length} missed minutes: lags ${lags.map((l) => l.toFixed(1)).join(', ')} s`);
      // Each run started after the runner did, so its lag is at least the age of its minute then;
      // lags dominate those bounds one by one, so their order statistics do too.
      const bounds = runs.map((r) => (startedAt - Date.parse(r.ts)) / 1000).sort((a, b) => b - a);
      const sorted = [...lags].sort((a, b) => b - a);
      bounds.forEach((bound, i) => expect(sorted[i]).toBeGreaterThanOrEqual(bound));
      expect(sorted[0]).toBeGreaterThanOrEqual((DOWN_MIN - 1) * 60);
      const plain = consumer().find((s) => s.attributes['queue.job.name'] === 'plain')!;
      expect(plain.attributes['queue.schedule.name']).toBeUndefined();

      const m = await otel.collect();
      const attrs = { 'messaging.system': 'graphile-worker', 'messaging.destination.name': schema, 'queue.schedule.name': 'nightly-billing' };
      expect(histogram(m.get('queue.schedule.lag'), attrs).count).toBe(runs.length);
      expect(total(m.get('queue.schedule.missed'), attrs)).toBe(backfilled.length);
      expect(points(m.get('queue.schedule.lag'), { 'messaging.destination.name': schema, 'queue.schedule.name': 'plain' })).toEqual([]);
    } finally {
      await runner.stop().catch(() => {});
      await utils.release();
    }
  });
});
