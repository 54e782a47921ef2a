// Vitest setup file for a queue library's OWN test suite, run from the library's source folder by
// test/library-suites/run.mjs --instrumented. It does to the library's source classes what
// queue-otel does to the published package: it takes the instrumentation's module definition for
// the library (getModuleDefinitions()) and calls its patch() on the source module the library's
// tests import (and each of the definition's files on its source file), with a real TracerProvider
// and MeterProvider (in-memory exporters, a metric collection every second, so the queue state
// reader and the live metrics run too) and default options.
//
// Environment (set by run.mjs):
//   QO_SUITE_LIB      bullmq | pg-boss | ...
//   QO_SUITE_SOURCE   the library's source folder (holds package.json and src/)
//   QO_SUITE_REPORT   a file this appends one JSON line to per test file: spans and metric points
//                     exported, so the runner can tell the instrumentation really ran.
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { context, metrics, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { LIBRARIES } from './libraries.mjs';

const ROOT = new URL('../../', import.meta.url);
const lib = process.env.QO_SUITE_LIB;
const source = process.env.QO_SUITE_SOURCE;
const library = LIBRARIES[lib];
if (library === undefined || !source) throw new Error(`queue-otel suite setup: QO_SUITE_LIB (${lib}) and QO_SUITE_SOURCE (${source}) must be set by run.mjs`);

const queueOtel = await import(new URL('dist/esm/index.js', ROOT).href);
const Instrumentation = queueOtel[library.instrumentation];

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());
const spans = new InMemorySpanExporter();
globalThis.__qoSpans = spans;
const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] });
const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 1000, exportTimeoutMillis: 900 });
const meterProvider = new MeterProvider({ readers: [reader] });
trace.setGlobalTracerProvider(tracerProvider);
metrics.setGlobalMeterProvider(meterProvider);

// QO_SUITE_CONFIG: options as JSON, to narrow a failure down (default: none, the defaults).
const instrumentation = new Instrumentation(process.env.QO_SUITE_CONFIG ? JSON.parse(process.env.QO_SUITE_CONFIG) : undefined);
instrumentation.setTracerProvider(tracerProvider);
instrumentation.setMeterProvider(meterProvider);

const version = JSON.parse(readFileSync(join(source, 'package.json'), 'utf8')).version;
const definitions = instrumentation.getModuleDefinitions().filter((d) => d.name === library.module && d.patch !== undefined);
// The patching definition is the one with a real range (the other, '*', only warns on unsupported versions).
const definition = definitions.find((d) => !d.supportedVersions.includes('*'));
if (definition === undefined) throw new Error(`queue-otel suite setup: ${library.instrumentation} has no definition for ${library.module}`);

// Patched in a beforeAll hook, which runs after the test file has been collected (its imports
// evaluated, its vi.mock()s applied) and before its own hooks and tests: the source classes are the
// ones the test file imported, loaded as the test file arranged. (Importing the source here, before
// the test file, would load it ahead of a vi.mock() of a module it uses.) Methods are wrapped on the
// prototypes, so objects the file built while being collected are instrumented too.
beforeAll(async () => {
  const main = await import(pathToFileURL(join(source, library.sourceEntry)).href);
  // QO_SUITE_IMPORT_ONLY=1: a control run that imports the source as the instrumented run does and
  // patches nothing, to tell a failure of queue-otel from one of the way the source is loaded.
  if (process.env.QO_SUITE_IMPORT_ONLY === '1') return;
  definition.patch(main, version);
  for (const file of definition.files ?? []) {
    const sourceFile = library.sourceFile(file.name);
    if (sourceFile === undefined) throw new Error(`queue-otel suite setup: no source file known for ${file.name}`);
    file.patch(await import(pathToFileURL(join(source, sourceFile)).href), version);
  }
  // Prove the patch took: the library names a method the adapter wraps.
  const probe = library.wrappedMethod(main);
  if (typeof probe !== 'function' || probe.__wrapped !== true) {
    throw new Error(`queue-otel suite setup: ${lib} ${version} source was not patched (${library.instrumentation})`);
  }
}, 60_000);

afterAll(async () => {
  try {
    await reader.forceFlush();
  } catch {
    // a collection that failed is seen in the counts below
  }
  const points = metricExporter
    .getMetrics()
    .flatMap((rm) => rm.scopeMetrics.flatMap((s) => s.metrics.map((m) => m.dataPoints.length)))
    .reduce((a, b) => a + b, 0);
  const line = { spans: spans.getFinishedSpans().length, metricPoints: points, pid: process.pid };
  metricExporter.reset();
  spans.reset();
  if (process.env.QO_SUITE_REPORT) appendFileSync(process.env.QO_SUITE_REPORT, `${JSON.stringify(line)}\n`);
});
