// CPU attribution on a shared event loop: a job that spins 300 ms in three slices runs beside two
// jobs that await a 300 ms timer. Prints what queue-otel attributed to each, per repetition.
//   node examples/cpu-attribution/run.mjs [repetitions]     (Redis on 127.0.0.1:6379 or REDIS_URL)
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';

const require = createRequire(import.meta.url);
const api = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { TracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace');
const { BullMQInstrumentation } = require('queue-otel');

api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const spans = new InMemorySpanExporter();
const instrumentation = new BullMQInstrumentation();
instrumentation.setTracerProvider(new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] }));
const { Queue, Worker } = require('bullmq');

const reps = Number(process.argv[2] ?? 10);
const url = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const connection = { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null };
const name = `cpu-attribution-${process.pid}`;
const queue = new Queue(name, { connection });
const spin = (ms) => { const end = performance.now() + ms; while (performance.now() < end); };
const worker = new Worker(name, async (job) => {
  if (job.name === 'spin') {
    spin(100); // before the first await
    await sleep(10);
    spin(100);
    await Promise.resolve();
    spin(100);
  } else {
    await sleep(300);
  }
}, { connection, concurrency: 4 });

console.log('rep  spin job (300 ms of CPU)   wait jobs (300 ms timer)');
const errors = [];
for (let rep = 1; rep <= reps; rep++) {
  spans.reset();
  await queue.addBulk([{ name: 'spin' }, { name: 'wait' }, { name: 'wait' }].map((j) => ({ ...j, data: {} })));
  while (spans.getFinishedSpans().length < 3) await sleep(20);
  const cpu = (n) => spans.getFinishedSpans().filter((s) => s.attributes['queue.job.name'] === n).map((s) => Number(s.attributes['queue.job.cpu.time']));
  const [s] = cpu('spin');
  errors.push(s / 0.3 - 1);
  console.log(`${String(rep).padStart(3)}  ${s.toFixed(4)} s (${((s / 0.3 - 1) * 100).toFixed(1)}%)        ${cpu('wait').map((w) => w.toFixed(4)).join(' s, ')} s`);
}
errors.sort((a, b) => Math.abs(a) - Math.abs(b));
console.log(`spin job: worst error ${(errors.at(-1) * 100).toFixed(1)}% over ${reps} repetitions`);
await worker.close();
await queue.obliterate({ force: true });
await queue.close();
