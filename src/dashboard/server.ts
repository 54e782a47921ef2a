import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { type DiagLogger, diag as globalDiag } from '@opentelemetry/api';
import { DEFAULTS, warnConfig } from '../config.js';
import { latestProfiles, writtenProfile } from '../core/profiling/files.js';
import { selfUrl } from '../self-url.js';
import { METRIC_QUEUE_JOB_BUSY_TIME } from '../semconv.js';
import { type Collection, DashboardModel, type PointLike } from './model.js';

/** The part of an SDK `Resource` (2.x or 3.x) the dashboard reads: the service's name. */
interface ResourceLike {
  attributes: Record<string, unknown>;
  asyncAttributesPending?: boolean;
  waitForAsyncAttributes?: () => Promise<void>;
}

/** The part of an OpenTelemetry SDK `MetricReader` (2.x or 3.x) the dashboard uses. */
export interface CollectingReader {
  collect(): Promise<{
    resourceMetrics: {
      resource?: ResourceLike;
      scopeMetrics: Array<{ metrics: Array<{ descriptor: { name: string }; dataPoints: unknown[] }> }>;
    };
    errors: unknown[];
  }>;
}

/** A `MetricReader` class of the SDK the application runs (its constructor and the two hooks). */
export type MetricReaderClass = abstract new (options?: object) => CollectingReader;

export interface DashboardOptions {
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** Address to listen on. Default 127.0.0.1: the page shows queue names and job names. */
  host?: string;
  /** Milliseconds between collections. Default 2000. */
  intervalMs?: number;
  /** Shown in the page title. Default: the SDK resource's `service.name`, as Prometheus shows it. */
  serviceName?: string;
  /**
   * Milliseconds between reads of a queue's state (the instrumentations' `queueStateInterval`):
   * the depth tiles say their figures are at most this old. Default 15000.
   */
  queueStateInterval?: number;
  diag?: DiagLogger;
}

export interface Dashboard {
  /** Add this to the SDK's metric readers: the dashboard collects through it. */
  readonly reader: CollectingReader;
  /** Resolves with the page's address once the server listens (rejects if it cannot). */
  readonly ready: Promise<string>;
  /** Stops collecting and closes the server. */
  close(): Promise<void>;
}

const ASSETS: Record<string, string> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/assets/dashboard.js': 'dashboard.js',
  '/assets/dashboard.css': 'dashboard.css',
  '/assets/uPlot.iife.min.js': 'uPlot.iife.min.js',
  '/assets/uPlot.min.css': 'uPlot.min.css',
  '/assets/uPlot.LICENSE': 'uPlot.LICENSE',
};

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  LICENSE: 'text/plain; charset=utf-8',
};

/** The SDK's own default `service.name` (what Prometheus shows as the job when none is set). */
export const DEFAULT_SERVICE_NAME = process.argv0 ? `unknown_service:${process.argv0}` : 'unknown_service';

/**
 * The live dashboard: an in-process metric reader collected every `intervalMs`, a model that turns
 * its collections into time series, and a small HTTP server for the page and its JSON. The reader
 * class is the application's own SDK's, so the reader plugs into its MeterProvider.
 */
