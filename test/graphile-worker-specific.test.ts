// What is graphile-worker's own, beyond the conformance suite (test/graphile-worker.test.ts):
// a job added from inside a task, and disable() taking the plugin back.
import { SpanKind } from '@opentelemetry/api';
import { afterAll, describe, expect, it } from 'vitest';
import { GraphileWorkerInstrumentation } from '../src/index.js';
import { dropSchemas, pgUrl, schemaName } from './helpers/postgres.js';
import { until } from './helpers/redis.js';
import { setupTelemetry } from './helpers/sdk.js';
import { requireLibrary } from './helpers/library.js';

const otel = setupTelemetry(new GraphileWorkerInstrumentation({ queueState: false }));
const gw = requireLibrary<typeof import('graphile-worker')>('graphile-worker');
const logger = new gw.Logger(() => () => {});
const schemas: string[] = [];
afterAll(async () => {
  await dropSchemas(...schemas);
  await otel.shutdown();
});

async function runner(tasks: Record<string, (payload: unknown, helpers: import('graphile-worker').JobHelpers) => Promise<void>>) {
  const schema = schemaName('gw_specific');
  schemas.push(schema);
  const utils = await gw.makeWorkerUtils({ connectionString: pgUrl(), schema, logger });
  await utils.migrate();
  const r = await gw.run({ connectionString: pgUrl(), schema, logger, pollInterval: 200, noHandleSignals: true, taskList: tasks });
  return { schema, utils, stop: async () => { await r.stop().catch(() => {}); await utils.release(); } };
}
const spansOf = (schema: string) => otel.spans.getFinishedSpans().filter((s) => s.attributes['messaging.destination.name'] === schema);

describe('graphile-worker', () => {
  it('a job added from inside a task: its send span is a child of the task\'s process span', async () => {
    let followed = false;
    const { schema, utils, stop } = await runner({
      parent: async (_payload, helpers) => {
        await helpers.addJob('child', {});
      },
      child: async () => {
        followed = true;
      },
    });
    await utils.addJob('parent', {});
    await until(() => followed && spansOf(schema).filter((s) => s.kind === SpanKind.CONSUMER).length === 2, 20_000, 'both jobs');
    await stop();
    const parent = spansOf(schema).find((s) => s.kind === SpanKind.CONSUMER && s.attributes['queue.job.name'] === 'parent')!;
    const send = spansOf(schema).find((s) => s.kind === SpanKind.PRODUCER && s.attributes['queue.job.name'] === 'child')!;
    expect(send.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(send.attributes['messaging.message.id']).toBeDefined();
  });

  it('disable(): runners started afterwards are not observed; enable() brings it back', async () => {
    otel.instrumentation.disable();
    let ran = 0;
    const off = await runner({ quiet: async () => void ran++ });
    await off.utils.addJob('quiet', {});
    await until(() => ran === 1, 20_000, 'job');
    await off.stop();
    expect(spansOf(off.schema)).toHaveLength(0);
    otel.instrumentation.enable();
    const on = await runner({ loud: async () => void ran++ });
    await on.utils.addJob('loud', {});
    await until(() => spansOf(on.schema).some((s) => s.kind === SpanKind.CONSUMER), 20_000, 'span');
    await on.stop();
  });
});
