// The CommonJS counterpart of setup-instrumented.mjs, for libraries whose suites run on plain
// Node (bee-queue's ava): loaded with `node --require` in each test process, before the test file
// requires the library's source. Same environment variables, same patching: the instrumentation's
// module definition for the library, its patch() called on the source module (and each of its
// files on the source file), a real TracerProvider and MeterProvider with in-memory exporters.
'use strict';
const { appendFileSync, readFileSync } = require('node:fs');
const { join } = require('node:path');
const { context, metrics, propagation, trace } = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { W3CTraceContextPropagator } = require('@opentelemetry/core');
const { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
const { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } = require('@opentelemetry/sdk-trace');
const { LIBRARIES } = require('./libraries.mjs');

const lib = process.env.QO_SUITE_LIB;
const source = process.env.QO_SUITE_SOURCE;
const library = LIBRARIES[lib];
if (library === undefined || !source) throw new Error(`queue-otel suite setup: QO_SUITE_LIB (${lib}) and QO_SUITE_SOURCE (${source}) must be set by run.mjs`);

const queueOtel = require(join(__dirname, '../../dist/cjs/index.js'));
const Instrumentation = queueOtel[library.instrumentation];

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());
const spans = new InMemorySpanExporter();
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
const definition = instrumentation
  .getModuleDefinitions()
  .find((d) => d.name === library.module && d.patch !== undefined && !d.supportedVersions.includes('*'));
if (definition === undefined) throw new Error(`queue-otel suite setup: ${library.instrumentation} has no definition for ${library.module}`);

const main = require(join(source, library.sourceEntry));
definition.patch(main, version);
for (const file of definition.files ?? []) {
  const sourceFile = library.sourceFile(file.name);
  if (sourceFile === undefined) throw new Error(`queue-otel suite setup: no source file known for ${file.name}`);
  file.patch(require(join(source, sourceFile)), version);
}
const probe = library.wrappedMethod(main);
if (typeof probe !== 'function' || probe.__wrapped !== true) {
  throw new Error(`queue-otel suite setup: ${lib} ${version} source was not patched (${library.instrumentation})`);
}

process.on('exit', () => {
  const points = metricExporter
    .getMetrics()
    .flatMap((rm) => rm.scopeMetrics.flatMap((s) => s.metrics.map((m) => m.dataPoints.length)))
    .reduce((a, b) => a + b, 0);
  const line = { spans: spans.getFinishedSpans().length, metricPoints: points, pid: process.pid };
  if (process.env.QO_SUITE_REPORT) appendFileSync(process.env.QO_SUITE_REPORT, `${JSON.stringify(line)}\n`);
});
