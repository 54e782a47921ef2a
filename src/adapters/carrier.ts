/**
 * The producer's trace context as the Redis-backed adapters store it in a job's options: a JSON
 * carrier in `opts.telemetry.metadata`, the field BullMQ's own telemetry uses, so the job's data
 * (what the user's processor sees) is never touched. Whatever is there may have been written by
 * another service: reading it never throws and yields a plain object or nothing (the core checks
 * its fields).
 */
import type { Carrier } from '../core/seam.js';
import { readProperty } from '../safe.js';

/** A carrier is a few short fields; a longer metadata string is not one of ours. */
const MAX_METADATA_LENGTH = 16 * 1024;

/** The raw `opts.telemetry.metadata` when it is a string, else undefined. */
export function readMetadata(opts: unknown): string | undefined {
  const metadata = readProperty(readProperty(opts, 'telemetry'), 'metadata');
  return typeof metadata === 'string' && metadata !== '' && metadata.length <= MAX_METADATA_LENGTH ? metadata : undefined;
}

/** The parsed carrier stored in `opts`, or undefined when there is none or it is not JSON. */
export function readCarrier(opts: unknown): Record<string, unknown> | undefined {
  const metadata = readMetadata(opts);
  if (metadata === undefined) return undefined;
  try {
    const parsed: unknown = JSON.parse(metadata);
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A copy of `opts` carrying `carrier` (and `extra` fields); the caller's object is never changed.
 * Options that already carry metadata, or are not a plain options object, are returned as they are.
 */
export function withCarrier<T>(opts: T, carrier: Carrier | undefined, extra?: Record<string, string>): T {
  if (carrier === undefined) return opts;
  if (opts !== undefined && opts !== null && (typeof opts !== 'object' || Array.isArray(opts))) return opts;
  const telemetry = readProperty(opts, 'telemetry');
  if (telemetry !== undefined && (telemetry === null || typeof telemetry !== 'object')) return opts;
  if (readProperty(telemetry, 'metadata') !== undefined) return opts;
  try {
    const metadata = JSON.stringify(extra === undefined ? carrier : { ...carrier, ...extra });
    return { ...(opts as object), telemetry: { ...(telemetry as object | undefined), metadata } } as T;
  } catch {
    return opts; // options whose getters throw: the library gets them as they are
  }
}
