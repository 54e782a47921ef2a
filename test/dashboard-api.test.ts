// createQueueDashboard (queue-otel/dashboard) in an SDK set up in code: its reader in a real
// MeterProvider, real jobs, and the HTTP answers a browser gets.
import { createRequire } from 'node:module';
import { DiagLogLevel, diag } from '@opentelemetry/api';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { afterAll, describe, expect, it } from 'vitest';
// The built entry point (npm test builds first): it serves the page and uPlot from dist/assets,
// as the published package does.
import { createQueueDashboard } from '../dist/esm/dashboard.js';
import { BullMQInstrumentation } from '../src/index.js';
import { connection, queueName, until } from './helpers/redis.js';

const require = createRequire(import.meta.url);
const warnings: string[] = [];
diag.setLogger({ warn: (m: string) => warnings.push(m), error: () => {}, info: () => {}, debug: () => {}, verbose: () => {} }, DiagLogLevel.WARN);

const dashboard = createQueueDashboard({ port: 0, serviceName: 'api-test', queueStateInterval: 500 });
// Without a serviceName: the one the SDK's resource has (here its default), as Prometheus shows it.
const unnamed = createQueueDashboard({ port: 0 });
const meterProvider = new MeterProvider({ readers: [dashboard.reader, unnamed.reader] });
const instrumentation = new BullMQInstrumentation({ queueStateInterval: 500 });
instrumentation.setMeterProvider(meterProvider);
const bullmq = require('bullmq') as typeof import('bullmq');

afterAll(async () => {
  instrumentation.disable();
  await dashboard.close();
  await unnamed.close();
  await meterProvider.shutdown();
});

interface Snapshot {
  service: string;
  t: number[];
  stateIntervalS: number;
  queues: Array<{
    name: string;
    busy: Record<string, Array<number | null>>;
    concurrency: Array<number | null>;
    throughput: Record<string, Array<number | null>>;
    stateMaxAgeS: { counts: number; oldest: number };
  }>;
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
      // The depth figures say how old they may be: one state read interval (500 ms here).
      expect(snapshot!.stateIntervalS).toBe(0.5);
      expect(snapshot!.queues.find((x) => x.name === name)!.stateMaxAgeS).toEqual({ counts: 0.5, oldest: 0.5 });
      const other = (await (await fetch(`${await unnamed.ready}api/snapshot`)).json()) as Snapshot;
      const { resourceMetrics } = await unnamed.reader.collect();
      expect(other.service).toBe(resourceMetrics.resource.attributes['service.name']);
      expect(other.service).toMatch(/^unknown_service/);
    } finally {
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
    }

    const page = await fetch(url);
    expect(page.headers.get('content-type')).toContain('text/html');
    const html = await page.text();
    expect(html).toContain('assets/uPlot.iife.min.js');
    // Every file the page links to is served (the footer's licence link was a 404 once).
    const links = [...html.matchAll(/(?:href|src)="([^"#:]+)"/g)].map((m) => m[1]!);
    expect(links).toEqual(expect.arrayContaining(['assets/uPlot.LICENSE', 'assets/dashboard.js', 'assets/dashboard.css']));
    for (const link of links) expect([link, (await fetch(new URL(link, url))).status]).toEqual([link, 200]);
    const licence = await fetch(`${url}assets/uPlot.LICENSE`);
    expect(licence.headers.get('content-type')).toContain('text/plain');
    expect(await licence.text()).toMatch(/The MIT License/);
    const uplot = await fetch(`${url}assets/uPlot.iife.min.js`);
    expect(uplot.status).toBe(200);
    expect(uplot.headers.get('content-type')).toContain('javascript');
    expect((await uplot.text()).length).toBeGreaterThan(40_000);
    expect((await fetch(`${url}../../package.json`)).status).toBe(404);
    expect((await fetch(`${url}api/snapshot`, { method: 'POST' })).status).toBe(405);
  });

  it('a bad port does not stop the application: one warning naming it, no page, a reader that still works', async () => {
    const bad = createQueueDashboard({ port: 70_000 });
    const message = 'queue-otel: option "port" of the live dashboard must be a port number from 0 to 65535, got 70000; the dashboard does not start';
    await expect(bad.ready).rejects.toThrow(message);
    expect(warnings).toEqual([message]);
    const provider = new MeterProvider({ readers: [bad.reader] });
    await expect(bad.reader.collect()).resolves.toBeDefined();
    await bad.close();
    await provider.shutdown();
  });
});
