// A real OpenTelemetry SDK for any queue-otel instrumentation (the BullMQ-only tests use
// helpers/otel.ts): in-memory spans, a reader collected on demand, metrics by instrumentation scope.
import { metrics, trace } from '@opentelemetry/api';
import { type MetricData, MeterProvider } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import type { QueueInstrumentationBase } from '../../src/index.js';
import { globalContext, TestReader } from './otel.js';

export interface Telemetry<I extends QueueInstrumentationBase = QueueInstrumentationBase> {
  instrumentation: I;
  spans: InMemorySpanExporter;
  tracerProvider: TracerProvider;
  meterProvider: MeterProvider;
  /** Collects once; queue-otel's metrics by name. */
  collect(): Promise<Map<string, MetricData>>;
  /** Collects once; the metrics another instrumentation scope (a library's own telemetry) reported. */
  collectScope(scope: string): Promise<Map<string, MetricData>>;
  shutdown(): Promise<void>;
}

/**
 * Wires `instrumentation` to fresh providers. Set `global` to also register them globally, as
 * NodeSDK does (a library with telemetry of its own, such as pg-boss, uses the global providers).
 */
export function setupTelemetry<I extends QueueInstrumentationBase>(instrumentation: I, global = false): Telemetry<I> {
  globalContext();
  const spans = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] });
  const reader = new TestReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  instrumentation.setTracerProvider(tracerProvider);
  instrumentation.setMeterProvider(meterProvider);
  if (global) {
    trace.setGlobalTracerProvider(tracerProvider);
    metrics.setGlobalMeterProvider(meterProvider);
  }
  const collectAll = async () => (await reader.observed()).scopeMetrics;
  const byName = (scopes: Awaited<ReturnType<typeof collectAll>>, match: (scope: string) => boolean) => {
    const map = new Map<string, MetricData>();
    for (const scope of scopes) if (match(scope.scope.name)) for (const m of scope.metrics) map.set(m.descriptor.name, m);
    return map;
  };
  return {
    instrumentation,
    spans,
    tracerProvider,
    meterProvider,
    async collect() {
      return byName(await collectAll(), (scope) => scope.startsWith('queue-otel'));
    },
    async collectScope(scope: string) {
      return byName(await collectAll(), (name) => name === scope);
    },
    async shutdown() {
      instrumentation.disable();
      await meterProvider.shutdown();
      await tracerProvider.shutdown();
    },
  };
}
