import {
  type Attributes,
  type Context,
  type Span,
  SpanKind,
  SpanStatusCode,
  context,
  propagation,
  trace,
} from '@opentelemetry/api';
import type { SendHookInfo } from '../config.js';
import {
  ATTR_ERROR_TYPE,
  ATTR_MESSAGING_BATCH_MESSAGE_COUNT,
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_MESSAGE_ID,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_MESSAGING_SYSTEM,
  ATTR_QUEUE_JOB_NAME,
  OPERATION_SEND,
} from '../semconv.js';
import { errorMessage, errorType } from './error-type.js';
import type { JobSeries } from './series.js';
import type { QueueTelemetry } from './telemetry.js';

/** One job a producer operation adds. */
export interface SentJob {
  queue: string;
  /** Undefined when the library has no job names. */
  jobName: string | undefined;
}

/** What an adapter knows about a producer operation (add, addBulk, a flow) before it runs. */
export interface SendFacts {
  /** The queue the span is named after: the queue added to, or a flow's root queue. */
  queue: string;
  /** Every job the operation adds. */
  jobs: readonly SentJob[];
  /** False when the library already makes a producer span for this call. */
  traced: boolean;
  /**
   * True when the library itself records `messaging.client.sent.messages` and
   * `messaging.client.operation.duration` for this call: queue-otel then records neither.
   */
  nativeMessagingMetrics?: boolean;
  /** For the user's sendHook only. */
  hookInfo: () => SendHookInfo;
}

/** A propagation carrier holding W3C trace context fields. */
export type Carrier = Record<string, string>;

/**
 * Producer operations: the `send` span, the context injected into the jobs, and the sent-message
 * count and operation duration. The adapter's `invoke` receives the carrier to store in each job.
 */
export class SendRecorder {
  constructor(private readonly telemetry: QueueTelemetry) {}

  run<T>(facts: SendFacts, invoke: (carrier: Carrier | undefined) => Promise<T>): Promise<T> {
    const t = this.telemetry;
    const startedAt = performance.now();
    let span: Span | undefined;
    let ctx: Context | undefined;
    let carrier: Carrier | undefined;
    try {
      const tracer = t.tracer;
      if (facts.traced && tracer !== undefined) {
        const attributes: Attributes = {
          [ATTR_MESSAGING_SYSTEM]: t.system,
          [ATTR_MESSAGING_DESTINATION_NAME]: facts.queue,
          [ATTR_MESSAGING_OPERATION_NAME]: OPERATION_SEND,
          [ATTR_MESSAGING_OPERATION_TYPE]: OPERATION_SEND,
        };
        const only = facts.jobs.length === 1 ? facts.jobs[0] : undefined;
        if (only !== undefined) {
          if (only.jobName !== undefined) attributes[ATTR_QUEUE_JOB_NAME] = only.jobName;
        } else attributes[ATTR_MESSAGING_BATCH_MESSAGE_COUNT] = facts.jobs.length;
        span = tracer.startSpan(`${OPERATION_SEND} ${facts.queue}`, { kind: SpanKind.PRODUCER, attributes });
        ctx = trace.setSpan(context.active(), span);
        carrier = {};
        propagation.inject(ctx, carrier);
        if (t.config.sendHook) {
          try {
            t.config.sendHook(span, facts.hookInfo());
          } catch (error) {
            t.diag.error('sendHook threw', error);
          }
        }
      }
    } catch (error) {
      t.diag.error('could not start a send span; the jobs are added untraced', error);
      span = ctx = carrier = undefined;
    }
    let promise: Promise<T>;
    try {
      promise = ctx === undefined ? invoke(carrier) : context.with(ctx, invoke, undefined, carrier);
    } catch (error) {
      this.finish(facts, startedAt, span, error, undefined);
      throw error;
    }
    return promise.then(
      (result) => {
        this.finish(facts, startedAt, span, undefined, result);
        return result;
      },
      (error: unknown) => {
        this.finish(facts, startedAt, span, error, undefined);
        throw error;
      },
    );
  }

  private finish(facts: SendFacts, startedAt: number, span: Span | undefined, error: unknown, result: unknown): void {
    const t = this.telemetry;
    try {
      const metrics = facts.nativeMessagingMetrics === true ? undefined : t.metrics;
      const failed = error !== undefined;
      const type = failed ? errorType(error) : undefined;
      if (metrics !== undefined) {
        const queue = t.tracker.queue(facts.queue);
        let attributes: Attributes = { ...queue.attributes, [ATTR_MESSAGING_OPERATION_NAME]: OPERATION_SEND };
        if (type !== undefined) attributes = { ...attributes, [ATTR_ERROR_TYPE]: type };
        metrics.operationDuration.record((performance.now() - startedAt) / 1000, attributes);
        if (!failed) this.countSent(facts.jobs);
      }
      if (span !== undefined) {
        const id = facts.jobs.length === 1 ? jobIdOf(result) : undefined;
        if (id !== undefined) span.setAttribute(ATTR_MESSAGING_MESSAGE_ID, id);
        if (type !== undefined) {
          span.setAttribute(ATTR_ERROR_TYPE, type);
          if (error instanceof Error) span.recordException(error);
          span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(error) });
        }
        span.end();
      }
    } catch (e) {
      t.diag.error('could not record a producer operation', e);
    }
  }

  /** One counter add per distinct (queue, job name), not one per job: bulk adds stay cheap. */
  private countSent(jobs: readonly SentJob[]): void {
    const counter = this.telemetry.metrics?.sentMessages;
    if (counter === undefined) return;
    const only = jobs.length === 1 ? jobs[0] : undefined;
    if (only !== undefined) {
      counter.add(1, this.telemetry.tracker.series(only.queue, only.jobName).sendAttributes);
      return;
    }
    const counts = new Map<JobSeries, number>();
    for (const job of jobs) {
      const series = this.telemetry.tracker.series(job.queue, job.jobName);
      counts.set(series, (counts.get(series) ?? 0) + 1);
    }
    for (const [series, count] of counts) counter.add(count, series.sendAttributes);
  }
}

/** The id of the job an add returned, when it returned one (BullMQ returns the Job). */
function jobIdOf(result: unknown): string | undefined {
  // pg-boss's send resolves the id itself; the others resolve a job with an id.
  if (typeof result === 'string') return result;
  const id = (result as { id?: unknown } | null | undefined)?.id;
  return typeof id === 'string' ? id : undefined;
}
