/**
 * Zero-code start: `node --require queue-otel/register app.js` or
 * `node --import queue-otel/register app.mjs` starts the OpenTelemetry Node SDK with every
 * queue-otel instrumentation, configured by the standard `OTEL_*` environment variables and
 * queue-otel's `QUEUE_OTEL_*` ones (see README, "Zero-code start"). Importing it from code does
 * the same, once per process.
 */
import { registerState, startFromEnvironment } from './register/start.js';

startFromEnvironment();

/**
 * Shuts the SDK that register started down, flushing spans and metrics (once; later calls wait
 * for the same). For an application that ends itself with `process.exit()`:
 * `await shutdown(); process.exit(0);`. Does nothing when register joined another SDK.
 */
export function shutdown(): Promise<void> {
  return registerState()?.shutdown() ?? Promise.resolve();
}
