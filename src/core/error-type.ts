import { OTHER } from '../semconv.js';
import { isError, readProperty } from '../safe.js';

/**
 * The `error.type` of a thrown value: its class name (`TypeError`, `ValidationError`), or its
 * `name` for plain Error objects with a custom name, per the semantic conventions. A thrown
 * non-error, or a value whose class cannot be read, reads `_OTHER`: its value could be anything,
 * and metric attributes must stay bounded. Never throws (getters and Proxy traps may). The
 * result is not yet bounded in length: the attribute budgets do that.
 */
export function errorType(error: unknown): string {
  if (error === null || typeof error !== 'object') return OTHER;
  const className = readProperty(readProperty(error, 'constructor'), 'name');
  if (typeof className === 'string' && className !== '' && className !== 'Error' && className !== 'Object') {
    return className;
  }
  const name = readProperty(error, 'name');
  return typeof name === 'string' && name !== '' ? name : isError(error) ? 'Error' : OTHER;
}
