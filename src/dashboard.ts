/**
 * The live dashboard for an OpenTelemetry SDK set up in code (`queue-otel/register` turns it on
 * with `QUEUE_OTEL_DASHBOARD_PORT` instead). Needs `@opentelemetry/sdk-metrics`, which every SDK
 * setup has.
 */
import type { DiagLogger } from '@opentelemetry/api';
import { MetricReader } from '@opentelemetry/sdk-metrics';
import { type MetricReaderClass, createDashboard } from './dashboard/server.js';

/** Options of {@link createQueueDashboard}. */
export interface QueueDashboardOptions {
  /** Port to listen on; 0 picks a free one (see {@link QueueDashboard.ready}). */
  port: number;
  /** Address to listen on. Default `127.0.0.1`: the page shows queue and job names. */
  host?: string;
  /** Shown in the page's title. Default: the SDK resource's `service.name`, as the exporters send it. */
  serviceName?: string;
  /**
   * The instrumentations' `queueStateInterval`, if you changed it: the depth tiles say their
   * figures are at most this many milliseconds old. Default 15000.
   */
  queueStateInterval?: number;
  /** Where faults of the dashboard are reported. Default: OpenTelemetry's global `diag`. */
  diag?: DiagLogger;
}

/** A running dashboard: give its reader to the SDK. */
export interface QueueDashboard {
  /** Add to the SDK's metric readers (`metricReaders` of NodeSDK, `readers` of MeterProvider). */
  readonly reader: MetricReader;
  /** Resolves with the page's address once the server listens; rejects if it cannot listen. */
  readonly ready: Promise<string>;
  /** Stops collecting and closes the server (the SDK's shutdown does not). */
  close(): Promise<void>;
}

/**
 * Starts the live dashboard's HTTP server and returns the in-process metric reader that feeds it.
 * The server never keeps the process alive. Nothing here throws: a port it cannot listen on (or
 * that is not a port number) is reported through `diag` and {@link QueueDashboard.ready} rejects;
 * the reader still works.
 *
 * @example
 * ```ts
 * const dashboard = createQueueDashboard({ port: 9465 });
 * new NodeSDK({
 *   instrumentations: getQueueInstrumentations(),
 *   metricReaders: [new PrometheusExporter(), dashboard.reader],
 * }).start();
 * ```
 */
export function createQueueDashboard(options: QueueDashboardOptions): QueueDashboard {
  const dashboard = createDashboard(MetricReader as unknown as MetricReaderClass, {
    port: options?.port as number,
    host: options?.host,
    serviceName: options?.serviceName,
    queueStateInterval: options?.queueStateInterval,
    diag: options?.diag,
  });
  return dashboard as unknown as QueueDashboard;
}
