#!/usr/bin/env node
// `npm run demo`: a worker with a realistic mix of jobs, instrumented through queue-otel/register
// with no code change, Prometheus metrics on :9464 and the live dashboard on :9465.
//
// 1. Redis: REDIS_URL (default redis://127.0.0.1:6379) if it answers PING; otherwise a private
//    redis-server found on PATH, started on a free port and stopped with the demo; otherwise it
//    says how to get one and exits.
// 2. Starts `node --import queue-otel/register examples/demo/worker.mjs` with the environment a
//    user would set, prints where to look, and stops everything on Ctrl-C.
import './node-version.mjs'; // first: on an older Node.js, one line and exit 1
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Resolves true when a Redis server answers PING at host:port within `ms`. */
function ping(host, port, ms = 1000) {
  return new Promise((done) => {
    const socket = createConnection({ host, port });
    const finish = (ok) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(ms, () => finish(false));
    socket.on('error', () => finish(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => finish(d.toString().startsWith('+PONG')));
  });
}

function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

function portFree(port) {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, '0.0.0.0', () => server.close(() => done(true)));
  });
}

function onPath(command) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const file = join(dir, command);
    if (dir && existsSync(file)) return file;
  }
  return undefined;
}

async function redis() {
  const url = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  if (await ping(url.hostname, Number(url.port || 6379))) return { url: url.href, stop: () => {} };
  const server = onPath('redis-server');
  if (!server) {
    console.error(
      `demo: no Redis answers at ${url.href} and no redis-server is on PATH.\n` +
        '  Start one and run the demo again, for example:\n' +
        '    Debian/Ubuntu:  sudo apt-get install redis-server   (it starts on 127.0.0.1:6379)\n' +
        '    macOS:          brew install redis && brew services start redis\n' +
        '    Docker:         docker run -d -p 6379:6379 redis:7\n' +
        '  or point REDIS_URL at a Redis you have.',
    );
    process.exit(1);
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'queue-otel-demo-redis-'));
  const child = spawn(server, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore',
  });
  for (let i = 0; i < 50 && !(await ping('127.0.0.1', port, 200)); i++) await new Promise((r) => setTimeout(r, 100));
  if (!(await ping('127.0.0.1', port))) {
    console.error(`demo: started ${server} on port ${port}, but it does not answer`);
    child.kill();
    process.exit(1);
  }
  console.log(`demo: no Redis at ${url.href}; started ${server} on 127.0.0.1:${port} for this run`);
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () => {
      child.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function pickPort(wanted, what) {
  if (await portFree(wanted)) return wanted;
  const port = await freePort();
  console.log(`demo: port ${wanted} (${what}) is in use; using ${port}`);
  return port;
}

if (!existsSync(join(ROOT, 'dist/esm/register.js'))) {
  console.error('demo: dist/ is missing; run `npm run build` first (npm run demo does).');
  process.exit(1);
}

const store = await redis();
const promPort = process.env.OTEL_EXPORTER_PROMETHEUS_PORT ? Number(process.env.OTEL_EXPORTER_PROMETHEUS_PORT) : await pickPort(9464, 'Prometheus');
const dashPort = process.env.QUEUE_OTEL_DASHBOARD_PORT ? Number(process.env.QUEUE_OTEL_DASHBOARD_PORT) : await pickPort(9465, 'dashboard');

// What a user sets to get the same: the standard OTEL_* variables and queue-otel's own.
const env = {
  OTEL_SERVICE_NAME: 'queue-otel-demo',
  OTEL_METRICS_EXPORTER: 'prometheus',
  OTEL_TRACES_EXPORTER: 'none',
  OTEL_LOGS_EXPORTER: 'none',
  QUEUE_OTEL_QUEUE_STATE_INTERVAL: '2000',
  // A CPU profile of these jobs' own code, at most one per job name a minute: the dashboard's job
  // table links the latest one (docs/profiling.md).
  QUEUE_OTEL_PROFILE_JOBS: 'thumbnail,import-customers',
  ...process.env,
  OTEL_EXPORTER_PROMETHEUS_PORT: String(promPort),
  QUEUE_OTEL_DASHBOARD_PORT: String(dashPort),
  REDIS_URL: store.url,
};
// `queue-otel/register` resolves to this checkout through the package's self-reference.
const worker = spawn(process.execPath, ['--import', 'queue-otel/register', join(ROOT, 'examples/demo/worker.mjs')], {
  cwd: ROOT,
  env,
  stdio: 'inherit',
});

console.log(`
queue-otel demo
  live dashboard   http://localhost:${dashPort}/
  Prometheus       http://localhost:${promPort}/metrics
                   curl -s localhost:${promPort}/metrics | grep -E '^queue_job_(busy_time|memory_usage)'
                   curl -s localhost:${promPort}/metrics | grep -E 'deferral|^queue_schedule_lag|^queue_worker_rate_limit'
  Redis            ${store.url} (keys under the prefix queue-otel-demo)
  started as       OTEL_METRICS_EXPORTER=prometheus QUEUE_OTEL_DASHBOARD_PORT=${dashPort} \\
                   QUEUE_OTEL_PROFILE_JOBS=${env.QUEUE_OTEL_PROFILE_JOBS} \\
                   node --import queue-otel/register examples/demo/worker.mjs
  Ctrl-C stops it.
`);

let exiting = false;
const forward = (signal) => {
  if (exiting) return;
  exiting = true;
  worker.kill(signal);
};
process.on('SIGINT', () => forward('SIGINT'));
process.on('SIGTERM', () => forward('SIGTERM'));
worker.on('exit', (code, signal) => {
  store.stop();
  process.exit(code ?? (signal ? 0 : 1));
});
