import { type Context, ROOT_CONTEXT, type SpanContext, isSpanContextValid, propagation, trace } from '@opentelemetry/api';
import type { Carrier } from './seam.js';

/** A carrier holds a few short fields (traceparent, tracestate, baggage); anything more is not one. */
const MAX_FIELDS = 16;
const MAX_FIELD_LENGTH = 8192;

/**
 * The carrier a job brought, as plain string fields, or undefined. Whatever a job carries is
 * untrusted (another service wrote it): only own string fields are kept, bounded, in an object
 * without a prototype, so `__proto__` is a field like any other.
 */
export function toCarrier(value: unknown): Carrier | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  try {
    const carrier: Carrier = Object.create(null);
    let fields = 0;
    for (const key of Object.keys(value)) {
      const field = (value as Record<string, unknown>)[key];
      if (typeof field !== 'string' || field.length > MAX_FIELD_LENGTH) continue;
      carrier[key] = field;
      if (++fields >= MAX_FIELDS) break;
    }
    return fields === 0 ? undefined : carrier;
  } catch {
    return undefined; // a Proxy or a getter that throws: not a carrier
  }
}

/** The producer's context a job carries, when it carries a valid one. */
export function producerContext(value: unknown): { context: Context; spanContext: SpanContext } | undefined {
  const carrier = toCarrier(value);
  if (carrier === undefined) return undefined;
  try {
    const extracted = propagation.extract(ROOT_CONTEXT, carrier);
    const spanContext = trace.getSpanContext(extracted);
    return spanContext !== undefined && isSpanContextValid(spanContext) ? { context: extracted, spanContext } : undefined;
  } catch {
    return undefined; // a propagator that throws on what it was given: no producer context
  }
}
