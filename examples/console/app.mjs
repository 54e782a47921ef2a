// A tiny worker with no OpenTelemetry code, for the console exporters:
//   OTEL_TRACES_EXPORTER=console OTEL_METRICS_EXPORTER=console OTEL_METRIC_EXPORT_INTERVAL=5000 \
//     node --import queue-otel/register examples/console/app.mjs
// Three jobs (one fails for good), a few seconds of work, then it closes everything and exits:
// register flushes the spans and metrics to the console when the event loop drains.
import { Queue, Worker } from 'bullmq';

const url = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const connection = { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null };
const name = `console-example-${process.pid}`;

class CardDeclined extends Error {
  name = 'CardDeclined';
}

const queue = new Queue(name, { connection });
let ended = 0;
const worker = new Worker(
  name,
  async (job) => {
    await new Promise((r) => setTimeout(r, 300));
    if (job.name === 'charge-card') throw new CardDeclined('insufficient funds');
    return { ok: true };
  },
  { connection, concurrency: 2 },
);
const done = new Promise((resolve) => {
  const end = () => ++ended === 3 && resolve();
  worker.on('completed', end);
  worker.on('failed', end);
});

await queue.add('send-invoice', { invoice: 42 });
await queue.add('send-invoice', { invoice: 43 });
await queue.add('charge-card', { order: 7 });
await done;
await new Promise((r) => setTimeout(r, 5500)); // one periodic metric export while the worker is up
await worker.close();
await queue.obliterate({ force: true });
await queue.close();
