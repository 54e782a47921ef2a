// createQueueDashboard (queue-otel/dashboard) in an SDK set up in code: its reader in a real
// MeterProvider, real jobs, and the HTTP answers a browser gets.
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { afterAll, describe, expect, it } from 'vitest';
// The built entry point (npm test builds first): it serves the page and uPlot from dist/assets,
// as the published package does.
import { createQueueDashboard } from '../dist/esm/dashboard.js';
import { BullMQInstrumentation } from '../src/index.js';
import { connection, queueName, until } from './helpers/redis.js';
import { requireLibrary } from './helpers/library.js';

const dashboard = createQueueDashboard({ port: 0, serviceName: 'api-test' });
const meterProvider = new MeterProvider({ readers: [dashboard.reader] });
const instrumentation = new BullMQInstrumentation({ queueStateInterval: 500 });
instrumentation.setMeterProvider(meterProvider);
const bullmq = requireLibrary<typeof import('bullmq')>('bullmq');

afterAll(async () => {
  instrumentation.disable();
  await dashboard.close();
  await meterProvider.shutdown();
});

interface Snapshot {
  service: string;
  t: number[];
  queues: Array<{ name: string; busy: Record<string, Array<number | null>>; concurrency: Array<number | null>; throughput: Record<string, Array<number | null>> }>;
}

describe('createQueueDashboard', () => {
  it('serves the page, uPlot and a snapshot fed by its reader in the application MeterProvider', async () => {
    const url = await dashboard.ready;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const name = queueName('dash-api');
    const queue = new bullmq.Queue(name, { connection: connection() });
    const worker = new bullmq.Worker(name, async () => new Promise((r) => setTimeout(r, 6000)), { connection: connection(), concurrency: 3 });
    await queue.addBulk([1, 2, 3].map((i) => ({ name: 'render', data: { i } })));
    try {
      // The three jobs run 6 s: at least one interval between two collections (2 s apart) falls
      // wholly inside, where the rate of busy time is three busy workers.
      let snapshot: Snapshot | undefined;
      const rates = () => snapshot?.queues.find((x) => x.name === name)?.busy.render?.filter((v): v is number => v !== null) ?? [];
      await until(async () => {
        snapshot = (await (await fetch(`${url}api/snapshot`)).json()) as Snapshot;
        return rates().some((v) => Math.abs(v - 3) < 0.05);
      }, 15_000, 'a busy-worker rate of 3 in the snapshot');
      expect(snapshot!.service).toBe('api-test');
      expect(Math.max(...rates())).toBeCloseTo(3, 1);
      expect(snapshot!.queues.find((x) => x.name === name)!.concurrency.at(-1)).toBe(3);
    } finally {
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
    }

    const page = await fetch(url);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(await page.text()).toContain('assets/uPlot.iife.min.js');
    const uplot = await fetch(`${url}assets/uPlot.iife.min.js`);
    expect(uplot.status).toBe(200);
    expect(uplot.headers.get('content-type')).toContain('javascript');
    expect((await uplot.text()).length).toBeGreaterThan(40_000);
    expect((await fetch(`${url}../../package.json`)).status).toBe(404);
    expect((await fetch(`${url}api/snapshot`, { method: 'POST' })).status).toBe(405);
  });

  it('rejects a bad port at once, naming the option', () => {
    expect(() => createQueueDashboard({ port: 70_000 })).toThrow(/option "port" must be a port number from 0 to 65535, got 70000/);
  });
});
