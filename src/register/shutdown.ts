import { diag } from '@opentelemetry/api';

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
 * Each flush or shutdown holds the exit up for at most `timeoutMs` (QUEUE_OTEL_SHUTDOWN_TIMEOUT,
 * 1,500 ms by default): an exporter whose endpoint does not answer retries for up to its own
 * timeout (10 s), and a stop must not wait for it; what is not exported by then is lost.
 * Returns the function that shuts down once (later calls get the same promise).
 */
export function installShutdown(shutdownSdk: () => Promise<void>, flush: () => Promise<void>, timeoutMs: number): () => Promise<void> {
  let done: Promise<void> | undefined;
  const shutdown = () =>
    (done ??= bounded(shutdownSdk(), 'shutdown', timeoutMs).catch((error: unknown) => diag.error('queue-otel: shutdown failed', error)));

  const onSigterm = () => {
    if (process.listenerCount('SIGTERM') > 1) {
      void bounded(flush(), 'flush', timeoutMs).catch((error: unknown) => diag.error('queue-otel: flush failed', error));
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

function bounded(work: Promise<void>, what: string, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      diag.warn(
        `queue-otel: the telemetry ${what} did not finish within ${timeoutMs} ms (QUEUE_OTEL_SHUTDOWN_TIMEOUT); ` +
          'what was not exported by then is lost',
      );
      resolve();
    }, timeoutMs);
    timer.unref();
  });
  return Promise.race([work, limit]).finally(() => clearTimeout(timer));
}
