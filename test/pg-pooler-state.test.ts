// Behind a transaction pooler (PgBouncer, pool_mode = transaction) a session advisory lock elects
// nobody reliably: queue-otel notices (the server process changes between its statements), warns,
// and does not report; with the opt-in lease table (docs/queue-state.md) it reads through the pooler.
import { createRequire } from 'node:module';
import { type DiagLogger, DiagLogLevel, diag } from '@opentelemetry/api';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LEASE_TABLE } from '../src/adapters/pg-lease.js';
import { PgBossInstrumentation } from '../src/index.js';
import { findBinary, requireBinary } from './helpers/binaries.js';
import { points } from './helpers/otel.js';
import { type PrivatePgBouncer, privatePgBouncer } from './helpers/pgbouncer.js';
import { dropSchemas, pgUrl, schemaName } from './helpers/postgres.js';
import { queueName, sleep, until } from './helpers/redis.js';
import { setupTelemetry } from './helpers/sdk.js';

const require = createRequire(import.meta.url);
const binary = findBinary('pgbouncer', ['/usr/sbin/pgbouncer']);
const { skip } = requireBinary('pgbouncer', binary, 'apt-get install pgbouncer');
const warnings: string[] = [];
const logger: DiagLogger = {
  error: () => {},
  warn: (...args: unknown[]) => void warnings.push(args.map(String).join(' ')),
  info: () => {},
  debug: () => {},
  verbose: () => {},
};
diag.setLogger(logger, DiagLogLevel.WARN);
const otel = setupTelemetry(new PgBossInstrumentation({ queueStateInterval: 300, queueStateTimeout: 1_000 }));
const { PgBoss } = require('pg-boss') as typeof import('pg-boss');
const schema = schemaName('pooler');
let bouncer: PrivatePgBouncer;
let boss: import('pg-boss').PgBoss;

beforeAll(async () => {
  if (skip) return;
  // The schema is made directly; the instrumented PgBoss connects through the pooler.
  const direct = new PgBoss({ connectionString: pgUrl(), schema, supervise: false, schedule: false });
  direct.on('error', () => {});
  await direct.start();
  await direct.stop({ graceful: false });
  bouncer = await privatePgBouncer(binary!);
  boss = new PgBoss({ connectionString: bouncer.url, schema, supervise: false, schedule: false, migrate: false });
  boss.on('error', () => {});
  await boss.start();
  // Several server connections behind the pooler, as on a busy one.
  const clients = await Promise.all(Array.from({ length: 4 }, async () => {
    const c = new pg.Client({ connectionString: bouncer.url });
    await c.connect();
    return c;
  }));
  await Promise.all(clients.map((c) => c.query('SELECT pg_sleep(0.2)')));
  await Promise.all(clients.map((c) => c.end()));
}, 60_000);
afterAll(async () => {
  if (skip) return;
  await boss.stop({ graceful: false }).catch(() => {});
  await otel.shutdown();
  await bouncer.stop();
  await dropSchemas(schema);
});

const oldest = async (name: string) => points((await otel.collect()).get('queue.oldest.age'), { 'messaging.destination.name': name })[0]?.value;

describe.skipIf(skip)('behind PgBouncer in transaction mode', () => {
  it('the advisory lease is found not to work there: a warning, and nothing reported; the lease table works', async () => {
    const name = queueName('pooled').replace(/-/g, '_');
    await boss.createQueue(name);
    await boss.send(name, {});
    await until(() => warnings.some((w) => w.includes(`"${name}"`) && w.includes('transaction pooler')), 20_000, 'the pooler warning');
    await sleep(1_000);
    expect(await oldest(name)).toBeUndefined();

    const admin = new pg.Client({ connectionString: pgUrl() });
    await admin.connect();
    try {
      await admin.query(`CREATE TABLE ${schema}.${LEASE_TABLE} (queue text PRIMARY KEY, owner text NOT NULL, expires_at timestamptz NOT NULL)`);
    } finally {
      await admin.end();
    }
    await until(async () => ((await oldest(name)) ?? 0) > 0, 20_000, 'state read through the lease table');
  }, 60_000);
});
