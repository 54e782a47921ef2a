/**
 * The diag logger register sets when OTEL_LOG_LEVEL is not set: warnings and errors a user can act
 * on, one line each (an error without its stack), and nothing else.
 * - An exporter whose endpoint does not answer (no collector running yet, the usual first run)
 *   gives one line naming the endpoint and the variables that change or silence it, at most once
 *   a minute per endpoint, instead of the SDK's JSON-encoded stack at every failed export.
 * - "Accessing resource attributes before async attributes settled" is dropped: a scrape or an
 *   export before the host detector's promise settled gets the resource without those attributes,
 *   and the next one gets them; there is nothing to do about it. So is a cloud resource
 *   detector's "dropping invalid resource attribute value", and NodeSDK's "SDK will not be
 *   initialized" for OTEL_TRACES_EXPORTER=none, which only turns traces off (see NOISE).
 * - Everything else passes to the console unchanged.
 * With OTEL_LOG_LEVEL set, NodeSDK's own console logger at that level is used instead.
 */
import { DiagConsoleLogger, type DiagLogger } from '@opentelemetry/api';
import { type OtlpEndpoint, hostPort, otlpEndpoints } from './otlp-endpoints.js';

type Env = Readonly<Record<string, string | undefined>>;

/** Errors of a connection that could not be made or kept, as Node and the exporters word them. */
const UNREACHABLE = /\b(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH)\b(?:[^"\\\s]*\s+([^\s"\\]+))?|\bRequest timed out\b/;
/**
 * SDK messages about the resource that nobody can act on: a scrape or export before the host
 * detector settled (the next one has the attributes), and a cloud detector's value of the wrong
 * type where the process does not run on that cloud (auto-instrumentations-node's Azure one).
 */
const NOISE = [
  /^Accessing resource attributes before async attributes settled$/,
  /^dropping invalid resource attribute value for key "[a-z.]+"$/,
  // NodeSDK's words when traces are turned off on purpose (as the unreachable-endpoint line
  // suggests): wrong here, since the metrics and the dashboard still start.
  /^OTEL_TRACES_EXPORTER contains "none"\. SDK will not be initialized\.$/,
];
/** One line per unreachable endpoint at most this often. */
export const UNREACHABLE_REPEAT_MS = 60_000;

export interface RegisterLoggerOptions {
  /** Where the lines about unreachable endpoints go. Default: stderr. */
  write?: (line: string) => void;
  /** Where everything else goes. Default: the console, as OpenTelemetry's DiagConsoleLogger. */
  console?: DiagLogger;
  now?: () => number;
}

export class RegisterLogger implements DiagLogger {
  private readonly endpoints: OtlpEndpoint[];
  private readonly write: (line: string) => void;
  private readonly console: DiagLogger;
  private readonly now: () => number;
  private readonly lastSaid = new Map<string, number>();

  constructor(env: Env, options: RegisterLoggerOptions = {}) {
    this.endpoints = otlpEndpoints(env);
    this.write = options.write ?? ((line) => void process.stderr.write(`${line}\n`));
    this.console = options.console ?? new DiagConsoleLogger();
    this.now = options.now ?? Date.now;
  }

  error(message: string, ...args: unknown[]): void {
    if (this.quiet(message) || this.unreachable(message)) return;
    this.console.error(message, ...args.map(oneLine));
  }

  warn(message: string, ...args: unknown[]): void {
    if (this.quiet(message) || this.unreachable(message)) return;
    this.console.warn(message, ...args.map(oneLine));
  }

  info(message: string, ...args: unknown[]): void {
    this.console.info(message, ...args);
  }

  debug(message: string, ...args: unknown[]): void {
    this.console.debug(message, ...args);
  }

  verbose(message: string, ...args: unknown[]): void {
    this.console.verbose(message, ...args);
  }

  private quiet(message: unknown): boolean {
    return typeof message === 'string' && NOISE.some((pattern) => pattern.test(message));
  }

  /**
   * Whether `message` is an export that failed to reach its endpoint, and if so says so (once a
   * minute per endpoint). Only the SDK's JSON-encoded exceptions (its global error handler, where
   * exporters' failures end up) are considered: queue-otel's own messages about Redis or
   * PostgreSQL connections start with "queue-otel" and pass unchanged.
   */
  private unreachable(message: unknown): boolean {
    if (typeof message !== 'string' || !message.startsWith('{')) return false;
    const match = UNREACHABLE.exec(message);
    if (!match) return false;
    const code = match[1] ?? 'timed out';
    const address = match[2];
    const target = address ? splitAddress(address) : undefined;
    const endpoints = this.matching(target);
    const key = endpoints.length > 0 ? endpoints.map((e) => e.url).join(' ') : (address ?? code);
    const now = this.now();
    const last = this.lastSaid.get(key);
    if (last !== undefined && now - last < UNREACHABLE_REPEAT_MS) return true;
    this.lastSaid.set(key, now);
    this.write(describe(endpoints, code, address));
    return true;
  }

  /** The configured OTLP endpoints at `target` (all of them when the error names no address). */
  private matching(target: { host: string; port: string | undefined } | undefined): OtlpEndpoint[] {
    if (target === undefined) return this.endpoints;
    return this.endpoints.filter((e) => {
      const at = hostPort(e.url);
      if (at === undefined || (target.port !== undefined && at.port !== target.port)) return false;
      return at.host === target.host || (loopback(at.host) && loopback(target.host));
    });
  }
}

/** `127.0.0.1:4318`, `::1:4318` (Node's wording), or a bare host name (ENOTFOUND names no port). */
function splitAddress(address: string): { host: string; port: string | undefined } {
  const m = /^(.*):(\d+)$/.exec(address);
  return m ? { host: m[1]!.replace(/^\[|\]$/g, ''), port: m[2]! } : { host: address, port: undefined };
}

/** An error as `Name: message`, without its stack (OTEL_LOG_LEVEL set gives the SDK's full output). */
function oneLine(arg: unknown): unknown {
  if (!(arg instanceof Error)) return arg;
  try {
    return `${arg.name}: ${arg.message}`.split('\n')[0];
  } catch {
    return 'Error';
  }
}

function loopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** The one line: what is lost, where it was going, why, and the variables that change it. */
function describe(endpoints: OtlpEndpoint[], code: string, address: string | undefined): string {
  const why = code === 'timed out' ? 'no answer within the export timeout' : address ? `${code} ${address}` : code;
  const repeat = '(at most once a minute)';
  if (endpoints.length === 0) {
    return `queue-otel: an OpenTelemetry exporter cannot reach ${address ?? 'its endpoint'} (${why}); what it sends is dropped ${repeat}`;
  }
  const urls = [...new Set(endpoints.map((e) => e.url))];
  const origins = [...new Set(urls.map(origin))];
  const where = urls.length > 1 && origins.length === 1 ? origins : urls;
  const signals = endpoints.map((e) => e.signal);
  const off = endpoints.map((e) => `${e.exporterVariable}=none`);
  return (
    `queue-otel: nothing answers at ${list(where)} (${why}): ${list(signals)} are not exported. ` +
    `Start an OpenTelemetry Collector there, set OTEL_EXPORTER_OTLP_ENDPOINT to yours, or set ${list(off)} ${repeat}`
  );
}

function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}

function list(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`;
}
