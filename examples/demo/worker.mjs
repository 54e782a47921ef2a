// The demo's worker: a realistic mix of jobs on six queues, with no OpenTelemetry code at all.
// It is started with `node --import queue-otel/register worker.mjs` (examples/demo/run.mjs does
// that); everything you see on the dashboard and on /metrics comes through register.
//
//   emails    quick jobs (welcome-email, receipt-email), and every 30 s a delayed batch of
//             nightly-digest jobs (they sit in `delayed` for 10 s, then run)
//   reports   slow jobs (monthly-report, 3-10 s), CPU-bound ones (thumbnail), and import-customers,
//             which loads a whole "table" (600,000 rows) into memory before writing it out
//   webhooks  deliver-webhook: flaky, fails 45% of attempts with WebhookTimeout and retries with
//             backoff; some use up their 4 attempts and end in the failed set (dead letters)
//   billing   a job scheduler (`billing-sync`, every 5 s) whose run (charge-cards) takes 6-7 s on
//             one worker: each run starts late (queue.schedule.lag), and BullMQ skips the
//             occurrences that pass while one runs
//   partners  sync-orders: the partner's API is closed 10 s out of every 30 s; a job that finds it
//             closed puts itself off until it reopens (job.moveToDelayed, then DelayedError): an
//             attempt that ends `deferred`, not failed
//   crm       push-contact: at most 10 calls a second (the worker's `limiter`), in bursts of 40;
//             now and then the CRM answers "429, retry in 1 s" and the job hands the whole queue
//             back to the rate limiter (queue.rateLimit, then Worker.RateLimitError)
//
// Environment: REDIS_URL (default redis://127.0.0.1:6379), DEMO_DURATION_S (stop after that many
// seconds; default: run until SIGINT/SIGTERM), DEMO_BUSY_WORKERS=N (adds a `busy` queue whose N
// workers run one long job each for the whole run: busy time must read N), DEMO_BUSY_JOB_S.
import { setTimeout as wait } from 'node:timers/promises';
import { DelayedError, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';

const url = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const connection = {
  host: url.hostname,
  port: Number(url.port || 6379),
  password: url.password || undefined,
  maxRetriesPerRequest: null,
};
// Its own key prefix: the demo never touches the application queues of this Redis.
const prefix = process.env.DEMO_PREFIX ?? 'queue-otel-demo';
const duration = Number(process.env.DEMO_DURATION_S ?? 0);
const busyWorkers = Number(process.env.DEMO_BUSY_WORKERS ?? 0);
const busyJobS = Number(process.env.DEMO_BUSY_JOB_S ?? 600);

// Aborted on stop, so that running jobs do not keep the process alive after the workers closed.
const stopped = new AbortController();
const sleep = (ms) => wait(ms, undefined, { signal: stopped.signal });
const between = (lo, hi) => lo + Math.random() * (hi - lo);

class WebhookTimeout extends Error {
  name = 'WebhookTimeout';
}

/** The partner's API is down for maintenance 10 s out of every 30 s: when it opens again, or 0. */
function partnerClosedUntil() {
  const cycle = Date.now() % 30_000;
  return cycle < 10_000 ? Date.now() - cycle + 10_000 : 0;
}

/** Keeps the CPU busy for `ms` (an image resize, a PDF render). */
function spin(ms) {
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) x += Math.sqrt(x + 1);
  return x;
}

const processors = {
  emails: async (job) => {
    await sleep(job.name === 'nightly-digest' ? between(100, 300) : between(20, 90));
    return { sent: true };
  },
  reports: async (job) => {
    if (job.name === 'thumbnail') return { checksum: spin(between(150, 400)) };
    if (job.name === 'import-customers') {
      // Loads the whole table before writing it: the job that eats the server.
      const rows = [];
      for (let batch = 0; batch < 30; batch++) {
        for (let i = 0; i < 20_000; i++) rows.push({ id: batch * 20_000 + i, name: `customer ${i}`, tags: ['a', 'b'], score: Math.random() });
        await sleep(100);
      }
      await sleep(3000);
      return { imported: rows.length };
    }
    // monthly-report: slow, mostly waiting on "the database", a little CPU.
    const parts = Math.round(between(6, 20));
    for (let i = 0; i < parts; i++) {
      spin(10);
      await sleep(500);
    }
    return { pages: parts };
  },
  webhooks: async () => {
    await sleep(between(50, 400));
    if (Math.random() < 0.45) throw new WebhookTimeout('endpoint did not answer in time');
    return { status: 200 };
  },
  billing: async () => {
    await sleep(between(6000, 7000));
    return { charged: true };
  },
  partners: async (job, token) => {
    const reopens = partnerClosedUntil();
    if (reopens > 0) {
      // Not a failure: put the job off until the API is open again, without using an attempt.
      await job.moveToDelayed(reopens + between(0, 2000), token);
      throw new DelayedError();
    }
    await sleep(between(100, 300));
    return { synced: true };
  },
  crm: async () => {
    await sleep(between(30, 80));
    if (Math.random() < 0.03) {
      // "429 Too Many Requests, retry in 1 s": hold the whole queue back, and this job goes back
      // to wait (not a failure either).
      await queues.crm.rateLimit(1000);
      throw Worker.RateLimitError();
    }
    return { status: 200 };
  },
  busy: async (job) => {
    await sleep(job.data.seconds * 1000);
    return 'done';
  },
};

