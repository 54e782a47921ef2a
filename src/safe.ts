/**
 * Reading values queue-otel does not trust (what a job carries, what user code throws) without
 * ever throwing: a getter, a Proxy trap or a revoked Proxy may throw on any property read, and a
 * thrown value reaches the host library's code if it escapes.
 */

/** `value[key]`, or undefined when `value` is not an object or reading it throws. */
export function readProperty(value: unknown, key: string): unknown {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return undefined;
  try {
    return (value as Record<string, unknown>)[key];
  } catch {
    return undefined;
  }
}

/** `value[key]` when it is a string, else undefined. */
export function readString(value: unknown, key: string): string | undefined {
  const v = readProperty(value, key);
  return typeof v === 'string' ? v : undefined;
}

/** `value` when it is a finite number, else undefined. */
export function finiteNumber(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/** `value[key]` when it is a finite number, else undefined. */
export function readNumber(value: unknown, key: string): number | undefined {
  return finiteNumber(readProperty(value, key));
}

/** `value instanceof Error` that cannot throw (a Proxy's getPrototypeOf trap can). */
export function isError(value: unknown): value is Error {
  try {
    return value instanceof Error;
  } catch {
    return false;
  }
}

/**
 * A string of at most `max` UTF-16 units, copied: a slice of a long string can keep the whole
 * string alive in V8, and a bounded attribute must not hold a 1 MiB job name in memory.
 */
export function boundedCopy(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max;
  // Do not split a surrogate pair.
  const code = text.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end--;
  return Buffer.from(text.slice(0, end), 'utf16le').toString('utf16le');
}

/** A description of any thrown value for a span status or a log, bounded, never throwing. */
export function describeValue(value: unknown, max = 1024): string {
  try {
    if (isError(value)) {
      const message = readProperty(value, 'message');
      if (typeof message === 'string') return boundedCopy(message, max);
    }
    if (typeof value === 'string') return boundedCopy(value, max);
    if (typeof value === 'symbol') return boundedCopy(value.toString(), max);
    return boundedCopy(String(value), max);
  } catch {
    return 'a value that cannot be converted to a string';
  }
}
