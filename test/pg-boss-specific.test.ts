// What is pg-boss's own, beyond the conformance suite (test/pg-boss.test.ts, with pg-boss's own
// telemetry on): pg-boss with its telemetry off, the job objects the handler sees, and the lease.
import { SpanKind } from '@opentelemetry/api';
import pg from 'pg';
import { satisfies } from 'semver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCK_CLASS, lockKey } from '../src/adapters/pg-lease.js';
import { PgBossInstrumentation } from '../src/index.js';
import { histogram, points, total } from './helpers/otel.js';
import { dropSchemas, pgUrl, schemaName } from './helpers/postgres.js';
import { queueName, sleep, until } from './helpers/redis.js';
import { setupTelemetry } from './helpers/sdk.js';
import { libraryVersion, requireLibrary } from './helpers/library.js';

const otel = setupTelemetry(new PgBossInstrumentation({ queueStateInterval: 300 }), true);
const { PgBoss } = requireLibrary<typeof import('pg-boss')>('pg-boss');
const schema = schemaName('pgboss_off');
const boss = new PgBoss({ connectionString: pgUrl(), schema, monitorIntervalSeconds: 1, superviseIntervalSeconds: 1, openTelemetry: { enabled: false } });

beforeAll(async () => {
  await boss.start();
});
afterAll(async () => {
  await boss.stop({ graceful: false });
  await dropSchemas(schema);
  await otel.shutdown();
});

const spansOf = (name: string, kind: SpanKind) =>
  otel.spans.getFinishedSpans().filter((s) => s.attributes['messaging.destination.name'] === name && s.kind === kind);

