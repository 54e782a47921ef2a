/**
 * Reading a graphile-worker schema's state (its destination is the schema): on queue-otel's own
 * session, only by the process holding the schema's lease (see pg-lease.ts). graphile-worker keeps
 * no counts, and `<schema>._private_jobs` (jobs not done yet, and permanently failed ones: completed
 * jobs are deleted) has indexes for fetching available jobs only, so the read bounds its own cost:
 *
 * - **Up to 10,000 jobs** in the table, every figure is exact, from one pass over at most 10,001
 *   rows in primary-key order: `waiting` (available, `run_at` passed), `delayed` (available,
 *   `run_at` ahead), `active` (locked by a worker), `failed` (`attempts >= max_attempts`, kept until
 *   deleted), the oldest ready job's `run_at`, and the oldest failure.
 * - **Above**, counts are the planner's estimates (`EXPLAIN` of each state's condition: from the
 *   table's statistics as of its last `ANALYZE`, constant cost, imprecise for states with few
 *   jobs); the oldest ready job is still exact, from probes of graphile-worker's `jobs_main_index`
 *   (priority, run_at), the first entry for each distinct priority (at most 100). `active` and the
 *   oldest failure need indexes graphile-worker does not have; queue-otel never creates any, and
 *   reads these exactly when the two opt-in indexes of docs/queue-state.md exist
 *   (`queue_otel_locked`, `queue_otel_failed`), else leaves them out.
 * - A failure's time: graphile-worker stores none; a worker's last failed attempt sets `run_at` to
 *   `now() + exp(least(attempts, 10))` seconds, which the read undoes.
 */
import type { QueueStateResult, QueueStateSource } from '../core/seam.js';
import { PLAIN_IDENTIFIER, type PgClientLike, type PgConnectionSpec, type StateSession, stateSession } from './pg-lease.js';

/** graphile-worker's `withPgClient`: runs a callback with a pooled client. */
export type WithPgClient = <T>(callback: (client: PgClientLike) => Promise<T>) => Promise<T>;

/** Tables up to this many jobs are counted exactly; above, the planner estimates. */
export const EXACT_UP_TO = 10_000;
/** Distinct priorities (or attempt counts) probed for the oldest job, at most. */
const MAX_GROUPS = 100;
/** The opt-in indexes (docs/queue-state.md). */
export const LOCKED_INDEX = 'queue_otel_locked';
export const FAILED_INDEX = 'queue_otel_failed';

const AVAILABLE = 'j.is_available = true';
const FAILED = 'j.is_available = false AND j.locked_at IS NULL';
const ms = (t: string) => `floor(extract(epoch FROM ${t}) * 1000)`;
/** When a permanently failed job failed (graphile-worker's failJobs moved `run_at` past it). */
const failedAt = (alias: string) => `${alias}.run_at - exp(least(${alias}.attempts, 10)) * interval '1 second'`;

/** The first `run_at` of each group of an index's leading column (a loose index scan). */
function oldestByGroup(table: string, where: string, group: string, value: (alias: string) => string, onlyPast = false): string {
  const oldest = `min(${value('j')})`;
  return `(WITH RECURSIVE g AS (
      (SELECT j.${group} AS v, 1 AS n FROM ${table} j WHERE ${where} ORDER BY j.${group} LIMIT 1)
      UNION ALL
      SELECT (SELECT j.${group} FROM ${table} j WHERE ${where} AND j.${group} > g.v ORDER BY j.${group} LIMIT 1), g.n + 1
      FROM g WHERE g.v IS NOT NULL AND g.n <= ${MAX_GROUPS}
    )
    SELECT json_build_array(${onlyPast ? `CASE WHEN ${oldest} <= now() THEN ${ms(oldest)} END` : ms(oldest)}, max(g.n)) FROM g
      CROSS JOIN LATERAL (SELECT j.run_at, j.attempts FROM ${table} j WHERE ${where} AND j.${group} = g.v ORDER BY j.run_at LIMIT 1) j
      WHERE g.v IS NOT NULL)`;
}

