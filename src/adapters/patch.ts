/** A function of any shape; wrappers pass arguments through untouched. */
export type AnyFunction = (...args: never[]) => unknown;

/** One method an adapter wraps: `target[method] = wrap(original)`, undone by restoring it. */
export interface MethodPatch {
  target: object;
  method: string;
  wrap: (original: AnyFunction) => AnyFunction;
}

/**
 * Calls `call` and runs `settled` once the promise it returns settles (with the error when it
 * rejects), or at once when it throws: its value and its error pass through untouched.
 */
export function whenSettled<T>(call: () => Promise<T>, settled: (error?: unknown) => void): Promise<T> {
  let promise: Promise<T>;
  try {
    promise = call();
  } catch (error) {
    settled(error);
    throw error;
  }
  return promise.then(
    (value) => {
      settled();
      return value;
    },
    (error: unknown) => {
      settled(error);
      throw error;
    },
  );
}