describe('pg-boss with its own telemetry off', () => {
  it('queue-otel makes the send and process spans and every messaging metric; pg-boss makes none', async () => {
    const name = queueName('pgboss-off').replace(/-/g, '_');
    await boss.createQueue(name);
    const seenKeys: string[][] = [];
    await boss.work(name, { pollingIntervalSeconds: 0.5 }, async (jobs) => {
      for (const job of jobs) seenKeys.push(Object.keys(job).sort());
      if ((jobs[0]!.data as { fail?: boolean }).fail) throw new RangeError('nope');
      return 'ok';
    });
    const ids = [await boss.send(name, { fail: false }), await boss.send(name, { fail: true }, { retryLimit: 0 })];
    await until(() => spansOf(name, SpanKind.CONSUMER).length === 2, 20_000, 'two jobs');
    expect(otel.spans.getFinishedSpans().filter((s) => s.instrumentationScope.name === 'pg-boss')).toHaveLength(0);
    const sends = spansOf(name, SpanKind.PRODUCER);
    expect(sends).toHaveLength(2);
    expect(sends[0]!.instrumentationScope.name).toBe('queue-otel/pg-boss');
    expect(sends.map((s) => s.attributes['messaging.message.id']).sort()).toEqual([...ids].sort());
    const outcomes = spansOf(name, SpanKind.CONSUMER).map((s) => s.attributes['queue.job.outcome']).sort();
    expect(outcomes).toEqual(['completed', 'failed']);
    // The handler sees the fields pg-boss gives it without queue-otel (none extra), although
    // queue-otel asked for the metadata. Which fields those are depends on the pg-boss release.
    otel.instrumentation.disable();
    const plainKeys: string[][] = [];
    try {
      const plain = queueName('pgboss-plain').replace(/-/g, '_');
      await boss.createQueue(plain);
      await boss.work(plain, { pollingIntervalSeconds: 0.5 }, async (jobs) => void plainKeys.push(...jobs.map((j) => Object.keys(j).sort())));
      await boss.send(plain, {});
      await until(() => plainKeys.length === 1, 20_000, 'uninstrumented job');
      await boss.offWork(plain);
    } finally {
      otel.instrumentation.enable();
    }
    expect(plainKeys[0]).toContain('data');
    for (const keys of seenKeys) expect(keys).toEqual(plainKeys[0]);
    const m = await otel.collect();
    const attrs = { 'messaging.destination.name': name, 'messaging.system': 'pg-boss' };
    expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'completed' }).count).toBe(1);
    expect(histogram(m.get('messaging.process.duration'), { ...attrs, 'queue.job.outcome': 'failed', 'error.type': 'RangeError' }).count).toBe(1);
    expect(histogram(m.get('messaging.process.duration'), attrs).count).toBe(2);
    expect(total(m.get('messaging.client.sent.messages'), attrs)).toBe(2);
    expect((await otel.collectScope('pg-boss')).size).toBe(0);
  });

  it('offWork by worker id: that worker\'s concurrency is no longer reported', async () => {
    const name = queueName('pgboss-offwork').replace(/-/g, '_');
    await boss.createQueue(name);
    const id = await boss.work(name, { pollingIntervalSeconds: 0.5, batchSize: 3 }, async () => {});
    const concurrency = async () => total((await otel.collect()).get('queue.worker.concurrency'), { 'messaging.destination.name': name });
    await until(async () => (await concurrency()) === 3, 10_000, 'concurrency 3');
    // pg-boss 12.0 and 12.1 take offWork({ id }); from 12.2.0, offWork(name, { id }).
    if (satisfies(libraryVersion('pg-boss'), '>=12.2.0')) await boss.offWork(name, { id });
    else await (boss as unknown as { offWork(options: { id: string }): Promise<void> }).offWork({ id });
    expect(await concurrency()).toBe(0);
  });

  it('the handler keeps the metadata it asked for', async () => {
    const name = queueName('pgboss-meta').replace(/-/g, '_');
    await boss.createQueue(name);
    let seen: Record<string, unknown> | undefined;
    await boss.work(name, { pollingIntervalSeconds: 0.5, includeMetadata: true }, async ([job]) => {
      seen = job as unknown as Record<string, unknown>;
    });
    await boss.send(name, {});
    await until(() => seen !== undefined, 20_000, 'job');
    expect(seen).toHaveProperty('retryLimit');
    expect(seen).toHaveProperty('startAfter');
  });

  // The queue columns it reads exist from pg-boss 12.38.0; before, no state is read.
  it.skipIf(!satisfies(libraryVersion('pg-boss'), '>=12.38.0'))("reports a queue's state only while its own session holds the queue's advisory lock, and creates nothing", async () => {
    const name = queueName('pgboss-lease').replace(/-/g, '_');
    await boss.createQueue(name);
    const client = new pg.Client({ connectionString: pgUrl() });
    await client.connect();
    const tables = async () => (await client.query(`SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1`, [schema])).rows.map((r) => r.tablename as string);
    const before = await tables();
    const key = lockKey(`${schema}.${name}`);
    const holder = async () =>
      (await client.query(`SELECT l.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid::bigint = $2 AND l.objsubid = 2 AND l.granted`, [LOCK_CLASS, key >>> 0])).rows[0] as
        | { pid: number; application_name: string }
        | undefined;
    try {
      await boss.send(name, {}); // starts watching the queue
      const counts = async () => points((await otel.collect()).get('queue.job.count'), { 'messaging.destination.name': name });
      await until(async () => (await counts()).length > 0, 20_000, 'state reported');
      const mine = await holder();
      expect(mine?.application_name).toBe('queue-otel');
      // Another process takes the lock: this one's session dies, and the other locks first.
      await client.query('SELECT pg_terminate_backend($1)', [mine!.pid]);
      await until(async () => (await client.query('SELECT pg_try_advisory_lock($1, $2) AS got', [LOCK_CLASS, key])).rows[0].got === true, 5_000, 'the lock');
      await until(async () => (await counts()).every((p) => p.value === 0), 20_000, 'zeros once the lease is lost');
      await sleep(1_000);
      expect((await counts()).every((p) => p.value === 0), 'still not the holder').toBe(true);
      await client.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_CLASS, key]);
      // Back to this process: the oldest waiting job's age (read from the job table) returns.
      await until(async () => (points((await otel.collect()).get('queue.oldest.age'), { 'messaging.destination.name': name })[0]?.value ?? 0) > 1, 20_000, 'lease back');
      expect((await holder())?.application_name).toBe('queue-otel');
      expect(await tables(), 'no table created in the schema').toEqual(before);
    } finally {
      await client.end();
    }
  });
});
