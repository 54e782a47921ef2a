// Code shared by the benchmark scripts in bench/: the OpenTelemetry SDK most of them measure with
// (benchSdk), the diag logger (keepDiag), the end of a run (runBench), and small helpers.
//
// Loading this module loads no OpenTelemetry package: benchSdk and keepDiag require them when
// called, so a bench decides the order (the SDK, then the instrumentation, then the queue library).

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';

// The OpenTelemetry SDK is required as CommonJS: the same copies the built package (dist/cjs)
// resolves, and the queue libraries are patched by require-in-the-middle, so a bench requires
// '../dist/cjs/index.js' and then the library with require() too (bench/ resolves as this file).
const require = createRequire(import.meta.url);

/**
 * The integer in environment variable `name`, or `fallback` when it is unset or empty; throws
 * when it is not an integer >= `min`.
 */
export function intEnv(name, fallback, min = 1) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** `x` rounded to `digits` decimal places (default 2). */
export function round(x, digits = 2) {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Zeroes or dumps callgrind's counters of this process (asynchronously: the loop must go on). */
export async function callgrindControl(flag) {
  await promisify(execFile)('callgrind_control', [flag, String(process.pid)]);
}

/** Instructions counted in one callgrind dump file (its "summary:" or "totals:" line). */
export function callgrindInstructions(file) {
  const m = /^(?:summary|totals):\s*(\d+)/m.exec(readFileSync(file, 'utf8'));
  if (!m) throw new Error(`no instruction total in ${file}`);
  return Number(m[1]);
}

/**
 * Sets the OpenTelemetry diag logger: anything the instrumentation or the SDK reports at WARN or
 * above is kept (and, with `echo`, printed to stderr as it comes). Returns the array it keeps the
 * messages in, `[diag <level>] <message>` each.
 */
export function keepDiag({ echo = true } = {}) {
  const api = require('@opentelemetry/api');
  const messages = [];
  const keep = (level) => (...args) => {
    const text = `[diag ${level}] ${args.map((a) => (a instanceof Error ? a.stack : String(a))).join(' ')}`;
    messages.push(text);
    if (echo) console.error(text);
  };
  api.diag.setLogger({ error: keep('error'), warn: keep('warn'), info() {}, debug() {}, verbose() {} }, api.DiagLogLevel.WARN);
  return messages;
}

/**
 * A real OpenTelemetry SDK whose exporters drop everything: the diag logger (keepDiag), the
 * AsyncLocalStorage context manager (enabled, global), the W3C propagator (global), a
 * TracerProvider with a BatchSpanProcessor and a MeterProvider with a PeriodicExportingMetricReader,
 * both exporting every `exportIntervalMs`. Call it before requiring '../dist/cjs/index.js', and that
 * before the queue library.
 *
 * Options: `exportIntervalMs` (default 1000); `exportTimeoutMs` (the reader's exportTimeoutMillis,
 * the SDK's default when unset); `diag` ('echo' the default, 'keep' to keep the messages without
 * printing them, false for no diag logger); `propagator` (false: no global propagator);
 * `spansByName` (also count exported spans by the first word of their name and their kind);
 * `setGlobal` (also register both providers as the global ones).
 *
 * Returns { api, tracerProvider, meterProvider, spanProcessor, contextManager, diagMessages,
 * spans: { exported, byName }, metrics: { exports }, shutdown() }; `spans` and `metrics` count
 * what the exporters were handed, and shutdown() shuts both providers down (failures ignored) and
 * disables the context manager.
 */
export function benchSdk({ exportIntervalMs = 1000, exportTimeoutMs, diag = 'echo', propagator = true, spansByName = false, setGlobal = false } = {}) {
  const api = require('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
  const { W3CTraceContextPropagator } = require('@opentelemetry/core');
  const { TracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace');
  const { MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');

  const diagMessages = diag ? keepDiag({ echo: diag === 'echo' }) : [];

  const contextManager = new AsyncLocalStorageContextManager().enable();
  api.context.setGlobalContextManager(contextManager);
  if (propagator) api.propagation.setGlobalPropagator(new W3CTraceContextPropagator());

  const spans = { exported: 0, byName: spansByName ? new Map() : undefined };
  const dropSpans = {
    export(batch, done) {
      spans.exported += batch.length;
      if (spans.byName !== undefined) {
        for (const s of batch) {
          const key = `${s.name.split(' ')[0]} (kind ${s.kind})`;
          spans.byName.set(key, (spans.byName.get(key) ?? 0) + 1);
        }
      }
      done({ code: 0 });
    },
    async shutdown() {},
    async forceFlush() {},
  };
  const spanProcessor = new BatchSpanProcessor({
    exporter: dropSpans,
    maxQueueSize: 65536, // large enough that no span of a round is dropped (dropping would be cheaper)
    maxExportBatchSize: 512,
    scheduledDelayMillis: exportIntervalMs,
  });
  const tracerProvider = new TracerProvider({ spanProcessors: [spanProcessor] });

  const metrics = { exports: 0 };
  const dropMetrics = {
    export(_metrics, done) {
      metrics.exports++;
      done({ code: 0 });
    },
    async forceFlush() {},
    async shutdown() {},
  };
  const meterProvider = new MeterProvider({
    readers: [
      new PeriodicExportingMetricReader({
        exporter: dropMetrics,
        exportIntervalMillis: exportIntervalMs,
        ...(exportTimeoutMs === undefined ? {} : { exportTimeoutMillis: exportTimeoutMs }),
      }),
    ],
  });
  if (setGlobal) {
    api.trace.setGlobalTracerProvider(tracerProvider);
    api.metrics.setGlobalMeterProvider(meterProvider);
  }

  return {
    api,
    tracerProvider,
    meterProvider,
    spanProcessor,
    contextManager,
    diagMessages,
    spans,
    metrics,
    async shutdown() {
      await Promise.allSettled([tracerProvider.shutdown(), meterProvider.shutdown()]);
      contextManager.disable();
    },
  };
}

/**
 * Runs a bench: `main`, then always `teardown` if given (a failure of either is printed, not
 * thrown), and sets process.exitCode (1 if either failed). If the process has not exited 5 s
 * later, prints what still holds the event loop and exits (code process.exitCode's value, or 2).
 */
export async function runBench(main, teardown) {
  let exitCode = 0;
  try {
    await main();
  } catch (err) {
    exitCode = 1;
    console.error(`bench failed: ${err?.stack ?? err}`);
  }
  try {
    await teardown?.();
  } catch (err) {
    exitCode = 1;
    console.error(`bench teardown failed: ${err?.stack ?? err}`);
  }
  process.exitCode = exitCode;
  // If anything still holds the event loop, say what and leave anyway.
  setTimeout(() => {
    console.error('bench: the process did not exit by itself; open handles:', process.getActiveResourcesInfo());
    process.exit(exitCode || 2);
  }, 5000).unref();
}
