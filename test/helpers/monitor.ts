// Redis commands seen under MONITOR, for the "no extra command per job" checks.
import { Redis } from 'ioredis';
import { connection } from './redis.js';

/** Redis commands (other than blocking waits) that name `marker` in a key while `run` runs. */
export async function commandsUnder(marker: string, run: () => Promise<void>): Promise<Map<string, number>> {
  const client = new Redis(connection());
  const monitor = await client.monitor();
  const counts = new Map<string, number>();
  monitor.on('monitor', (_time: string, args: string[]) => {
    if (!args.some((a) => typeof a === 'string' && a.includes(marker))) return;
    const command = String(args[0]).toUpperCase();
    if (command.startsWith('B')) return; // blocking waits depend on timing, not on jobs
    counts.set(command, (counts.get(command) ?? 0) + 1);
  });
  try {
    await run();
    await new Promise((r) => setTimeout(r, 200));
  } finally {
    monitor.disconnect();
    client.disconnect();
  }
  return counts;
}
