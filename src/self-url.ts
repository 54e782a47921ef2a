// The URL of this module, to find files shipped beside it (dashboard assets, the ESM loader hook
// of @opentelemetry/instrumentation as queue-otel's own dependency resolves it).
// `import.meta` exists only in ES modules: scripts/build.mjs replaces the CommonJS output of this
// file with the `__filename` equivalent, so the directive below only silences the CommonJS compile.
// @ts-ignore TS1343 in the CommonJS build
export const selfUrl: string = import.meta.url;
