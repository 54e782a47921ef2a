import { type Span, SpanStatusCode } from '@opentelemetry/api';
import { ATTR_ERROR_TYPE, OTHER } from '../semconv.js';
import { boundedCopy, describeValue, isError } from '../safe.js';

/**
 * A string attribute for a span, at most `max` characters: spans are per job, so a long name is
 * cut (its start still helps find the job) rather than folded as it is on metrics.
 */
export function spanText(value: string, max: number): string {
  return typeof value === 'string' ? boundedCopy(value, max) : OTHER;
}

/**
 * Marks a span as failed: `error.type`, the exception event when the value is an Error, ERROR
 * status with its message. Each step is guarded: a thrown value's getters may throw.
 */
export function markFailed(span: Span, error: unknown, type: string, max: number): void {
  span.setAttribute(ATTR_ERROR_TYPE, type.length > max ? OTHER : type);
  if (isError(error)) {
    try {
      span.recordException(error);
    } catch {
      // its getters threw: status and type still tell what happened
    }
  }
  span.setStatus({ code: SpanStatusCode.ERROR, message: describeValue(error) });
}
