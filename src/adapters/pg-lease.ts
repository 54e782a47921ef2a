/**
 * The connection and the lease through which queue-otel reads a PostgreSQL-backed queue's state
 * (pg-boss, graphile-worker), without creating anything in the user's database.
 *
 * **A session of its own.** Each process opens one connection per database (made with the
 * library's own `pg.Client` class and connection settings, `application_name` `queue-otel`),
 * lazily, on the first read, and closes it after a few idle intervals. Reads never take a
 * connection from the application's pool (a pool saturated by long jobs would otherwise delay
 * both), and the lease below needs a session that lives exactly as long as the process.
 *
 * **The lease is a session advisory lock**, `pg_try_advisory_lock(1903129708, hash(schema.queue))`
 * (the two-integer form, whose lock space is separate from the single-bigint locks pg-boss and
 * graphile-worker take). The process whose session holds it reads and reports the queue; the others
 * try again about once per interval, at times of their own (jittered), so when the holder dies the
 * server releases its lock with its connection and the next try, within about one interval, takes
 * over. A collision of two queues' hashes only means one process leads both. A holder that stops
 * reading (no metric reader collects any more, the instrumentation is disabled) unlocks; one whose
 * session idles anyway is closed after a few intervals, which releases its locks too.
 *
 * **Behind a transaction pooler** (PgBouncer `pool_mode = transaction`) a session lock stays on
 * whichever server connection ran it, so it elects nobody reliably. A read notices when the server
 * process behind its session changes between statements, warns, and stops reading the database's
 * state. For that setup, create the opt-in lease table (`<schema>.queue_otel_lease`, SQL in
 * docs/queue-state.md): when it exists, the lease is a row in it, taken or renewed by an upsert in
 * the read's own transaction, which works through any pooler.
 *
 * **Timeouts cancel.** Each read is one simple-protocol query, `SET LOCAL statement_timeout = <t>;
 * SET LOCAL lock_timeout = <t>; SELECT ...`, run as one implicit transaction: the server stops the
 * statement at the timeout, and nothing of the settings outlives it. Values are inlined as quoted
 * literals (`escapeLiteral`); schema names are plain identifiers only.
 */

/** The parts of a node-postgres `Client` used here (pg 8). */
export interface PgClientLike {
  connect(): Promise<unknown>;
  query(text: string): Promise<PgResultLike | PgResultLike[]>;
  escapeLiteral(value: string): string;
  end(): Promise<unknown>;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  connection?: { stream?: { unref?: () => void; destroy?: () => void } };
}
export interface PgResultLike {
  rows: Array<Record<string, unknown>>;
}
/** The library's `pg.Client` class and the settings its pool connects with. */
export interface PgConnectionSpec {
  Client: new (config: Record<string, unknown>) => PgClientLike;
  config: Record<string, unknown>;
}

/** Schema names are put in SQL text: only plain identifiers are read. */
export const PLAIN_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The first key of queue-otel's advisory locks ("qotl"). */
export const LOCK_CLASS = 0x716f746c;

/** 32-bit FNV-1a of `text`, as a signed integer: the second key of a queue's advisory lock. */
export function lockKey(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193);
  }
  return hash | 0;
}

/** The opt-in lease table's name, in the library's schema. */
export const LEASE_TABLE = 'queue_otel_lease';

/** What one read gives back. */
export type LeasedRow =
  | { kind: 'row'; row: Record<string, unknown> }
  /** Another process holds the lease; `retryInMs`: when it expires, if known. */
  | { kind: 'held'; retryInMs?: number }
  /** The state cannot be read truthfully here (the reason is warned once). */
  | { kind: 'unavailable'; reason: string };

/** One read: the SELECT (one row, every value inlined) and what it is read for. */
export interface LeasedRead {
  schema: string;
  /** The queue within the schema (graphile-worker: the schema itself). */
  queue: string;
  owner: string;
  /** 0: no lease (every process reads); otherwise how long a table lease lasts. */
  leaseMs: number;
  timeoutMs: number;
  /** How long the session may stay idle before it is closed (its locks with it). */
  idleMs: number;
  /** The SELECT, given the session's `escapeLiteral`. It must return exactly one row. */
  select(literal: (value: string) => string): string;
  /** Awaited once the session is connected, before the first statement (see StateReadRequest). */
  begin(): Promise<void>;
}