/** The read's first SELECT (exported for bench/state.mjs). */
export function graphileReadSql(schema: string): string {
  const table = `${schema}._private_jobs`;
  return `SELECT b.*,
    ${oldestByGroup(table, AVAILABLE, 'priority', (j) => `${j}.run_at`, true)} AS ready_probe,
    to_regclass('${schema}.${LOCKED_INDEX}') IS NOT NULL AS has_locked_index,
    to_regclass('${schema}.${FAILED_INDEX}') IS NOT NULL AS has_failed_index
  FROM (SELECT count(*) AS n,
      count(*) FILTER (WHERE ${AVAILABLE} AND j.run_at <= now()) AS waiting,
      count(*) FILTER (WHERE ${AVAILABLE} AND j.run_at > now()) AS delayed,
      count(*) FILTER (WHERE j.locked_at IS NOT NULL) AS active,
      count(*) FILTER (WHERE ${FAILED}) AS failed,
      ${ms(`min(j.run_at) FILTER (WHERE ${AVAILABLE} AND j.run_at <= now())`)} AS oldest_ready,
      ${ms(`min(${failedAt('j')}) FILTER (WHERE ${FAILED})`)} AS oldest_failed
    FROM (SELECT j.is_available, j.run_at, j.locked_at, j.attempts FROM ${table} j ORDER BY j.id LIMIT ${EXACT_UP_TO + 1}) j) b`;
}

/** Statements for a large table: the planner's estimates, and what the opt-in indexes give exactly. */
export function graphileLargeSql(schema: string, lockedIndex: boolean, failedIndex: boolean): string {
  const table = `${schema}._private_jobs`;
  const estimate = (where: string) => `EXPLAIN (FORMAT JSON) SELECT 1 FROM ${table} j WHERE ${where};`;
  const capped = (where: string) => `(SELECT count(*) FROM (SELECT 1 FROM ${table} j WHERE ${where} LIMIT ${EXACT_UP_TO + 1}) c)`;
  return [
    estimate(`${AVAILABLE} AND j.run_at <= now()`),
    estimate(`${AVAILABLE} AND j.run_at > now()`),
    estimate(FAILED),
    `SELECT ${lockedIndex ? capped('j.locked_at IS NOT NULL') : 'NULL'} AS active,
      ${failedIndex ? capped(FAILED) : 'NULL'} AS failed,
      ${failedIndex ? oldestByGroup(table, FAILED, 'attempts', (j) => failedAt(j)) : 'NULL'} AS failed_probe;`,
  ].join('\n');
}

const specs = new WeakMap<WithPgClient, Promise<PgConnectionSpec | undefined>>();

/** The class and settings of the clients graphile-worker's pool makes, read once from one of them. */
function connectionOf(withPgClient: WithPgClient): Promise<PgConnectionSpec | undefined> {
  let spec = specs.get(withPgClient);
  if (spec === undefined) {
    spec = withPgClient(async (client) => {
      const c = client as PgClientLike & { connectionParameters?: Record<string, unknown>; password?: unknown; ssl?: unknown };
      const p = c.connectionParameters;
      const Client = c.constructor as PgConnectionSpec['Client'];
      if (p === undefined || typeof Client !== 'function') return undefined;
      const config: Record<string, unknown> = { user: p.user, database: p.database, port: p.port, host: p.host, password: c.password ?? p.password, ssl: c.ssl ?? p.ssl };
      if (p.options !== undefined) config.options = p.options;
      return { Client, config };
    });
    spec.catch(() => specs.delete(withPgClient));
    specs.set(withPgClient, spec);
  }
  return spec;
}

/** The "Plan Rows" of an `EXPLAIN (FORMAT JSON)` result. */
function planRows(result: { rows: Array<Record<string, unknown>> } | undefined): number | undefined {
  const plan = result?.rows[0]?.['QUERY PLAN'];
  const rows = Array.isArray(plan) ? (plan[0] as { Plan?: { 'Plan Rows'?: unknown } })?.Plan?.['Plan Rows'] : undefined;
  return typeof rows === 'number' && Number.isFinite(rows) ? Math.round(rows) : undefined;
}

