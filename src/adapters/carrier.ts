/**
 * The producer's trace context as the Redis-backed adapters store it in a job's options: a JSON
 * carrier in `opts.telemetry.metadata`, the field BullMQ's own telemetry uses, so that the job's
 * data (what the user's processor sees) is never touched.
 */
import type { Carrier } from '../core/sends.js';

/** Options that may carry the producer's context. */
export interface TelemetryOptions {
  telemetry?: { metadata?: unknown; [key: string]: unknown };
  [key: string]: unknown;
}

/** The carrier stored in `opts`, or undefined when there is none (or it is not ours to read). */
export function readCarrier(opts: TelemetryOptions | undefined | null): Carrier | undefined {
  const metadata = opts?.telemetry?.metadata;
  if (typeof metadata !== 'string' || metadata === '') return undefined;
  try {
    const parsed: unknown = JSON.parse(metadata);
    if (parsed === null || typeof parsed !== 'object') return undefined;
    const carrier: Carrier = {};
    for (const [key, value] of Object.entries(parsed)) if (typeof value === 'string') carrier[key] = value;
    return carrier;
  } catch {
    return undefined;
  }
}

/**
 * A copy of `opts` carrying `carrier`; the caller's object is never changed. Options that already
 * carry metadata keep it.
 */
export function withCarrier<T extends TelemetryOptions>(opts: T | undefined, carrier: Carrier | undefined): T | undefined {
  if (carrier === undefined || opts?.telemetry?.metadata !== undefined) return opts;
  return { ...opts, telemetry: { ...opts?.telemetry, metadata: JSON.stringify(carrier) } } as T;
}
