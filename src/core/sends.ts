import { type Attributes, type Context, type Link, type Span, SpanKind, context, propagation, trace } from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_MESSAGING_BATCH_MESSAGE_COUNT,
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_MESSAGE_ID,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_MESSAGING_SYSTEM,
  ATTR_QUEUE_JOB_NAME,
  OPERATION_CREATE,
  OPERATION_SEND,
  OTHER,
} from '../semconv.js';
import { readProperty } from '../safe.js';
import type { CoreContext } from './context.js';
import { errorType } from './error-type.js';
import { callHook } from './hooks.js';
import type { Carrier, SendFacts, SentJob } from './seam.js';
import type { JobSeries } from './series.js';
import { markFailed, spanText } from './spans.js';

/**
 * Jobs of one call that get a `create` span of their own; the rest carry the `send` span's
 * context. The send span links to each create span, and 128 is the SDK's default link limit.
 */
export const MAX_CREATE_SPANS = 128;

/** What to store in each job of a call (by its index in `SendFacts.jobs`). */
export type CarrierFor = (job: number) => Carrier | undefined;

/**
 * Producer operations: the `send` span (and, for a batch, a `create` span per job, as the
 * messaging conventions recommend, so each job's consumer links to its own creation), the context
 * injected into the jobs, and the sent-message count and operation duration.
 */
export class SendRecorder {
  /** Operation-duration sets of calls whose jobs go to several queues (no destination). */
  private readonly multiQueue = new Map<string, Attributes>();

  constructor(private readonly core: CoreContext) {}

  run<T>(read: () => SendFacts, add: (carrierFor: CarrierFor) => T): T {
    const core = this.core;
    const startedAt = performance.now();
    let facts: SendFacts;
    try {
      facts = read();
    } catch (error) {
      core.report.error('could not read a producer call\'s facts; its jobs are added untraced', error);
      return add(() => undefined);
    }
    let span: Span | undefined;
    let ctx: Context | undefined;
    let carrierFor: CarrierFor = () => undefined;
    const destination = destinationOf(facts);
    try {
      const tracer = core.tracer;
      if (facts.traced && tracer !== undefined) {
        const limit = core.config.maxNameLength;
        const attributes: Attributes = {
          [ATTR_MESSAGING_SYSTEM]: core.system,
          [ATTR_MESSAGING_OPERATION_NAME]: OPERATION_SEND,
          [ATTR_MESSAGING_OPERATION_TYPE]: OPERATION_SEND,
        };
        if (destination !== undefined) attributes[ATTR_MESSAGING_DESTINATION_NAME] = spanText(destination, limit);
        const jobs = facts.jobs;
        const only = jobs.length === 1 ? jobs[0] : undefined;
        if (only !== undefined) {
          if (typeof only.jobName === 'string') attributes[ATTR_QUEUE_JOB_NAME] = spanText(only.jobName, limit);
        } else attributes[ATTR_MESSAGING_BATCH_MESSAGE_COUNT] = jobs.length;
        const creates = only === undefined && core.config.createSpans ? this.createSpans(jobs) : [];
        const links: Link[] = creates.map((c) => ({ context: c.span.spanContext() }));
        const name = destination === undefined ? OPERATION_SEND : `${OPERATION_SEND} ${spanText(destination, limit)}`;
        span = tracer.startSpan(name, { kind: SpanKind.PRODUCER, attributes, links });
        ctx = trace.setSpan(context.active(), span);
        const carrier: Carrier = {};
        propagation.inject(ctx, carrier);
        carrierFor = (job) => creates[job]?.carrier ?? carrier;
        const hook = core.config.sendHook;
        if (hook !== undefined) callHook(core.report, 'sendHook', () => hook(span as Span, facts.hookInfo()));
      }
    } catch (error) {
      core.report.error('could not start a send span; the jobs are added untraced', error);
      try {
        span?.end();
      } catch {
        // nothing more to do
      }
      span = ctx = undefined;
      carrierFor = () => undefined;
    }
    let result: T;
    try {
      result = ctx === undefined ? add(carrierFor) : context.with(ctx, add, undefined, carrierFor);
    } catch (error) {
      this.finish(facts, destination, startedAt, span, error, undefined);
      throw error;
    }
    // Only a native promise is chained; any other value is returned as it is (never call `.then`
    // on something that only looks like a promise).
    if (!(result instanceof Promise)) {
      this.finish(facts, destination, startedAt, span, undefined, result);
      return result;
    }
    return result.then(
      (value: unknown) => {
        this.finish(facts, destination, startedAt, span, undefined, value);
        return value;
      },
      (error: unknown) => {
        this.finish(facts, destination, startedAt, span, error ?? new Error('rejected without a reason'), undefined);
        throw error;
      },
    ) as T;
  }

