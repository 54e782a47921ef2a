// A PgBouncer of this test's own in front of the local PostgreSQL, in transaction pooling mode
// (each transaction may run on another server connection), on a free port.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './processes.js';
import { until } from './redis.js';

export interface PrivatePgBouncer {
  url: string;
  stop(): Promise<void>;
}

export async function privatePgBouncer(binary: string): Promise<PrivatePgBouncer> {
  const dir = mkdtempSync(join(tmpdir(), 'qo-pgbouncer-'));
  chmodSync(dir, 0o777); // PgBouncer writes its log and pid file here as nobody
  const port = await freePort();
  writeFileSync(join(dir, 'users.txt'), '"postgres" ""\n');
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      'test = host=127.0.0.1 port=5432 dbname=test user=postgres',
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(dir, 'users.txt')}`,
      'pool_mode = transaction',
      'default_pool_size = 4',
      // Hand out server connections in turn, as a busy pooler does, rather than the last one used.
      'server_round_robin = 1',
      'ignore_startup_parameters = extra_float_digits',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
    ].join('\n') + '\n',
  );
  // PgBouncer will not run as root; as root, it is told to switch to nobody.
  const args = process.getuid?.() === 0 ? ['-u', 'nobody', join(dir, 'pgbouncer.ini')] : [join(dir, 'pgbouncer.ini')];
  const server: ChildProcess = spawn(binary, args, { stdio: 'ignore' });
  const url = `postgres://postgres@127.0.0.1:${port}/test`;
  await until(
    async () => {
      const client = new pg.Client({ connectionString: url });
      client.on('error', () => {});
      try {
        await client.connect();
        await client.query('SELECT 1');
        return true;
      } catch {
        return false;
      } finally {
        await client.end().catch(() => {});
      }
    },
    10_000,
    'pgbouncer up',
  );
  return {
    url,
    async stop() {
      server.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
