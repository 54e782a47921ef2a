/** A function of any shape; wrappers pass arguments through untouched. */
export type AnyFunction = (...args: never[]) => unknown;

/** One method an adapter wraps: `target[method] = wrap(original)`, undone by restoring it. */
export interface MethodPatch {
  target: object;
  method: string;
  wrap: (original: AnyFunction) => AnyFunction;
}

/**
 * Calls `call` and runs `settled` once the promise it returns settles (`threw` and the error when
 * it rejects, else the value), or at once when it throws or returns a value that is not a native
 * promise. Its value and its error pass through untouched, and a fault in `settled` never reaches
 * the caller.
 */
export function whenSettled<T>(call: () => T, settled: (threw: boolean, errorOrValue?: unknown) => void): T {
  let result: T;
  try {
    result = call();
  } catch (error) {
    settleQuietly(settled, true, error);
    throw error;
  }
  if (!(result instanceof Promise)) {
    settleQuietly(settled, false, result);
    return result;
  }
  return result.then(
    (value: unknown) => {
      settleQuietly(settled, false, value);
      return value;
    },
    (error: unknown) => {
      settleQuietly(settled, true, error);
      throw error;
    },
  ) as T;
}

/** Runs `settled`; a fault in it never reaches the library (the core reports its own faults). */
function settleQuietly(settled: (threw: boolean, errorOrValue?: unknown) => void, threw: boolean, errorOrValue: unknown): void {
  try {
    settled(threw, errorOrValue);
  } catch {
    // nothing may reach the library
  }
}

/** `original.apply(self, args)`, typed loosely: wrappers pass whatever they were given. */
export function callOriginal(original: AnyFunction, self: unknown, args: ArrayLike<unknown>): unknown {
  return (original as (...a: unknown[]) => unknown).apply(self, args as unknown[]);
}
