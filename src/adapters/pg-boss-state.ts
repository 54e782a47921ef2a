/**
 * Reading a pg-boss queue's state: one SQL statement per read, only by the process holding the
 * queue's lease.
 *
 * - **Counts are pg-boss's own**: its monitor counts every queue's jobs by state and stores them in
 *   the queue's row (`<schema>.queue`: ready, deferred, blocked, active, failed), which is also what
 *   its in-memory queue cache and its `pgboss.queue.jobs` gauge show. queue-otel reads that row; it
 *   never counts jobs. The figures are as fresh as pg-boss's last monitor pass
 *   (`monitorIntervalSeconds`, 60 s by default).
 * - **Oldest ages**: the smallest `start_after` of the jobs ready to run and the smallest
 *   `completed_on` of failed jobs, each one probe of pg-boss's `job_i14` index
 *   (name, state, blocked, start_after) and of `job_i16` (name, completed_on).
 * - **Lease**: a row per queue in `<schema>.queue_otel_lease` (created on the first read), taken
 *   or renewed by the same statement (an upsert in a CTE that only succeeds for the holder or once
 *   the lease has expired), standing in for the Redis `SET PX` lease.
 */
import type { QueueStateReading, QueueStateSource } from '../core/seam.js';
import { PLAIN_IDENTIFIER, ensureLeaseTable, leaseCte } from './pg-lease.js';

/** The parts of pg-boss's database object read here (`boss.getDb()`). */
export interface PgBossDb {
  executeSql(text: string, values?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
  config?: { schema?: string; openTelemetry?: { enabled?: boolean } };
}

function readSql(schema: string, leased: boolean): string {
  const lease = leased ? leaseCte(schema) : '';
  return `${lease}
  SELECT q.ready_count, q.deferred_count, q.blocked_count, q.active_count, q.failed_count,
    (SELECT floor(extract(epoch FROM min(j.start_after)) * 1000) FROM ${schema}.job j
      WHERE j.name = $1 AND j.state IN ('created', 'retry') AND NOT j.blocked AND j.start_after <= now()) AS oldest_ready,
    (SELECT floor(extract(epoch FROM min(j.completed_on)) * 1000) FROM ${schema}.job j
      WHERE j.name = $1 AND j.state = 'failed') AS oldest_failed
  FROM ${schema}.queue q
  WHERE q.name = $1${leased ? ' AND EXISTS (SELECT 1 FROM lease)' : ''}`;
}

/**
 * A state source for `queue`, through the database of an open PgBoss of this process. Resolves
 * `null` when none is left (stopped): the process no longer has the queue.
 */
export function pgBossStateSource(holder: () => { db: PgBossDb; schema: string } | undefined, queue: string): QueueStateSource {
  return {
    async read(owner, leaseMs): Promise<QueueStateReading | undefined | null> {
      const found = holder();
      if (found === undefined || typeof found.db?.executeSql !== 'function') return null;
      const { db, schema } = found;
      if (!PLAIN_IDENTIFIER.test(schema)) return null;
      const leased = leaseMs > 0;
      if (leased) await ensureLeaseTable(schema, (sql) => db.executeSql(sql));
      const { rows } = await db.executeSql(readSql(schema, leased), leased ? [queue, owner, Math.round(leaseMs)] : [queue]);
      const row = rows[0];
      if (row === undefined) return undefined; // another process holds the lease (or no such queue yet)
      const n = (v: unknown) => Number(v ?? 0);
      const at = (v: unknown) => (v === null || v === undefined ? undefined : Number(v));
      return {
        counts: {
          waiting: n(row.ready_count),
          delayed: n(row.deferred_count),
          'waiting-children': n(row.blocked_count),
          active: n(row.active_count),
          failed: n(row.failed_count),
        },
        oldestReadyAt: at(row.oldest_ready),
        oldestFailedAt: at(row.oldest_failed),
      };
    },
  };
}