/** A session of queue-otel's own to one database. */
class StateSession {
  private client: Promise<PgClientLike> | undefined;
  /** Advisory locks this session holds: key → the server process that took it. */
  private readonly held = new Map<number, number>();
  /** Per schema: whether the opt-in lease table exists (looked up once per session). */
  private readonly tableLease = new Map<string, Promise<boolean>>();
  private idleTimer: NodeJS.Timeout | undefined;
  /** The last query queued: the next waits for it. */
  private tail: Promise<void> = Promise.resolve();
  /** The last read queued: the next one's turn comes when it ends. */
  private turns: Promise<void> = Promise.resolve();
  /** Set once a transaction pooler is seen: nothing is read through this database any more. */
  pooled = false;

  constructor(private readonly spec: PgConnectionSpec) {}

  /**
   * Runs a read, taking the queue's lease first when it is not held yet. Reads take turns on the
   * session (its statements run one at a time anyway), and each begins (its timeout starts) on its
   * turn, so reads queued behind others do not time out for waiting.
   */
  async read(read: LeasedRead): Promise<LeasedRow> {
    const previous = this.turns;
    let done!: () => void;
    this.turns = new Promise<void>((resolve) => (done = resolve));
    try {
      await previous;
      return await this.readOnTurn(read);
    } finally {
      done();
    }
  }

  private async readOnTurn(read: LeasedRead): Promise<LeasedRow> {
    this.touch(read.idleMs);
    const client = await this.connected();
    await read.begin();
    const literal = (value: string) => client.escapeLiteral(value);
    const timeouts = timeoutsSql(read.timeoutMs);
    const select = read.select(literal);
    if (read.leaseMs > 0 && (await this.hasLeaseTable(client, read.schema))) {
      // Opt-in table: take or renew the row and read in one transaction; tell others when it expires.
      const table = `${read.schema}.${LEASE_TABLE}`;
      const queue = literal(read.queue);
      const results = await this.run(client, `${timeouts}
        WITH lease AS (
          INSERT INTO ${table} AS l (queue, owner, expires_at)
          VALUES (${queue}, ${literal(read.owner)}, now() + ${Math.round(read.leaseMs)} * interval '1 millisecond')
          ON CONFLICT (queue) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
          WHERE l.owner = EXCLUDED.owner OR l.expires_at < now()
          RETURNING 1
        )
        SELECT r.* FROM (${select}) r WHERE EXISTS (SELECT 1 FROM lease);
        SELECT ceil(extract(epoch FROM expires_at - now()) * 1000) AS retry_in FROM ${table} WHERE queue = ${queue};`, read.timeoutMs);
      const row = results[results.length - 2]?.rows[0];
      if (row !== undefined) return { kind: 'row', row };
      const retryIn = Number(results[results.length - 1]?.rows[0]?.retry_in);
      return Number.isFinite(retryIn) ? { kind: 'held', retryInMs: Math.max(0, retryIn) } : { kind: 'held' };
    }
    // A transaction pooler was seen: only the lease table elects a reader through it.
    if (this.pooled && read.leaseMs > 0) {
      this.tableLease.delete(read.schema); // looked for again at the next read: it may be created meanwhile
      return { kind: 'unavailable', reason: POOLER };
    }
    let lockedBy: number | undefined;
    if (read.leaseMs > 0) {
      const key = lockKey(`${read.schema}.${read.queue}`);
      lockedBy = this.held.get(key);
      if (lockedBy === undefined) {
        const [result] = await this.run(client, `SELECT pg_try_advisory_lock(${LOCK_CLASS}, ${key}) AS got, pg_backend_pid() AS pid`, read.timeoutMs);
        const row = result?.rows[0];
        if (row?.got !== true) return { kind: 'held' };
        lockedBy = Number(row.pid);
        this.held.set(key, lockedBy);
      }
    }
    const results = await this.run(client, `${timeouts} SELECT pg_backend_pid() AS qo_pid, r.* FROM (${select}) r`, read.timeoutMs);
    const row = results[results.length - 1]?.rows[0];
    if (row === undefined) throw new Error('the state query returned no row');
    if (lockedBy !== undefined && Number(row.qo_pid) !== lockedBy) {
      // The statement ran in another server process than the lock: a transaction pooler.
      this.pooled = true;
      this.close();
      return { kind: 'unavailable', reason: POOLER };
    }
    return { kind: 'row', row };
  }

