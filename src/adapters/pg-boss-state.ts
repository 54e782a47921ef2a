/**
 * Reading a pg-boss 12 queue's state: one statement per read on queue-otel's own session, only by
 * the process holding the queue's lease (see pg-lease.ts). Its cost does not grow with the job
 * table (measured to 1M jobs per queue, docs/queue-state.md):
 *
 * - **Counts are pg-boss's own**: its monitor counts every queue's jobs by state (an index-only
 *   aggregate over the live jobs, every `monitorIntervalSeconds`, 60 s by default) and stores them
 *   in the queue's row of `<schema>.queue` (ready, deferred, blocked, active, failed), which is also
 *   what its `getQueueStats()` and its dashboard show. queue-otel reads that row (one primary-key
 *   lookup); it never counts jobs. Until the monitor has counted a queue (`monitor_on` null), the
 *   counts are left out rather than reported as the row's default zeros.
 * - **Oldest ready**: two probes of pg-boss's `job_i14` index (name, state, blocked, start_after),
 *   one for `created` and one for `retry` jobs, each the first entry of its range (an `IN` over
 *   both states would walk every entry). The job's ready time is the later of its `start_after`
 *   and `created_on`, as pg-boss's own `readyOldestSeconds`.
 * - **Oldest failed**: pg-boss keeps no index on failure time for failed jobs alone. Two bounded
 *   reads: the first 1,000 entries of `job_i16` (name, completed_on), where the first failed job
 *   found is the oldest failure exactly; else the earliest failure among the first 1,000 failed
 *   jobs of `job_i14` (ordered by the ready time of their last attempt), exact when the queue holds
 *   at most 1,000 failed jobs, and otherwise off by at most that last attempt's wait and run time.
 */
import type { QueueStateResult, QueueStateSource } from '../core/seam.js';
import { PLAIN_IDENTIFIER, type PgConnectionSpec, stateSession } from './pg-lease.js';

