// The "memory cliff": one job that loads a whole table into memory, running beside 20 ordinary
// jobs, and its fixed version that streams the table in batches. Run it and see which job the
// metrics point at:  node examples/memory-cliff/run.mjs [cliff|stream] [repetitions]
// Needs Redis on 127.0.0.1:6379 (or REDIS_URL) and a build of queue-otel (npm run build).
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';

const require = createRequire(import.meta.url);
const api = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { MeterProvider, MetricReader } = require('@opentelemetry/sdk-metrics');
const { TracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace');
const { BullMQInstrumentation } = require('queue-otel');

const mode = process.argv[2] ?? 'cliff';
const reps = Number(process.argv[3] ?? 10);
if (!['cliff', 'stream'].includes(mode) || !(reps >= 1)) throw new Error('usage: run.mjs [cliff|stream] [repetitions]');

// OpenTelemetry as an application would set it up; a reader we collect from on demand.
api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
class OnDemandReader extends MetricReader { async onShutdown() {} async onForceFlush() {} }
const reader = new OnDemandReader();
const meterProvider = new MeterProvider({ readers: [reader] });
const spans = new InMemorySpanExporter();
const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] });
const instrumentation = new BullMQInstrumentation();
instrumentation.setMeterProvider(meterProvider);
instrumentation.setTracerProvider(tracerProvider);
const { Queue, Worker } = require('bullmq');

const url = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const connection = { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null };
const name = `memory-cliff-${process.pid}`;
const queue = new Queue(name, { connection });

const MB = 1e6;
/** A row of about 1.1 KB on the V8 heap (measured with a forced GC: 180,000 rows hold about 200 MB). */
const row = (id) => ({ id, name: `row-${id}`, values: Array.from({ length: 120 }, (_, k) => id + k) });
/** The "table": 180,000 rows, read in batches of 9,000 (about 10 MB) as pages arrive. */
function* tableInBatches() {
  for (let start = 0; start < 180_000; start += 9_000) {
    yield Array.from({ length: 9_000 }, (_, i) => row(start + i));
  }
}

const worker = new Worker(name, async (job) => {
  if (job.name === 'ordinary') {
    const held = Array.from({ length: 1000 }, (_, i) => row(i)); // about 1.1 MB
    await sleep(1000);
    return held.length;
  }
  if (mode === 'cliff') {
    // The cliff: every row in memory at once, built over two seconds as pages arrive.
    const rows = [];
    for (const batch of tableInBatches()) {
      rows.push(...batch);
      await sleep(100);
    }
    return rows.length;
  }
  // The fix: handle each batch of 9,000 rows and let it go before the next one.
  let count = 0;
  for (const batch of tableInBatches()) {
    count += batch.length;
    await sleep(100);
  }
  return count;
}, { connection, concurrency: 30 });

async function memoryByJob() {
  const { resourceMetrics } = await reader.collect();
  const metric = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === 'queue.job.memory.usage');
  const out = {};
  for (const p of metric?.dataPoints ?? []) {
    if (p.attributes['messaging.destination.name'] === name) out[p.attributes['queue.job.name']] = p.value;
  }
  return out;
}

console.log(`mode ${mode}: 1 "table" job + 20 ordinary jobs (about 1 MB for 1 s each), ${reps} repetitions`);
console.log('rep  live@0.5s table/ordinary(avg)   live@1.5s table/ordinary(avg)   peak table / max ordinary   table on top');
let onTop = 0;
const tablePeaks = [];
for (let rep = 1; rep <= reps; rep++) {
  spans.reset();
  await queue.addBulk([{ name: 'load-table', data: {} }, ...Array.from({ length: 20 }, () => ({ name: 'ordinary', data: {} }))]);
  await sleep(500);
  const early = await memoryByJob();
  await sleep(1000);
  const late = await memoryByJob();
  while (spans.getFinishedSpans().filter((s) => s.name === `process ${name}`).length < 21) await sleep(50);
  const ended = spans.getFinishedSpans().filter((s) => s.name === `process ${name}`);
  const peakOf = (s) => Number(s.attributes['queue.job.memory.peak']);
  const table = peakOf(ended.find((s) => s.attributes['queue.job.name'] === 'load-table'));
  const ordinary = Math.max(...ended.filter((s) => s.attributes['queue.job.name'] === 'ordinary').map(peakOf));
  const top = table > ordinary && (early['load-table'] ?? 0) > (early.ordinary ?? 0) / 20 && (late['load-table'] ?? 0) > (late.ordinary ?? 0) / 20;
  if (top) onTop++;
  tablePeaks.push(table);
  const f = (v) => ((v ?? 0) / MB).toFixed(1).padStart(6);
  console.log(`${String(rep).padStart(3)}  ${f(early['load-table'])} / ${f((early.ordinary ?? 0) / 20)} MB        ${f(late['load-table'])} / ${f((late.ordinary ?? 0) / 20)} MB        ${f(table)} / ${f(ordinary)} MB      ${top ? 'yes' : 'NO'}`);
}
tablePeaks.sort((a, b) => a - b);
console.log(`table job on top in live usage and peak: ${onTop}/${reps}; its peak: min ${(tablePeaks[0] / MB).toFixed(0)} MB, median ${(tablePeaks[Math.floor(reps / 2)] / MB).toFixed(0)} MB, max ${(tablePeaks.at(-1) / MB).toFixed(0)} MB`);
await worker.close();
await queue.obliterate({ force: true });
await queue.close();
await meterProvider.shutdown();
