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
  const quietly = (threw: boolean, errorOrValue?: unknown) => {
    try {
      settled(threw, errorOrValue);
    } catch {
      // the core reports its own faults; nothing may reach the library
    }
  };
  let result: T;
  try {
    result = call();
  } catch (error) {
    quietly(true, error);
    throw error;
  }
  if (!(result instanceof Promise)) {
    quietly(false, result);
    return result;
  }
  return result.then(
    (value: unknown) => {
      quietly(false, value);
      return value;
    },
    (error: unknown) => {
      quietly(true, error);
      throw error;
    },
  ) as T;
}

/** `original.apply(self, args)`, typed loosely: wrappers pass whatever they were given. */
export function callOriginal(original: AnyFunction, self: unknown, args: ArrayLike<unknown>): unknown {
  return (original as (...a: unknown[]) => unknown).apply(self, args as unknown[]);
}