export function createDashboard(ReaderBase: MetricReaderClass, options: DashboardOptions): Dashboard {
  const diag = options.diag ?? globalDiag;
  const intervalMs = options.intervalMs ?? 2000;
  const model = new DashboardModel(intervalMs / 1000, undefined, (options.queueStateInterval ?? DEFAULTS.queueStateInterval) / 1000);
  let service = options.serviceName;
  const Reader = class extends (ReaderBase as unknown as new (options?: object) => CollectingReader) {
    protected async onShutdown(): Promise<void> {}
    protected async onForceFlush(): Promise<void> {}
  };
  const reader = new Reader();
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
    // A bad port must not stop the application: said once, and no page; the reader still works.
    const message = `queue-otel: option "port" of the live dashboard must be a port number from 0 to 65535, got ${String(options.port)}; the dashboard does not start`;
    warnConfig(message);
    const ready = Promise.reject(new TypeError(message));
    ready.catch(() => {});
    return { reader, ready, close: async () => {} };
  }

  let collecting = false;
  const tick = async () => {
    if (collecting) return;
    collecting = true;
    try {
      const started = Date.now();
      const { resourceMetrics, errors } = await reader.collect();
      for (const error of errors) diag.debug('queue-otel dashboard: collection error', error);
      service ??= await serviceName(resourceMetrics.resource);
      // Rates divide by the time between collections: take it from the SDK's own timestamp of the
      // observation (a point's endTime), not from when collect() resolved, which jitters.
      model.add(observedAt(resourceMetrics.scopeMetrics) ?? started, byName(resourceMetrics.scopeMetrics));
    } catch (error) {
      // Before the SDK registers the reader, collect() throws; later, a failure is reported only.
      diag.debug('queue-otel dashboard: collection failed', error);
    } finally {
      collecting = false;
    }
  };
  const timer = setInterval(() => void tick(), intervalMs);
  timer.unref();

  const files = new Map<string, Buffer>();
  const dir = fileURLToPath(new URL('../assets/dashboard/', selfUrl));
  const asset = (file: string): Buffer => {
    let body = files.get(file);
    if (body === undefined) files.set(file, (body = readFileSync(dir + file)));
    return body;
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    try {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      if (path === '/api/snapshot') {
        const body = JSON.stringify({ service: service ?? DEFAULT_SERVICE_NAME, ...model.snapshot(), profiles: profileLinks() });
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body);
        return;
      }
      if (path.startsWith('/profiles/')) {
        serveProfile(path, req, res, diag);
        return;
      }
      const file = ASSETS[path];
      if (file === undefined) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      const body = asset(file); // before the head: a failed read must still get an answer
      res
        .writeHead(200, { 'content-type': TYPES[file.split('.').pop() ?? ''] ?? 'application/octet-stream', 'cache-control': 'no-cache' })
        .end(body);
    } catch (error) {
      diag.error('queue-otel dashboard: request failed', error);
      if (res.headersSent) res.destroy();
      else res.writeHead(500, { 'content-type': 'text/plain' }).end('queue-otel dashboard: internal error\n');
    }
  });
  server.keepAliveTimeout = 5000;
  // The page must never keep an application alive that would otherwise exit.
  server.unref();
  const ready = new Promise<string>((resolve, reject) => {
    server.once('error', (error) => {
      diag.error(`queue-otel dashboard: could not listen on ${options.host ?? '127.0.0.1'}:${options.port}`, error);
      clearInterval(timer);
      reject(error);
    });
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      const address = server.address() as AddressInfo;
      const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      resolve(`http://${host}:${address.port}/`);
      void tick();
    });
  });
  ready.catch(() => {});

  return {
    reader,
    ready,
    async close() {
      clearInterval(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A link to the latest profile of a job name (option `profileJobs`). */
export interface ProfileLink {
  system: string;
  queue: string;
  /** Absent for a library without job names. */
  job?: string;
  /** Relative to the page. */
  url: string;
  /** Unix ms at which it was written. */
  writtenAt: number;
}

/** The latest profile of each job name that this process wrote. */
function profileLinks(): ProfileLink[] {
  return latestProfiles().map((p) => ({
    system: p.system,
    queue: p.queue,
    ...(p.jobName === undefined ? {} : { job: p.jobName }),
    url: `profiles/${p.id}.cpuprofile`,
    writtenAt: p.writtenAt,
  }));
}

/**
 * `/profiles/<id>.cpuprofile`: a profile this process wrote and still keeps, found by its id in
 * the list of written files; nothing of the request becomes a path, so no other file can be read.
 */
function serveProfile(path: string, req: IncomingMessage, res: ServerResponse, diag: DiagLogger): void {
  const match = /^\/profiles\/([1-9][0-9]{0,15})\.cpuprofile$/.exec(path);
  const profile = match === null ? undefined : writtenProfile(Number(match[1]));
  if (profile === undefined) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    return;
  }
  readFile(profile.path).then(
    (body) => {
      res
        .writeHead(200, {
          'content-type': 'application/json',
          'content-disposition': `attachment; filename="${basename(profile.path)}"`,
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
        })
        .end(body);
    },
    (error: unknown) => {
      diag.debug('queue-otel dashboard: could not read a profile', error);
      if (!res.headersSent) res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    },
  );
}

/**
 * The resource's `service.name`, once its asynchronous attributes (the host detector's) have
 * settled: reading them before logs an SDK error for nothing.
 */
async function serviceName(resource: ResourceLike | undefined): Promise<string | undefined> {
  if (resource === undefined) return undefined;
  if (resource.asyncAttributesPending) await resource.waitForAsyncAttributes?.();
  const name = resource.attributes['service.name'];
  return typeof name === 'string' && name !== '' ? name : undefined;
}

/** When the busy-time counter was observed in this collection, unix milliseconds. */
function observedAt(scopes: Array<{ metrics: Array<{ descriptor: { name: string }; dataPoints: unknown[] }> }>): number | undefined {
  for (const scope of scopes) {
    for (const metric of scope.metrics) {
      if (metric.descriptor.name !== METRIC_QUEUE_JOB_BUSY_TIME) continue;
      const end = (metric.dataPoints[0] as { endTime?: [number, number] } | undefined)?.endTime;
      if (Array.isArray(end) && end.length === 2) return end[0] * 1000 + end[1] / 1e6;
    }
  }
  return undefined;
}

function byName(scopes: Array<{ metrics: Array<{ descriptor: { name: string }; dataPoints: unknown[] }> }>): Collection {
  const map = new Map<string, PointLike[]>();
  for (const scope of scopes) {
    for (const metric of scope.metrics) {
      const points = map.get(metric.descriptor.name);
      if (points === undefined) map.set(metric.descriptor.name, [...(metric.dataPoints as PointLike[])]);
      else points.push(...(metric.dataPoints as PointLike[]));
    }
  }
  return map;
}
