// Faults inside telemetry never reach jobs; bad options warn and fall back to defaults; disable() restores BullMQ.
import { type Meter, type MeterProvider, type TracerProvider, diag, DiagLogLevel } from '@opentelemetry/api';
import { MeterProvider as SdkMeterProvider, PeriodicExportingMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { SimpleSpanProcessor, type SpanExporter, TracerProvider as SdkTracerProvider } from '@opentelemetry/sdk-trace';
import { afterAll, describe, expect, it } from 'vitest';
import { BullMQInstrumentation } from '../src/index.js';
import { type BullMQ, setupOtel } from './helpers/otel.js';
import { connection, queueName, until } from './helpers/redis.js';
import { requireLibrary } from './helpers/library.js';

const otel = setupOtel();
const bullmq: BullMQ = otel.bullmq;
const closers: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  await otel.shutdown();
});

const diagErrors: string[] = [];
const diagWarnings: string[] = [];
diag.setLogger(
  {
    error: (...args: unknown[]) => diagErrors.push(args.map(String).join(' ')),
    warn: (...args: unknown[]) => diagWarnings.push(args.map(String).join(' ')),
    info: () => {},
    debug: () => {},
    verbose: () => {},
  },
  DiagLogLevel.WARN,
);

/** Runs a completing, a retried and a failing job; returns what BullMQ saw. */
async function runJobs(label: string) {
  const name = queueName(label);
  const queue = new bullmq.Queue(name, { connection: connection() });
  const seen: Array<[string, unknown]> = [];
  const worker = new bullmq.Worker(name, async (job) => {
    if (job.name === 'fails') throw new SyntaxError(`bad ${job.attemptsMade}`);
    return { n: job.data.n * 2 };
  }, { connection: connection() });
  worker.on('completed', (job, r) => seen.push([job.name, r]));
  worker.on('failed', (job, e) => seen.push([job!.name, (e as Error).message]));
  closers.push(async () => {
    await worker.close();
    await queue.obliterate({ force: true });
    await queue.close();
  });
  await queue.add('works', { n: 21 });
  await queue.add('fails', {}, { attempts: 2 });
  await until(() => seen.length === 3, 10_000, 'jobs');
  const failed = await queue.getJobs(['failed']);
  return { seen: seen.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))), failedReason: failed.map((j) => [j.failedReason, j.attemptsMade]) };
}

describe('faults inside telemetry', () => {
  it('jobs run exactly as without instrumentation when the tracer and meter providers throw', async () => {
    otel.instrumentation.disable();
    const baseline = await runJobs('baseline');
    otel.instrumentation.enable();

    const throwingTracerProvider = { getTracer: () => ({ startSpan: () => { throw new Error('tracer down'); }, startActiveSpan: () => { throw new Error('tracer down'); } }) } as unknown as TracerProvider;
    const throwingMeter = new Proxy({}, { get: () => () => { throw new Error('meter down'); } }) as Meter;
    const throwingMeterProvider = { getMeter: () => throwingMeter } as MeterProvider;
    otel.instrumentation.setTracerProvider(throwingTracerProvider);
    otel.instrumentation.setMeterProvider(throwingMeterProvider);
    try {
      const withFaults = await runJobs('faulty-providers');
      expect(withFaults).toEqual(baseline);
      expect(diagErrors.some((m) => m.includes('could not create metric instruments'))).toBe(true);
      expect(diagErrors.some((m) => m.includes('could not start telemetry for a job'))).toBe(true);
    } finally {
      otel.instrumentation.setTracerProvider(otel.tracerProvider);
      otel.instrumentation.setMeterProvider(otel.meterProvider);
    }
  });

  it('jobs are unaffected by exporters that throw and by hooks that throw', async () => {
    otel.instrumentation.disable();
    const baseline = await runJobs('baseline-2');
    otel.instrumentation.enable();

    const badSpanExporter: SpanExporter = { export: () => { throw new Error('span exporter down'); }, shutdown: async () => {} };
    const tracerProvider = new SdkTracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: badSpanExporter })] });
    const badMetricExporter: PushMetricExporter = { export: () => { throw new Error('metric exporter down'); }, forceFlush: async () => {}, shutdown: async () => {} };
    const meterProvider = new SdkMeterProvider({ readers: [new PeriodicExportingMetricReader({ exporter: badMetricExporter, exportIntervalMillis: 100 })] });
    otel.instrumentation.setTracerProvider(tracerProvider);
    otel.instrumentation.setMeterProvider(meterProvider);
    otel.instrumentation.setConfig({
      processHook: () => { throw new Error('hook bug'); },
      sendHook: () => { throw new Error('hook bug'); },
    });
    try {
      const withFaults = await runJobs('faulty-exporters');
      await new Promise((r) => setTimeout(r, 250)); // let the metric reader export (and fail) a few times
      expect(withFaults).toEqual(baseline);
      expect(diagErrors.some((m) => m.includes('processHook threw'))).toBe(true);
    } finally {
      otel.instrumentation.setConfig({});
      otel.instrumentation.setTracerProvider(otel.tracerProvider);
      otel.instrumentation.setMeterProvider(otel.meterProvider);
      await meterProvider.shutdown().catch(() => {});
    }
  });
});

