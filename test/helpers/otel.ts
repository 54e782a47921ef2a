// A real OpenTelemetry SDK (in-memory span exporter, a metric reader collected on demand) and a
// real bullmq loaded through require after the instrumentation is on, as an application would.
import { type Attributes, context, propagation } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  AggregationTemporality,
  type DataPoint,
  DataPointType,
  type Histogram,
  InstrumentType,
  MeterProvider,
  MetricReader,
  type MetricData,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { BullMQInstrumentation, type BullMQInstrumentationConfig } from '../../src/index.js';
import { requireLibrary } from './library.js';

export type BullMQ = typeof import('bullmq');


let contextReady = false;
export function globalContext(): void {
  if (contextReady) return;
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  contextReady = true;
}

/**
 * A reader that collects only when the test asks: each collection is one "scrape", and shows what
 * queue-otel observed at that collection. With cumulative temporality the SDK repeats the last
 * value of an asynchronous instrument's attribute set the callback did not observe; so gauges and
 * up-down counters are read with delta temporality (an unobserved set is then absent), and
 * {@link TestReader.observed} turns an up-down counter's deltas back into the observed values.
 * Everything else is cumulative.
 */
export class TestReader extends MetricReader {
  private readonly sums = new Map<string, number>();

  constructor() {
    super({
      aggregationTemporalitySelector: (type) =>
        type === InstrumentType.OBSERVABLE_GAUGE || type === InstrumentType.OBSERVABLE_UP_DOWN_COUNTER
          ? AggregationTemporality.DELTA
          : AggregationTemporality.CUMULATIVE,
    });
  }

  /** Collects once; up-down counters carry the value observed (the sum of their deltas). */
  async observed(): Promise<ResourceMetrics> {
    const { resourceMetrics, errors } = await this.collect();
    if (errors.length > 0) throw errors[0];
    for (const scope of resourceMetrics.scopeMetrics) {
      for (const metric of scope.metrics) {
        if (metric.dataPointType !== DataPointType.SUM || metric.isMonotonic || metric.aggregationTemporality !== AggregationTemporality.DELTA) continue;
        for (const p of metric.dataPoints) {
          const key = `${scope.scope.name}\0${metric.descriptor.name}\0${JSON.stringify(Object.entries(p.attributes).sort())}`;
          const sum = (this.sums.get(key) ?? 0) + p.value;
          this.sums.set(key, sum);
          (p as { value: number }).value = sum;
        }
      }
    }
    return resourceMetrics;
  }

  protected async onShutdown(): Promise<void> {}
  protected async onForceFlush(): Promise<void> {}
}

export interface Otel {
  bullmq: BullMQ;
  instrumentation: BullMQInstrumentation;
  spans: InMemorySpanExporter;
  reader: TestReader;
  tracerProvider: TracerProvider;
  meterProvider: MeterProvider;
  /** Collects once and returns the metrics by name. */
  collect(): Promise<Map<string, MetricData>>;
  shutdown(): Promise<void>;
}

export function setupOtel(config?: BullMQInstrumentationConfig): Otel {
  globalContext();
  const spans = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] });
  const reader = new TestReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const instrumentation = new BullMQInstrumentation(config);
  instrumentation.setTracerProvider(tracerProvider);
  instrumentation.setMeterProvider(meterProvider);
  const bullmq = requireLibrary<BullMQ>('bullmq');
  return {
    bullmq,
    instrumentation,
    spans,
    reader,
    tracerProvider,
    meterProvider,
    async collect() {
      const resourceMetrics = await reader.observed();
      const byName = new Map<string, MetricData>();
      for (const scope of resourceMetrics.scopeMetrics) for (const m of scope.metrics) byName.set(m.descriptor.name, m);
      return byName;
    },
    async shutdown() {
      instrumentation.disable();
      await meterProvider.shutdown();
      await tracerProvider.shutdown();
    },
  };
}

/** The data points of a metric whose attributes include all of `match`. */
export function points<T = number>(metric: MetricData | undefined, match: Attributes = {}): DataPoint<T>[] {
  if (!metric) return [];
  return (metric.dataPoints as DataPoint<T>[]).filter((p) =>
    Object.entries(match).every(([k, v]) => p.attributes[k] === v),
  );
}

/** Sum of the values of matching points of a counter or gauge. */
export function total(metric: MetricData | undefined, match: Attributes = {}): number {
  return points<number>(metric, match).reduce((sum, p) => sum + p.value, 0);
}

/** Count and sum of matching points of a histogram. */
export function histogram(metric: MetricData | undefined, match: Attributes = {}): { count: number; sum: number; max: number } {
  const ps = points<Histogram>(metric, match);
  return {
    count: ps.reduce((n, p) => n + p.value.count, 0),
    sum: ps.reduce((n, p) => n + (p.value.sum ?? 0), 0),
    max: ps.reduce((n, p) => Math.max(n, p.value.max ?? -Infinity), -Infinity),
  };
}