const NOTICE = `holds more than ${EXACT_UP_TO} jobs: its counts are PostgreSQL's estimates; the active count and the oldest failure's age need the opt-in indexes in docs/queue-state.md`;

/**
 * A state source for the worker schema `schema`, through the database of a running worker (or
 * WorkerUtils) of this process. Resolves `null` when none is left running.
 */
export function graphileStateSource(holder: () => WithPgClient | undefined, schema: string): QueueStateSource {
  /** The session this process took the schema's lease on, to give it up there. */
  let leased: StateSession | undefined;
  const session = async () => {
    const withPgClient = holder();
    if (withPgClient === undefined) return null;
    const spec = await connectionOf(withPgClient);
    return spec === undefined ? undefined : stateSession(spec);
  };
  return {
    async read({ owner, leaseMs, timeoutMs, intervalMs, begin }): Promise<QueueStateResult> {
      if (!PLAIN_IDENTIFIER.test(schema)) return { kind: 'unavailable', reason: `schema "${schema}" is not a plain identifier` };
      const s = await session();
      if (s === null) return null;
      if (s === undefined) return { kind: 'unavailable', reason: 'the connection settings of graphile-worker\'s pool cannot be read' };
      const idleMs = Math.max(60_000, 4 * intervalMs);
      if (leaseMs > 0) leased = s;
      const result = await s.read({ schema, queue: schema, owner, leaseMs, timeoutMs, idleMs, begin, select: () => graphileReadSql(schema) });
      if (result.kind !== 'row') return result;
      const row = result.row;
      const n = (v: unknown) => Number(v ?? 0);
      const at = (v: unknown) => (v === null || v === undefined ? undefined : Number(v));
      if (n(row.n) <= EXACT_UP_TO) {
        return {
          counts: { waiting: n(row.waiting), delayed: n(row.delayed), active: n(row.active), failed: n(row.failed) },
          oldestReadyAt: at(row.oldest_ready),
          oldestFailedAt: at(row.oldest_failed),
        };
      }
      const lockedIndex = row.has_locked_index === true;
      const failedIndex = row.has_failed_index === true;
      const results = await s.statements(graphileLargeSql(schema, lockedIndex, failedIndex), timeoutMs, idleMs);
      const exact = results[3]?.rows[0] ?? {};
      const counted = (v: unknown, estimate: number | undefined) => (v === null || v === undefined || n(v) > EXACT_UP_TO ? estimate : n(v));
      const counts: Record<string, number | undefined> = {
        waiting: planRows(results[0]),
        delayed: planRows(results[1]),
        failed: failedIndex ? counted(exact.failed, planRows(results[2])) : planRows(results[2]),
      };
      if (lockedIndex) counts.active = counted(exact.active, undefined);
      const ready = probe(row.ready_probe);
      const failed = failedIndex ? probe(exact.failed_probe) : undefined;
      return {
        counts: Object.fromEntries(Object.entries(counts).filter(([, v]) => v !== undefined)),
        oldestReadyAt: ready?.at,
        oldestFailedAt: failed?.at,
        hasOldest: ready !== undefined,
        hasFailedOldest: failed !== undefined,
        notice: lockedIndex && failedIndex ? undefined : NOTICE,
      };
    },
    async release() {
      const s = leased;
      leased = undefined;
      await s?.release(schema, schema);
    },
  };
}

/** A group probe's `[oldest ms, groups]`; undefined when it stopped at the group cap. */
function probe(value: unknown): { at: number | undefined } | undefined {
  const [at, groups] = Array.isArray(value) ? value : [null, null];
  if (typeof groups === 'number' && groups > MAX_GROUPS) return undefined;
  return { at: typeof at === 'number' ? at : undefined };
}