  /** Runs further statements of a read (the holder's), with the same timeouts. */
  async statements(sql: string, timeoutMs: number, idleMs: number): Promise<PgResultLike[]> {
    this.touch(idleMs);
    const client = await this.connected();
    const results = await this.run(client, `${timeoutsSql(timeoutMs)} ${sql}`, timeoutMs);
    return results.slice(2);
  }

  /** Gives up the lease of one queue (this process stops reading it). */
  async release(schema: string, queue: string): Promise<void> {
    const key = lockKey(`${schema}.${queue}`);
    if (!this.held.has(key) || this.client === undefined) return;
    this.held.delete(key);
    const client = await this.client;
    await this.run(client, `SELECT pg_advisory_unlock(${LOCK_CLASS}, ${key})`, 1_000);
  }

  /** Closes the connection: the server releases every lock it held. */
  close(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const client = this.client;
    this.client = undefined;
    this.held.clear();
    this.tableLease.clear();
    client?.then(
      (c) => c.end().catch(() => c.connection?.stream?.destroy?.()),
      () => {},
    );
  }

  private touch(idleMs: number): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.close(), idleMs);
    this.idleTimer.unref();
  }

  private connected(): Promise<PgClientLike> {
    if (this.client !== undefined) return this.client;
    const client = new this.spec.Client({ ...this.spec.config, application_name: 'queue-otel', keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
    const ready = (async () => {
      // A connection that fails or ends later is forgotten; the next read opens a new one.
      const forget = () => {
        if (this.client === ready) {
          this.client = undefined;
          this.held.clear();
          this.tableLease.clear();
        }
      };
      client.on('error', forget);
      client.on('end', forget);
      try {
        await client.connect();
      } catch (error) {
        forget();
        throw error;
      }
      // The connection must not keep the application running.
      client.connection?.stream?.unref?.();
      // A holder whose machine vanishes without closing its connection (power loss, a network
      // partition) would keep its locks until the server's TCP keepalive notices, 2 hours by
      // default on Linux: on this session's socket the server probes after 10 s of silence.
      await client
        .query("SELECT set_config('tcp_keepalives_idle', '10', false), set_config('tcp_keepalives_interval', '5', false), set_config('tcp_keepalives_count', '3', false)")
        .catch(() => {});
      return client;
    })();
    this.client = ready;
    ready.catch(() => {});
    return ready;
  }

  private hasLeaseTable(client: PgClientLike, schema: string): Promise<boolean> {
    let found = this.tableLease.get(schema);
    if (found === undefined) {
      found = this.run(client, `SELECT to_regclass(${client.escapeLiteral(`${schema}.${LEASE_TABLE}`)}) IS NOT NULL AS found`, 5_000).then(
        ([r]) => r?.rows[0]?.found === true,
      );
      found.catch(() => this.tableLease.delete(schema));
      this.tableLease.set(schema, found);
    }
    return found;
  }

  /**
   * One simple-protocol query, after the session's previous ones (a pg client runs one at a time).
   * A query the server has not answered well after its own timeout means the connection is gone
   * (a network black hole): it is closed, and later reads reconnect.
   */
  private run(client: PgClientLike, text: string, timeoutMs: number): Promise<PgResultLike[]> {
    const run = this.tail.then(async () => {
      const guard = setTimeout(() => {
        if (this.client !== undefined) this.close();
        client.connection?.stream?.destroy?.();
      }, 2 * timeoutMs + 1_000);
      guard.unref();
      try {
        const result = await client.query(text);
        return Array.isArray(result) ? result : [result];
      } finally {
        clearTimeout(guard);
      }
    });
    this.tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }
}

/** The two statements every read starts with: the server stops it at the timeout. */
function timeoutsSql(timeoutMs: number): string {
  const t = Math.max(1, Math.round(timeoutMs));
  return `SET LOCAL statement_timeout = ${t}; SET LOCAL lock_timeout = ${t};`;
}

const POOLER =
  'its connection goes through a transaction pooler (the server process changed between two statements of one session), where a session advisory lock cannot elect one reader; connect it directly, or create the lease table described in docs/queue-state.md';

/** Sessions of this process, per database. */
const sessions = new Map<string, StateSession>();

/** The session for the database `spec` connects to (one per database and role). */
export function stateSession(spec: PgConnectionSpec): StateSession {
  const c = spec.config;
  const key = JSON.stringify([c.connectionString, c.host, c.port, c.database, c.user]);
  let session = sessions.get(key);
  if (session === undefined) sessions.set(key, (session = new StateSession(spec)));
  return session;
}

export type { StateSession };
