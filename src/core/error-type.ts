import { OTHER } from '../semconv.js';

/**
 * The `error.type` of a thrown value: its class name (`TypeError`, `ValidationError`), or its
 * `name` for plain Error objects with a custom name, per the semantic conventions. A thrown
 * non-error reads `_OTHER`: its value could be anything, and metric attributes must stay bounded.
 */
export function errorType(error: unknown): string {
  if (error === null || typeof error !== 'object') return OTHER;
  const className = (error as { constructor?: { name?: unknown } }).constructor?.name;
  if (typeof className === 'string' && className !== '' && className !== 'Error' && className !== 'Object') {
    return className;
  }
  const name = (error as { name?: unknown }).name;
  return typeof name === 'string' && name !== '' ? name : OTHER;
}

/** The message of a thrown value, for the span status. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return typeof error === 'string' ? error : String(error);
}