/** The parts of pg-boss's database object read here (`boss.getDb()`). */
export interface PgBossDb {
  executeSql(text: string, values?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
  config?: { schema?: string; openTelemetry?: { enabled?: boolean } };
  /** Set on pg-boss's own database (not an adapter of the application's). */
  _pgbdb?: boolean;
  /** pg-boss's own database: its pg.Pool, once started. */
  pool?: { Client?: PgConnectionSpec['Client']; options?: Record<string, unknown> };
}

/** How many index entries the oldest-failed reads look at, at most. */
export const FAILED_PROBE = 1_000;

/** The read's SELECT for queue `queue` (a quoted literal) of `schema` (exported for bench/state.mjs). */
export function pgBossReadSql(schema: string, queue: string): string {
  const job = `${schema}.job`;
  const ms = (t: string) => `floor(extract(epoch FROM ${t}) * 1000)`;
  const firstOf = (state: string) =>
    `(SELECT j.start_after, j.created_on FROM ${job} j WHERE j.name = ${queue} AND j.state = '${state}' AND NOT j.blocked ORDER BY j.start_after LIMIT 1)`;
  return `SELECT q.name IS NOT NULL AS found, q.monitor_on IS NOT NULL AS counted,
    q.ready_count, q.deferred_count, q.blocked_count, q.active_count, q.failed_count,
    (SELECT ${ms('min(greatest(r.start_after, r.created_on))')} FROM (${firstOf('created')} UNION ALL ${firstOf('retry')}) r
      WHERE r.start_after <= now()) AS oldest_ready,
    (SELECT ${ms('min(f.completed_on)')} FROM (SELECT j.completed_on, j.state FROM ${job} j
      WHERE j.name = ${queue} AND j.completed_on IS NOT NULL ORDER BY j.completed_on LIMIT ${FAILED_PROBE}) f
      WHERE f.state = 'failed') AS first_failed,
    (SELECT ${ms('min(f.completed_on)')} FROM (SELECT j.completed_on FROM ${job} j
      WHERE j.name = ${queue} AND j.state = 'failed' AND NOT j.blocked ORDER BY j.start_after LIMIT ${FAILED_PROBE}) f) AS early_failed
  FROM (SELECT 1) one LEFT JOIN ${schema}.queue q ON q.name = ${queue}`;
}

/** Where a queue is read: pg-boss's database object and schema. */
export interface PgBossPlace {
  db: PgBossDb;
  schema: string;
}

/** The connection settings of pg-boss's own pool, for queue-otel's session. */
export function connectionOf(db: PgBossDb): PgConnectionSpec | undefined {
  const Client = db.pool?.Client;
  const options = db.pool?.options;
  return typeof Client === 'function' && options !== null && typeof options === 'object' ? { Client, config: options } : undefined;
}

/**
 * A state source for pg-boss queue `queue`, read in the schema of an open PgBoss instance
 * (`places()`: the instance the queue is used through, or for a queue listed in the options every
 * open instance, where it is looked for). Resolves `null` when none is left (all stopped).
 */
export function pgBossStateSource(queue: string, places: () => PgBossPlace[], listed: boolean): QueueStateSource {
  let found: PgBossPlace | undefined;
  /** Where this process took the queue's lease, to give it up there. */
  let leased: { session: ReturnType<typeof stateSession>; schema: string } | undefined;
  const placeOf = (): PgBossPlace | null => {
    const all = places();
    if (all.length === 0) return null;
    return found !== undefined && all.some((p) => p.db === found!.db && p.schema === found!.schema) ? found : all[0]!;
  };
  const read = async (place: PgBossPlace, owner: string, leaseMs: number, timeoutMs: number, intervalMs: number, begin: () => Promise<void>) => {
    const spec = connectionOf(place.db);
    if (spec === undefined && place.db._pgbdb === true) throw new Error('pg-boss has not opened its connection pool yet');
    if (spec === undefined) {
      return { kind: 'unavailable' as const, reason: "pg-boss runs on a database adapter of the application's own (the `db` option); queue-otel reads state through a connection of its own made from pg-boss's connection settings" };
    }
    if (!PLAIN_IDENTIFIER.test(place.schema)) return { kind: 'unavailable' as const, reason: `schema "${place.schema}" is not a plain identifier` };
    const session = stateSession(spec);
    if (leaseMs > 0) leased = { session, schema: place.schema };
    return session.read({
      schema: place.schema,
      queue,
      owner,
      leaseMs,
      timeoutMs,
      idleMs: Math.max(60_000, 4 * intervalMs),
      begin,
      select: (literal) => pgBossReadSql(place.schema, literal(queue)),
    });
  };
  return {
    async read({ owner, leaseMs, timeoutMs, intervalMs, begin }): Promise<QueueStateResult> {
      let place = placeOf();
      if (place === null) return null;
      if (listed && found === undefined) {
        // Listed by name: find the schema that has it, without a lease (nothing is reported yet).
        const all = places();
        const hits: PgBossPlace[] = [];
        for (const p of all) {
          const probe = await read(p, owner, 0, timeoutMs, intervalMs, begin);
          if (probe.kind === 'row' && probe.row.found === true) hits.push(p);
          else if (probe.kind === 'unavailable' && all.length === 1) return probe;
        }
        const schemas = [...new Set(all.map((p) => p.schema))];
        if (hits.length === 0) return { kind: 'unavailable', reason: `no pg-boss queue "${queue}" in schema ${schemas.map((s) => `"${s}"`).join(' or ')}` };
        if (new Set(hits.map((p) => p.schema)).size > 1) return { kind: 'unavailable', reason: `pg-boss queue "${queue}" exists in more than one schema (${hits.map((p) => `"${p.schema}"`).join(', ')}); list it in the \`queues\` option as { name: '${queue}', prefix: '<its schema>' }` };
        place = found = hits[0]!;
      }
      const result = await read(place, owner, leaseMs, timeoutMs, intervalMs, begin);
      if (result.kind !== 'row') return result;
      const row = result.row;
      if (row.found !== true) return { kind: 'unavailable', reason: `no pg-boss queue "${queue}" in schema "${place.schema}"` };
      const n = (v: unknown) => Number(v ?? 0);
      const at = (v: unknown) => (v === null || v === undefined ? undefined : Number(v));
      return {
        // pg-boss's monitor has not counted the queue yet: its row holds default zeros, not counts.
        counts:
          row.counted === true
            ? {
                waiting: n(row.ready_count),
                delayed: n(row.deferred_count),
                'waiting-children': n(row.blocked_count),
                active: n(row.active_count),
                failed: n(row.failed_count),
              }
            : {},
        oldestReadyAt: at(row.oldest_ready),
        oldestFailedAt: at(row.first_failed) ?? at(row.early_failed),
      };
    },
    async release() {
      const where = leased;
      leased = undefined;
      await where?.session.release(where.schema, queue);
    },
  };
}
