/**
 * The oldest Node.js queue-otel runs on (package.json `engines`, which a test keeps equal to this),
 * and the one line register prints on an older one instead of starting.
 */
export const MIN_NODE_VERSION = '22.15.0';

/** Whether `version` (`process.versions.node`, e.g. `20.20.2`) is older than {@link MIN_NODE_VERSION}. */
export function nodeTooOld(version: string = process.versions.node): boolean {
  const have = version.split('.').map(Number);
  const need = MIN_NODE_VERSION.split('.').map(Number);
  for (let i = 0; i < need.length; i++) {
    const h = have[i] ?? 0;
    const n = need[i] ?? 0;
    if (Number.isNaN(h)) return false; // not a version we can read: do not stand in the way
    if (h !== n) return h < n;
  }
  return false;
}

/** What register says on an older Node.js, where it does not start (the application runs untouched). */
export function nodeTooOldMessage(version: string = process.versions.node): string {
  return (
    `queue-otel: needs Node.js ${MIN_NODE_VERSION} or later (22.15+ or 24), this is ${version}; ` +
    'OpenTelemetry was not started and the application runs without it'
  );
}
