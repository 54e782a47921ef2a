import type { DiagLogger } from '@opentelemetry/api';

/** How often one message is repeated at most while its fault goes on. */
const REPEAT_MS = 60_000;

/**
 * queue-otel's own faults and warnings, through OpenTelemetry's `diag`, never thrown. A fault that
 * recurs for every job (an exporter that throws, a store that is gone) is logged once, then at
 * most once a minute with how often it happened since; a warning keyed by what it is about (a
 * budget reached, a bad option) is logged once for the life of the process.
 */
export class Reporter {
  private readonly errors = new Map<string, { at: number; since: number }>();
  private readonly warned = new Set<string>();

  constructor(readonly diag: DiagLogger) {}

  /** Something queue-otel could not do; the job went on without it. */
  error(message: string, error?: unknown): void {
    const now = Date.now();
    const seen = this.errors.get(message);
    if (seen !== undefined) {
      seen.since++;
      if (now - seen.at < REPEAT_MS) return;
      const repeated = seen.since;
      seen.at = now;
      seen.since = 0;
      this.log('error', `${message} (${repeated} times in the last minute)`, error);
      return;
    }
    if (this.errors.size > 1000) this.errors.clear(); // messages are few; never grow without bound
    this.errors.set(message, { at: now, since: 0 });
    this.log('error', message, error);
  }

  /** A warning about `key` (a budget, an option), logged the first time only. */
  warnOnce(key: string, message: string, error?: unknown): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.log('warn', message, error);
  }

  private log(level: 'error' | 'warn', message: string, error: unknown): void {
    try {
      if (error === undefined) this.diag[level](message);
      else this.diag[level](message, error);
    } catch {
      // a logger that throws must not reach the job either
    }
  }
}
