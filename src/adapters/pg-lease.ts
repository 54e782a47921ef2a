/**
 * The lease that makes one process of a cluster read a PostgreSQL-backed queue's state, standing
 * in for the Redis `SET PX` lease: a row per queue in `<schema>.queue_otel_lease`, taken or renewed
 * by an upsert that only succeeds for its holder or once the lease has expired, in the same
 * statement as the read (a data-modifying CTE), so a read stays one round trip.
 */

/** Schemas whose lease table exists (created once per process, on the first read). */
const tables = new Map<string, Promise<void>>();

/** Creates `<schema>.queue_otel_lease` once per process; a failure is tried again at the next read. */
export function ensureLeaseTable(schema: string, run: (sql: string) => Promise<unknown>): Promise<void> {
  let ready = tables.get(schema);
  if (ready === undefined) {
    ready = run(
      `CREATE TABLE IF NOT EXISTS ${schema}.queue_otel_lease (queue text PRIMARY KEY, owner text NOT NULL, expires_at timestamptz NOT NULL)`,
    ).then(() => undefined);
    ready.catch(() => tables.delete(schema));
    tables.set(schema, ready);
  }
  return ready;
}

/**
 * `WITH lease AS (...)`: one row when the owner `$2` holds the lease of queue `$1` for `$3`
 * milliseconds from now, none when another process holds it.
 */
export function leaseCte(schema: string): string {
  return `WITH lease AS (
    INSERT INTO ${schema}.queue_otel_lease AS l (queue, owner, expires_at)
    VALUES ($1, $2, now() + $3::int * interval '1 millisecond')
    ON CONFLICT (queue) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
    WHERE l.owner = EXCLUDED.owner OR l.expires_at < now()
    RETURNING 1
  )`;
}

/** Schema names are put in SQL text: only plain identifiers are read. */
export const PLAIN_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
