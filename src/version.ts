/** Package name and version, reported as the instrumentation scope (a test keeps them in sync). */
export const PACKAGE_NAME = 'queue-otel';
export const PACKAGE_VERSION = '0.1.0';
