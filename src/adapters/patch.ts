/** A function of any shape; wrappers pass arguments through untouched. */
export type AnyFunction = (...args: never[]) => unknown;

/** One method an adapter wraps: `target[method] = wrap(original)`, undone by restoring it. */
export interface MethodPatch {
  target: object;
  method: string;
  wrap: (original: AnyFunction) => AnyFunction;
}