  /** A `create` span per job (at most MAX_CREATE_SPANS), ended at once, and its carrier. */
  private createSpans(jobs: readonly SentJob[]): Array<{ span: Span; carrier: Carrier }> {
    const tracer = this.core.tracer;
    if (tracer === undefined) return [];
    const limit = this.core.config.maxNameLength;
    const creates: Array<{ span: Span; carrier: Carrier }> = [];
    const parent = context.active();
    for (const job of jobs.slice(0, MAX_CREATE_SPANS)) {
      const queue = spanText(job.queue, limit);
      const attributes: Attributes = {
        [ATTR_MESSAGING_SYSTEM]: this.core.system,
        [ATTR_MESSAGING_DESTINATION_NAME]: queue,
        [ATTR_MESSAGING_OPERATION_NAME]: OPERATION_CREATE,
        [ATTR_MESSAGING_OPERATION_TYPE]: OPERATION_CREATE,
      };
      if (typeof job.jobName === 'string') attributes[ATTR_QUEUE_JOB_NAME] = spanText(job.jobName, limit);
      const span = tracer.startSpan(`${OPERATION_CREATE} ${queue}`, { kind: SpanKind.PRODUCER, attributes }, parent);
      const carrier: Carrier = {};
      propagation.inject(trace.setSpan(parent, span), carrier);
      span.end();
      creates.push({ span, carrier });
    }
    return creates;
  }

  private finish(facts: SendFacts, destination: string | undefined, startedAt: number, span: Span | undefined, error: unknown, result: unknown): void {
    const core = this.core;
    try {
      const failed = error !== undefined;
      const type = failed ? errorType(error) : undefined;
      const metrics = facts.nativeMessagingMetrics === true ? undefined : core.metrics;
      if (metrics !== undefined) {
        metrics.operationDuration.record((performance.now() - startedAt) / 1000, this.operationAttributes(destination, type));
        if (!failed) this.countSent(facts.jobs);
      }
      if (span !== undefined) {
        // pg-boss's send resolves the id itself; the others resolve a job with an id.
        const id = facts.jobs.length !== 1 ? undefined : typeof result === 'string' ? result : readProperty(result, 'id');
        if (typeof id === 'string') span.setAttribute(ATTR_MESSAGING_MESSAGE_ID, spanText(id, core.config.maxNameLength));
        if (type !== undefined) markFailed(span, error, type, core.config.maxNameLength);
      }
    } catch (e) {
      core.report.error('could not record a producer operation', e);
    } finally {
      try {
        span?.end();
      } catch {
        // a span processor that throws: the producer goes on
      }
    }
  }

  private operationAttributes(destination: string | undefined, type: string | undefined): Attributes {
    if (destination !== undefined) return this.core.tracker.queue(destination).operationAttributes(type);
    // Jobs to several queues: no destination, as the conventions say; error types bounded.
    const { maxErrorTypesPerQueue, maxNameLength } = this.core.config;
    let key = type ?? '';
    if (type !== undefined && !this.multiQueue.has(type) && (this.multiQueue.size > maxErrorTypesPerQueue || type.length > maxNameLength)) key = OTHER;
    let found = this.multiQueue.get(key);
    if (found === undefined) {
      found = { [ATTR_MESSAGING_SYSTEM]: this.core.system, [ATTR_MESSAGING_OPERATION_NAME]: OPERATION_SEND };
      if (type !== undefined) found[ATTR_ERROR_TYPE] = key;
      this.multiQueue.set(key, found);
    }
    return found;
  }

  /** One counter add per distinct (queue, job name), not one per job: bulk adds stay cheap. */
  private countSent(jobs: readonly SentJob[]): void {
    const counter = this.core.metrics?.sentMessages;
    if (counter === undefined) return;
    const tracker = this.core.tracker;
    const only = jobs.length === 1 ? jobs[0] : undefined;
    if (only !== undefined) {
      counter.add(1, tracker.series(only.queue, only.jobName).sendAttributes);
      return;
    }
    const counts = new Map<JobSeries, number>();
    for (const job of jobs) {
      const series = tracker.series(job.queue, job.jobName);
      counts.set(series, (counts.get(series) ?? 0) + 1);
    }
    for (const [series, count] of counts) counter.add(count, series.sendAttributes);
  }
}

/** The destination of a call: the one queue all its jobs go to, or undefined when several. */
function destinationOf(facts: SendFacts): string | undefined {
  let queue: string | undefined;
  for (const job of facts.jobs) {
    if (queue === undefined) queue = job.queue;
    else if (job.queue !== queue) return undefined;
  }
  return queue ?? facts.queue;
}
