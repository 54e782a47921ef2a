/**
 * Calls `before` and `after` around every callback the event loop runs (promise reactions, timers,
 * I/O callbacks), with the callback's AsyncLocalStorage stores active, as cheaply as this Node can.
 *
 * Two ways to do it:
 * - Node's async hook (`createHook` with `before`/`after`): works on every supported Node, but
 *   with promises tracked, Node gives every promise of the process an async id and runs its hook
 *   machinery for every reaction.
 * - V8's promise hooks (`v8.promiseHooks`) for promise reactions, plus an async hook that leaves
 *   promises alone (`trackPromises: false`, Node 24.14+) for the other callbacks: about half
 *   the instructions per `await` (README, Cost). It needs the store to be visible inside V8's
 *   promise hooks, which holds where AsyncLocalStorage is built on AsyncContextFrame (Node 24's
 *   default) and not where it is built on async hooks (Node 22's default).
 *
 * Which one works is not a version check: a probe runs once, asynchronously, the first time the
 * hooks are enabled; until it answers, the first way runs, and then the second takes over if the
 * probe showed it sees every callback exactly once with its store.
 */
import { AsyncLocalStorage, type AsyncHook, type HookCallbacks, createHook } from 'node:async_hooks';
import { promiseHooks } from 'node:v8';

type Callback = () => void;

/** `createHook` options with the Node 24.14 `trackPromises` flag, which @types/node may lack. */
type HookOptions = HookCallbacks & { trackPromises?: boolean };

export class LoopHooks {
  private readonly everyCallback: AsyncHook;
  /** Set once the probe showed that promise hooks plus an untracked async hook work here. */
  private split: AsyncHook | undefined;
  private stopPromiseHooks: Callback | undefined;
  private probing: Promise<void> | undefined;
  private on = false;

  constructor(
    private readonly before: Callback,
    private readonly after: Callback,
  ) {
    this.everyCallback = createHook({ before, after });
  }

  /** True when the cheaper way (V8 promise hooks) is the one running. */
  get usesPromiseHooks(): boolean {
    return this.on && this.stopPromiseHooks !== undefined;
  }

  enable(): void {
    if (this.on) return;
    this.on = true;
    if (this.split !== undefined) {
      this.enableSplit(this.split);
      return;
    }
    this.everyCallback.enable();
    this.probing ??= splitHooksWork().then(
      (works) => {
        if (!works) return;
        this.split = createHook({ before: this.before, after: this.after, trackPromises: false } as HookOptions);
        if (!this.on) return;
        // Runs in a promise reaction of no job: no slice is open, so the handover loses nothing.
        this.everyCallback.disable();
        this.enableSplit(this.split);
      },
      () => undefined, // the probe failed: keep the async hook
    );
  }

  disable(): void {
    if (!this.on) return;
    this.on = false;
    this.everyCallback.disable();
    this.split?.disable();
    this.stopPromiseHooks?.();
    this.stopPromiseHooks = undefined;
  }

  /** Resolves once the probe has answered (for tests). */
  settled(): Promise<void> {
    return this.probing ?? Promise.resolve();
  }

  private enableSplit(split: AsyncHook): void {
    split.enable();
    const stop = promiseHooks.createHook({ before: this.before, after: this.after });
    this.stopPromiseHooks = () => void stop();
  }
}

/**
 * Resolves true when, on this Node, V8's promise hooks see the AsyncLocalStorage store of the
 * reaction they run and an async hook with `trackPromises: false` sees the other callbacks (with
 * their store) and no promise reaction, so that together they see each callback once.
 */
async function splitHooksWork(): Promise<boolean> {
  if (typeof promiseHooks?.createHook !== 'function') return false;
  const probe = new AsyncLocalStorage<true>();
  let reactions = 0;
  let callbacks = 0;
  const stopPromiseHook = promiseHooks.onBefore(() => {
    if (probe.getStore() === true) reactions++;
  });
  const hook = createHook({
    before() {
      if (probe.getStore() === true) callbacks++;
    },
    trackPromises: false,
  } as HookOptions).enable();
  try {
    await probe.run(true, async () => {
      await Promise.resolve(); // a promise reaction
      await new Promise<void>((resolve) => setImmediate(resolve)); // an immediate, then a reaction
    });
    return reactions >= 2 && callbacks === 1;
  } finally {
    stopPromiseHook();
    hook.disable();
  }
}
