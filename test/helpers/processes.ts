// Child processes started as a user starts their app (`node --require/--import queue-otel/register`),
// and a small OTLP/HTTP JSON receiver to see what they export.
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createNetServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

export interface Child {
  process: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the first stdout/stderr line matching `pattern`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts `node <nodeArgs> <script>` in the repository root (so `queue-otel/register` resolves to
 * this checkout), with this Node.js unless `node` names another binary.
 */
export function startNode(nodeArgs: string[], script: string, env: Record<string, string | undefined>, node = process.execPath): Child {
  const base: Record<string, string | undefined> = {};
  // No OTEL_* / QUEUE_OTEL_* from the test runner's own environment.
  for (const [k, v] of Object.entries(process.env)) if (!/^(OTEL_|QUEUE_OTEL_|npm_)/.test(k)) base[k] = v;
  const child = spawn(node, [...nodeArgs, script], {
    cwd: ROOT,
    env: { ...base, OTEL_LOGS_EXPORTER: 'none', ...env } as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters: Array<{ pattern: RegExp; resolve: (m: RegExpMatchArray) => void }> = [];
  const check = () => {
    for (const w of [...waiters]) {
      const m = (out + '\n' + err).match(w.pattern);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  child.stdout!.on('data', (d) => ((out += d), check()));
  child.stderr!.on('data', (d) => ((err += d), check()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal })),
  );
  return {
    process: child,
    stdout: () => out,
    stderr: () => err,
    exited,
    kill: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
    waitFor(pattern, timeoutMs = 20_000) {
      return new Promise((resolveWait, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out waiting for ${pattern} in the output of ${script}:\n--- stdout\n${out}\n--- stderr\n${err}`)),
          timeoutMs,
        );
        const entry = {
          pattern,
          resolve: (m: RegExpMatchArray) => {
            clearTimeout(timer);
            resolveWait(m);
          },
        };
        waiters.push(entry);
        void exited.then(() => setTimeout(() => {
          if (waiters.includes(entry)) {
            clearTimeout(timer);
            reject(new Error(`${script} exited before printing ${pattern}:\n--- stdout\n${out}\n--- stderr\n${err}`));
          }
        }, 50));
        check();
      });
    },
  };
}

/** An OTLP/HTTP receiver for the JSON protocol: keeps every request body by signal. */
export interface OtlpReceiver {
  url: string;
  traces: OtlpTraces[];
  metrics: OtlpMetrics[];
  close(): Promise<void>;
  /** Every span of every request. */
  spans(): Array<OtlpSpan & { scope: string; resource: Record<string, unknown> }>;
}

export interface OtlpAttribute {
  key: string;
  value: { stringValue?: string; intValue?: string | number; doubleValue?: number; boolValue?: boolean };
}
export interface OtlpSpan {
  name: string;
  kind: number;
  spanId: string;
  parentSpanId?: string;
  status?: { code?: number };
  attributes?: OtlpAttribute[];
}
export interface OtlpTraces {
  resourceSpans: Array<{ resource: { attributes: OtlpAttribute[] }; scopeSpans: Array<{ scope: { name: string }; spans: OtlpSpan[] }> }>;
}
export interface OtlpMetrics {
  resourceMetrics: Array<{
    resource: { attributes: OtlpAttribute[] };
    scopeMetrics: Array<{ scope: { name: string }; metrics: Array<{ name: string; [kind: string]: unknown }> }>;
  }>;
}

export function attributes(list: OtlpAttribute[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const a of list ?? []) out[a.key] = a.value.stringValue ?? a.value.boolValue ?? a.value.doubleValue ?? (a.value.intValue !== undefined ? Number(a.value.intValue) : undefined);
  return out;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const traces: OtlpTraces[] = [];
  const metrics: OtlpMetrics[] = [];
  const server: Server = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      try {
        if (req.url === '/v1/traces') traces.push(JSON.parse(body) as OtlpTraces);
        else if (req.url === '/v1/metrics') metrics.push(JSON.parse(body) as OtlpMetrics);
      } catch {
        // not JSON (another protocol): ignored, the test will see nothing arrived
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    traces,
    metrics,
    spans: () =>
      traces.flatMap((t) =>
        t.resourceSpans.flatMap((rs) =>
          rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => ({ ...s, scope: ss.scope.name, resource: attributes(rs.resource.attributes) }))),
        ),
      ),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