describe('options', () => {
  // Configuration never stops an application: a bad option is reported once through diag, naming
  // it and what it expected, and its default applies.
  it.each([
    [{ maxJobNamesPerQueue: 0 }, 'queue-otel: option "maxJobNamesPerQueue" must be an integer >= 1, got 0; using the default, 100'],
    [{ maxJobNamesPerQueue: '100' }, 'queue-otel: option "maxJobNamesPerQueue" must be an integer >= 1, got "100"; using the default, 100'],
    [{ useProducerSpanAsParent: 'yes' }, 'queue-otel: option "useProducerSpanAsParent" must be a boolean, got "yes"; using the default, false'],
    [{ processHook: 1 }, 'queue-otel: option "processHook" must be a function, got 1; ignored'],
    [{ queueStateInterval: 2.5 }, 'queue-otel: option "queueStateInterval" must be a whole number of milliseconds >= 1, got 2.5; using the default, 15000'],
    [{ queues: 'emails' }, 'queue-otel: option "queues" must be an array of queue names or { name, prefix } objects, got "emails"; using none'],
    [{ maxJobNames: 10 }, 'queue-otel: unknown option "maxJobNames" ignored (did you mean "maxJobNamesPerQueue"?); known options: enabled, maxJobNamesPerQueue,'],
    [{ jobcpu: false }, 'queue-otel: unknown option "jobcpu" ignored (did you mean "jobCpu"?)'],
  ])('%j warns once through diag at construction, naming the option, and its default applies', (options, message) => {
    const before = diagWarnings.length;
    const first = new BullMQInstrumentation({ enabled: false, ...options } as never);
    new BullMQInstrumentation({ enabled: false, ...options } as never); // the same mistake again: no second warning
    const said = diagWarnings.slice(before);
    expect(said).toHaveLength(1);
    expect(said[0]!.startsWith(message)).toBe(true);
    // The bad option is left out, so every part of the instrumentation sees its default.
    expect(first.getConfig()).toEqual({ enabled: false });
  });

  it('a config that is not an object warns and every option keeps its default', () => {
    const before = diagWarnings.length;
    const i = new BullMQInstrumentation('fast' as never);
    expect(diagWarnings.slice(before)).toEqual(['queue-otel: options must be an object, got "fast"; every option keeps its default']);
    expect(i.getConfig()).toEqual({ enabled: true });
    i.disable();
  });

  it('options that throw when read (a getter, a proxy) warn, and every option keeps its default', () => {
    const before = diagWarnings.length;
    const hostile = { enabled: false, get maxJobNamesPerQueue(): number { throw new Error('boom'); } };
    const i = new BullMQInstrumentation(hostile as never);
    expect(diagWarnings.slice(before)).toEqual(['queue-otel: options could not be read (reading them threw); every option keeps its default']);
    expect(i.getConfig()).toEqual({ enabled: true });
    i.disable();
  });

  it('a bad setConfig at runtime is reported through diag, and its default applies', () => {
    const i = new BullMQInstrumentation({ enabled: false, maxJobNamesPerQueue: 7 });
    const before = diagWarnings.length;
    i.setConfig({ enabled: false, maxJobNamesPerQueue: -1 });
    expect(i.getConfig()).toEqual({ enabled: false });
    expect(diagWarnings.slice(before)).toEqual(['queue-otel: option "maxJobNamesPerQueue" must be an integer >= 1, got -1; using the default, 100']);
  });
});

describe('disable and enable', () => {
  it('disable() restores the original BullMQ methods; enable() instruments again', async () => {
    const proto = bullmq.Worker.prototype as unknown as Record<string, { __wrapped?: boolean }>;
    const queueProto = bullmq.Queue.prototype as unknown as Record<string, { __wrapped?: boolean }>;
    expect(proto.processJob?.__wrapped).toBe(true);
    expect(proto.callProcessJob?.__wrapped).toBe(true);
    expect(queueProto.add?.__wrapped).toBe(true);
    otel.instrumentation.disable();
    expect(proto.processJob?.__wrapped).toBeUndefined();
    expect(proto.handleFailed?.__wrapped).toBeUndefined();
    expect(proto.run?.__wrapped).toBeUndefined();
    expect(proto.callProcessJob?.__wrapped).toBeUndefined();
    expect((bullmq.QueueEvents.prototype as unknown as Record<string, { __wrapped?: boolean }>).run?.__wrapped).toBeUndefined();
    expect((bullmq.ChildPool.prototype as unknown as Record<string, { __wrapped?: boolean }>).retain?.__wrapped).toBeUndefined();
    expect(queueProto.add?.__wrapped).toBeUndefined();
    expect((bullmq.FlowProducer.prototype as unknown as Record<string, { __wrapped?: boolean }>).add?.__wrapped).toBeUndefined();

    const name = queueName('disabled');
    const queue = new bullmq.Queue(name, { connection: connection() });
    let done = false;
    const worker = new bullmq.Worker(name, async () => {}, { connection: connection() });
    worker.on('completed', () => (done = true));
    closers.push(async () => {
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
    });
    otel.spans.reset();
    await queue.add('quiet', {});
    await until(() => done, 10_000, 'job');
    expect(otel.spans.getFinishedSpans()).toHaveLength(0);

    otel.instrumentation.enable();
    expect(proto.processJob?.__wrapped).toBe(true);
    expect(requireLibrary<{ Worker: { prototype: { processJob: { __wrapped?: boolean } } } }>('bullmq').Worker.prototype.processJob.__wrapped).toBe(true);
  });
});
