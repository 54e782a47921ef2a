/**
 * Reading a graphile-worker schema's state: one SQL statement per read, only by the process
 * holding the lease (a row in `<schema>.queue_otel_lease`, created on the first read, taken or
 * renewed by the same statement).
 *
 * graphile-worker keeps no counts, so this one counts: a single pass over `<schema>._private_jobs`,
 * which holds only jobs not yet done (completed jobs are deleted) and permanently failed ones.
 * States: `waiting` (available, `run_at` passed), `delayed` (available, `run_at` ahead), `active`
 * (locked by a worker), `failed` (`attempts >= max_attempts`, kept until deleted). With a backlog
 * of millions of jobs that pass costs what a count of that table costs, once per interval for the
 * whole cluster; `queueState: false` turns it off.
 */
import type { QueueStateReading, QueueStateSource } from '../core/seam.js';
import { PLAIN_IDENTIFIER, ensureLeaseTable, leaseCte } from './pg-lease.js';

/** graphile-worker's `withPgClient`: runs a callback with a pooled client. */
export type WithPgClient = <T>(callback: (client: PgClientLike) => Promise<T>) => Promise<T>;
interface PgClientLike {
  query(text: string, values?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
}

function readSql(schema: string, leased: boolean): string {
  const available = 'j.locked_at IS NULL AND j.attempts < j.max_attempts';
  const gone = 'j.locked_at IS NULL AND j.attempts >= j.max_attempts';
  const lease = leased ? leaseCte(schema) : '';
  return `${lease}
  SELECT ${leased ? '(SELECT count(*) FROM lease)' : '1'} AS leased, agg.* FROM (
    SELECT
      count(*) FILTER (WHERE ${available} AND j.run_at <= now()) AS waiting,
      count(*) FILTER (WHERE ${available} AND j.run_at > now()) AS delayed,
      count(*) FILTER (WHERE j.locked_at IS NOT NULL) AS active,
      count(*) FILTER (WHERE ${gone}) AS failed,
      floor(extract(epoch FROM min(j.run_at) FILTER (WHERE ${available} AND j.run_at <= now())) * 1000) AS oldest_ready,
      floor(extract(epoch FROM min(j.updated_at) FILTER (WHERE ${gone})) * 1000) AS oldest_failed
    FROM ${schema}._private_jobs j
    ${leased ? 'WHERE EXISTS (SELECT 1 FROM lease)' : ''}
  ) agg`;
}

/**
 * A state source for the worker schema `schema`, through the database access of a running worker
 * of this process. Resolves `null` when none is left running.
 */
export function graphileStateSource(holder: () => WithPgClient | undefined, schema: string): QueueStateSource {
  return {
    async read(owner, leaseMs): Promise<QueueStateReading | undefined | null> {
      const withPgClient = holder();
      if (withPgClient === undefined || !PLAIN_IDENTIFIER.test(schema)) return null;
      const leased = leaseMs > 0;
      return withPgClient(async (client) => {
        if (leased) await ensureLeaseTable(schema, (sql) => client.query(sql));
        const { rows } = await client.query(readSql(schema, leased), leased ? [schema, owner, Math.round(leaseMs)] : []);
        const row = rows[0];
        if (row === undefined || Number(row.leased) === 0) return undefined;
        const n = (v: unknown) => Number(v ?? 0);
        const at = (v: unknown) => (v === null || v === undefined ? undefined : Number(v));
        return {
          counts: { waiting: n(row.waiting), delayed: n(row.delayed), active: n(row.active), failed: n(row.failed) },
          oldestReadyAt: at(row.oldest_ready),
          oldestFailedAt: at(row.oldest_failed),
        };
      });
    },
  };
}
