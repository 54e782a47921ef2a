// pg-boss 12 and graphile-worker 0.18 are ES modules: an ESM application imports them, and
// queue-otel instruments them through OpenTelemetry's loader hook, as the OpenTelemetry JS ESM
// guide says (node --experimental-loader=@opentelemetry/instrumentation/hook.mjs --import ...).
// Each app runs in a child process built from dist/ (npm test builds first), with every
// instrumentation of getQueueInstrumentations(), as queue-otel/register will.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { dropSchemas, pgUrl, schemaName } from './helpers/postgres.js';
import { queueName } from './helpers/redis.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const schemas: string[] = [];
afterAll(async () => {
  await dropSchemas(...schemas);
});

async function app(file: string, env: Record<string, string>) {
  const { stdout } = await run(
    process.execPath,
    ['--experimental-loader=@opentelemetry/instrumentation/hook.mjs', '--import', './test/fixtures/esm/otel.mjs', `./test/fixtures/esm/${file}`],
    { cwd: root, env: { ...process.env, PG_URL: pgUrl(), ...env }, timeout: 60_000 },
  );
  return JSON.parse(stdout) as {
    data: unknown;
    spans: Array<{ name: string; kind: number; scope: string; attributes: Record<string, unknown> }>;
    metrics: Record<string, Array<{ attributes: Record<string, unknown>; value: unknown }>>;
  };
}

describe('ESM applications (import, loader hook)', () => {
  it('pg-boss: its own spans annotated by queue-otel, and queue-otel\'s job metrics', async () => {
    const schema = schemaName('esm_pgboss');
    schemas.push(schema);
    const queue = queueName('esm').replace(/-/g, '_');
    const out = await app('pg-boss-app.mjs', { QO_SCHEMA: schema, QO_QUEUE: queue });
    expect(out.data).toEqual({ hello: 'esm' });
    const process = out.spans.find((s) => s.name === `process ${queue}`);
    expect(process?.scope).toBe('pg-boss');
    expect(process?.attributes).toMatchObject({ 'queue.job.outcome': 'completed', 'queue.job.attempt': 1 });
    expect(out.metrics['queue.job.busy.time']?.some((p) => p.attributes['messaging.destination.name'] === queue)).toBe(true);
    expect(out.metrics['queue.job.wait.duration']).toBeDefined();
  }, 90_000);

  it('graphile-worker: process spans per task, send spans for utils.addJob and helpers.addJob, job metrics', async () => {
    const schema = schemaName('esm_gw');
    schemas.push(schema);
    const out = await app('graphile-worker-app.mjs', { QO_SCHEMA: schema });
    expect(out.data).toEqual({ after: 'esm' });
    const ours = out.spans.filter((s) => s.scope === 'queue-otel/graphile-worker');
    const processed = ours.filter((s) => s.name === `process ${schema}`).map((s) => s.attributes['queue.job.name']).sort();
    expect(processed).toEqual(['followUp', 'greet']);
    const sent = ours.filter((s) => s.name === `send ${schema}`).map((s) => s.attributes['queue.job.name']).sort();
    expect(sent).toEqual(['followUp', 'greet']);
    const busy = out.metrics['queue.job.busy.time']?.filter((p) => p.attributes['messaging.destination.name'] === schema) ?? [];
    expect(busy.map((p) => p.attributes['queue.job.name']).sort()).toEqual(['followUp', 'greet']);
  }, 90_000);
});
