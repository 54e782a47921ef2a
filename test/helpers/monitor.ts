// Redis commands seen under MONITOR, for the "no extra command per job" checks.
import { Redis } from 'ioredis';
import { connection } from './redis.js';

/**
 * Redis commands (other than blocking waits) that name `marker` in a key while `run` runs. MONITOR
 * shows every client of the shared Redis; ioredis's monitor parser can fail on another client's
 * binary arguments, so a run whose monitor failed is done again (up to three times).
 */
export async function commandsUnder(marker: string, run: (attempt: number) => Promise<void>): Promise<Map<string, number>> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const client = new Redis(connection());
    const monitor = await client.monitor();
    const counts = new Map<string, number>();
    let failed: unknown;
    monitor.on('error', (error: unknown) => (failed ??= error));
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (!args.some((a) => typeof a === 'string' && a.includes(marker))) return;
      const command = String(args[0]).toUpperCase();
      if (command.startsWith('B')) return; // blocking waits depend on timing, not on jobs
      counts.set(command, (counts.get(command) ?? 0) + 1);
    });
    try {
      await run(attempt);
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      monitor.disconnect();
      client.disconnect();
    }
    if (failed === undefined) return counts;
    lastError = failed;
  }
  throw lastError;
}
