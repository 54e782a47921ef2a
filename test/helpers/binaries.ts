import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** The path of `command` on PATH (or the first existing of `candidates`), if any. */
export function findBinary(command: string, candidates: string[] = []): string | undefined {
  for (const c of candidates) if (existsSync(c)) return c;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, command))) return join(dir, command);
  }
  return undefined;
}

/**
 * For tests that need a system binary (chromium, prometheus): in CI (CI=true) a missing binary is a
 * failure, since .ci/run installs it; elsewhere the test is skipped, and says so loudly.
 */
export function requireBinary(what: string, path: string | undefined, install: string): { skip: boolean } {
  if (path !== undefined) return { skip: false };
  if (process.env.CI === 'true') {
    throw new Error(`${what} is missing and CI=true: .ci/run should have installed it (${install})`);
  }
  const line = '!'.repeat(100);
  console.warn(`\n${line}\nSKIPPING the ${what} tests: ${what} not found. Install it with: ${install}\n${line}\n`);
  return { skip: true };
}