const concurrency = { emails: 10, reports: 4, webhooks: 5, billing: 1, partners: 3, crm: 4, busy: busyWorkers };
// The CRM takes at most 10 calls a second: the worker's rate limiter holds it to that.
const limiter = { crm: { max: 10, duration: 1000 } };
const names = Object.keys(processors).filter((q) => q !== 'busy' || busyWorkers > 0);

// One demo per prefix at a time: a second one would obliterate the first one's queues under it.
const lease = new Redis(connection);
const leaseKey = `${prefix}:demo-lease`;
if ((await lease.set(leaseKey, String(process.pid), 'PX', 10_000, 'NX')) !== 'OK') {
  console.error(`demo: another demo (pid ${await lease.get(leaseKey)}) is running on this Redis under the prefix "${prefix}"; stop it, or set DEMO_PREFIX`);
  process.exit(1);
}
const renew = setInterval(() => void lease.set(leaseKey, String(process.pid), 'PX', 10_000).catch(() => {}), 3_000);

const queues = Object.fromEntries(names.map((name) => [name, new Queue(name, { connection, prefix })]));
for (const queue of Object.values(queues)) {
  queue.on('error', (error) => console.error(`demo: queue ${queue.name}: ${error.message}`));
  await queue.obliterate({ force: true }); // a fresh start on each run (only the demo's own keys)
}
const workers = names.map((name) => {
  const worker = new Worker(name, processors[name], { connection, prefix, concurrency: concurrency[name], limiter: limiter[name] });
  worker.on('error', (error) => console.error(`demo: worker ${name}: ${error.message}`));
  return worker;
});

const timers = [];
const every = (ms, fn) => {
  const run = () => fn().catch((error) => console.error(`demo: producer: ${error.message}`));
  void run();
  timers.push(setInterval(run, ms));
};
const keep = { removeOnComplete: 1000, removeOnFail: 5000 };

if (busyWorkers > 0) {
  await queues.busy.addBulk(
    Array.from({ length: busyWorkers }, (_, i) => ({ name: 'long-export', data: { i, seconds: busyJobS }, opts: keep })),
  );
}
// A scheduler that cannot keep up: due every 5 s, its run takes longer than that.
await queues.billing.upsertJobScheduler('billing-sync', { every: 5_000 }, { name: 'charge-cards', opts: keep });
every(200, () => queues.emails.add(Math.random() < 0.6 ? 'welcome-email' : 'receipt-email', { to: 'someone@example.com' }, keep));
every(30_000, () =>
  queues.emails.addBulk(Array.from({ length: 25 }, (_, i) => ({ name: 'nightly-digest', data: { i }, opts: { ...keep, delay: 10_000 } }))),
);
every(2_000, () => queues.reports.add('monthly-report', { month: '2026-10' }, keep));
every(1_500, () => queues.reports.add('thumbnail', { image: 'photo.jpg' }, keep));
every(25_000, () => queues.reports.add('import-customers', { file: 'customers.csv' }, keep));
every(250, () =>
  queues.webhooks.add('deliver-webhook', { url: 'https://example.com/hook' }, { ...keep, attempts: 4, backoff: { type: 'exponential', delay: 500 } }),
);
every(500, () => queues.partners.add('sync-orders', { partner: 'acme' }, keep));
every(8_000, () =>
  queues.crm.addBulk(Array.from({ length: 40 }, (_, i) => ({ name: 'push-contact', data: { contact: i }, opts: keep }))),
);

console.log(`demo: worker running (pid ${process.pid}): queues ${names.join(', ')} under prefix "${prefix}"`);

let stopping = 0;
let step = 'closing workers';
async function stop(signal) {
  if (stopping) {
    // A second Ctrl-C: do not wait any longer. (Ctrl-C reaches this process and the launcher,
    // which forwards it: signals within a second of the first are that same Ctrl-C.)
    if (Date.now() - stopping < 1000) return;
    console.log(`demo: ${signal} again: exiting now (while ${step})`);
    process.exit(130);
  }
  stopping = Date.now();
  console.log(`demo: ${signal ?? 'time is up'}: closing workers`);
  setTimeout(() => {
    console.log(`demo: still ${step} after 15 s; exiting`);
    process.exit(1);
  }, 15_000).unref();
  for (const t of timers) clearInterval(t);
  stopped.abort();
  // Long jobs would hold close() up; the demo does not need them to finish.
  await Promise.all(workers.map((w) => w.close(true)));
  step = 'closing queues';
  await Promise.all(Object.values(queues).map((q) => q.close()));
  step = 'releasing the demo lease';
  clearInterval(renew);
  await lease.del(leaseKey);
  lease.disconnect();
  step = 'flushing telemetry';
  // Closing everything lets the event loop drain: register flushes telemetry and the process ends.
}
process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));
if (duration > 0) setTimeout(() => void stop(), duration * 1000);
