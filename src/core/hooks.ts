import { readProperty } from '../safe.js';
import type { Reporter } from './report.js';

/**
 * Calls a user hook (`processHook`, `sendHook`): a throw is reported, and so is a rejection when
 * the hook is async (an unhandled rejection would otherwise end the process).
 */
export function callHook(report: Reporter, name: string, hook: () => unknown): void {
  let result: unknown;
  try {
    result = hook();
  } catch (error) {
    report.error(`${name} threw`, error);
    return;
  }
  const then = readProperty(result, 'then');
  if (typeof then !== 'function') return;
  try {
    then.call(result, undefined, (error: unknown) => report.error(`${name} rejected`, error));
  } catch (error) {
    report.error(`${name} returned a thenable that threw`, error);
  }
}
