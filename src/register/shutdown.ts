import { diag } from '@opentelemetry/api';

/** Longest a shutdown may hold up the exit: export timeouts are longer, a stuck one must not hang. */
const SHUTDOWN_TIMEOUT_MS = 5_000;

/**
 * Flushes telemetry when the process is asked to stop, then lets it stop as it would have without
 * queue-otel:
 * - SIGTERM and no handler of the application: shut the SDK down (flushing spans and metrics),
 *   then raise SIGTERM again with our listener removed, so the process ends by the signal as an
 *   uninstrumented one does (exit status 143 in a shell, `signal: SIGTERM` to a parent).
 * - SIGTERM with the application's own handler: the application decides when to exit; flush what
 *   is held now, and shut down when the event loop drains ('beforeExit'). An application that
 *   calls `process.exit()` itself can `await shutdown()` from `queue-otel/register` before it.
 * - The loop drains (the application closed everything): shut down on 'beforeExit'.
 * Returns the function that shuts down once (later calls get the same promise).
 */
export function installShutdown(shutdownSdk: () => Promise<void>, flush: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  const shutdown = () =>
    (done ??= bounded(shutdownSdk(), 'shutdown').catch((error: unknown) => diag.error('queue-otel: shutdown failed', error)));

  const onSigterm = () => {
    if (process.listenerCount('SIGTERM') > 1) {
      void bounded(flush(), 'flush').catch((error: unknown) => diag.error('queue-otel: flush failed', error));
      return;
    }
    void shutdown().finally(() => {
      process.removeListener('SIGTERM', onSigterm);
      process.kill(process.pid, 'SIGTERM');
    });
  };
  process.on('SIGTERM', onSigterm);
  process.once('beforeExit', () => void shutdown());
  return shutdown;
}

function bounded(work: Promise<void>, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      diag.warn(`queue-otel: ${what} did not finish within ${SHUTDOWN_TIMEOUT_MS} ms; going on without it`);
      resolve();
    }, SHUTDOWN_TIMEOUT_MS);
    timer.unref();
  });
  return Promise.race([work, limit]).finally(() => clearTimeout(timer));
}
