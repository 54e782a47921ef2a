import { randomUUID } from 'node:crypto';

/** Local Redis (override with REDIS_URL). Workers need maxRetriesPerRequest: null. */
export function connection() {
  const url = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  return { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null };
}

/** A queue name no other test, or another run of this one, uses. */
export function queueName(label: string): string {
  return `qo-test-${label}-${randomUUID().slice(0, 8)}`;
}

/** Resolves when `predicate` is true, polling; rejects after `timeoutMs`. */
export async function until(predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
