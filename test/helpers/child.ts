// One run of a script in a fresh Node process, observed the way a user would see their app:
// its exit code or signal, whether it exited at all, and a JSON report it printed. A crash or an
// unhandled rejection in the child is its exit status, not an exception in the test.
import { spawn } from 'node:child_process';
import { ROOT } from './processes.js';

/** The line prefix a child prints its JSON report after. */
export const REPORT_PREFIX = '@@report ';

export interface ChildRun {
  /** Exit code, or null when a signal ended it (ours included, when it hung). */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The child did not exit on its own within the allowed time and was killed. */
  hung: boolean;
  /** From start to exit. */
  durationMs: number;
  /** From its report to its exit; undefined without a report. */
  exitAfterReportMs: number | undefined;
  /** The last report the child printed, parsed; undefined if it printed none. */
  report: unknown;
  stdout: string;
  stderr: string;
}

export interface ChildOptions {
  /** Arguments to the script. */
  args?: string[];
  /** Node options placed before the script (`--expose-gc`). */
  nodeArgs?: string[];
  /** Added to the environment (OTEL_* and QUEUE_OTEL_* of the test runner are not passed on). */
  env?: Record<string, string>;
  /** The whole run may take this long before the child is killed. Default 120 s. */
  timeoutMs?: number;
  /** After it printed its report, the child must exit within this long. Default 30 s. */
  exitGraceMs?: number;
}

/** Runs `node <nodeArgs> <script> <args>` in the repository root and resolves when it ends. */
export function runChild(script: string, options: ChildOptions = {}): Promise<ChildRun> {
  const { args = [], nodeArgs = [], env = {}, timeoutMs = 120_000, exitGraceMs = 30_000 } = options;
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(OTEL_|QUEUE_OTEL_|npm_)/.test(k)) base[k] = v;
  const child = spawn(process.execPath, [...nodeArgs, script, ...args], {
    cwd: ROOT,
    env: { ...base, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let hung = false;
  let grace: NodeJS.Timeout | undefined;
  const started = performance.now();
  let reportedAt: number | undefined;
  const kill = () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    hung = true;
    child.kill('SIGKILL');
  };
  const overall = setTimeout(kill, timeoutMs);
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    if (grace === undefined && stdout.includes(REPORT_PREFIX)) {
      reportedAt = performance.now();
      grace = setTimeout(kill, exitGraceMs);
    }
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(overall);
      clearTimeout(grace);
      const ended = performance.now();
      resolve({
        code,
        signal,
        hung,
        durationMs: Math.round(ended - started),
        exitAfterReportMs: reportedAt === undefined ? undefined : Math.round(ended - reportedAt),
        report: lastReport(stdout),
        stdout,
        stderr,
      });
    });
  });
}

function lastReport(stdout: string): unknown {
  const lines = stdout.split('\n').filter((l) => l.startsWith(REPORT_PREFIX));
  const last = lines.at(-1);
  if (last === undefined) return undefined;
  try {
    return JSON.parse(last.slice(REPORT_PREFIX.length));
  } catch {
    return { unparsable: last.slice(0, 200) };
  }
}

/** Runs at most `n` of the functions given to it at a time. */
export function limiter(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let running = 0;
  const queue: Array<() => void> = [];
  const next = () => {
    if (running >= n) return;
    const start = queue.shift();
    if (start === undefined) return;
    running++;
    start();
  };
  return <T>(fn: () => Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      queue.push(() => {
        fn().then(resolve, reject).finally(() => {
          running--;
          next();
        });
      });
      next();
    });
}

/** The tail of a run's output, for a failure message. */
export function describeRun(run: ChildRun, lines = 25): string {
  const tail = (s: string) => s.split('\n').slice(-lines).join('\n');
  const cpu = (run.report as { cpuMs?: unknown } | undefined)?.cpuMs;
  const timing = `ran ${run.durationMs} ms${typeof cpu === 'number' ? ` (${cpu} ms CPU)` : ''}${run.exitAfterReportMs === undefined ? ', no report' : `, exited ${run.exitAfterReportMs} ms after its report`}`;
  return `exit ${run.code ?? run.signal}${run.hung ? ' (hung, killed)' : ''}; ${timing}\n--- stdout (tail)\n${tail(run.stdout.replace(/^@@report .*$/gm, '@@report …'))}\n--- stderr (tail)\n${tail(run.stderr)}`;
}
