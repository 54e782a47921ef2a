// Queue state on a Redis Cluster with a key prefix per queue (BullMQ's advice for clusters:
// `{emails}`, `{videos}`): exact counts per queue, whether the process has the queue open or lists
// it in the `queues` option; a queue listed by name that is under none of the prefixes in use is
// reported as nothing (with a warning), never as an empty queue; the lease key lives in the queue's
// hash slot, outside its key space.
import { type DiagLogger, DiagLogLevel, diag } from '@opentelemetry/api';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findBinary, requireBinary } from './helpers/binaries.js';
import { type PrivateCluster, privateCluster } from './helpers/cluster.js';
import { type Otel, points, setupOtel } from './helpers/otel.js';
import { queueName, sleep, until } from './helpers/redis.js';

const { skip } = requireBinary('redis-cli', findBinary('redis-cli'), 'apt-get install redis-tools');
const warnings: string[] = [];
const logger: DiagLogger = {
  error: () => {},
  warn: (...args: unknown[]) => void warnings.push(args.map(String).join(' ')),
  info: () => {},
  debug: () => {},
  verbose: () => {},
};
diag.setLogger(logger, DiagLogLevel.WARN);

const emails = queueName('emails');
const videos = queueName('videos');
const thumbnails = queueName('thumbnails'); // listed by name; lives under the prefix of videos
const audio = queueName('audio'); // listed with its prefix, not open in this process
const podcasts = queueName('podcasts'); // listed by name; under a prefix this process does not use

let cluster: PrivateCluster;
let otel: Otel;
let connection: Cluster;
const closers: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  if (skip) return;
  cluster = await privateCluster(3);
  otel = setupOtel({ queueStateInterval: 300, queueStateTimeout: 1_000, queues: [{ name: audio, prefix: '{audio}' }, podcasts, thumbnails] });
  connection = new Cluster(cluster.nodes, { redisOptions: { maxRetriesPerRequest: null } });
}, 60_000);
afterAll(async () => {
  if (skip) return;
  for (const close of closers.reverse()) await close().catch(() => {});
  connection.disconnect();
  await otel.shutdown();
  await cluster.stop();
});

async function counts(name: string) {
  const m = await otel.collect();
  return Object.fromEntries(points(m.get('queue.job.count'), { 'messaging.destination.name': name }).map((p) => [p.attributes['queue.job.state'], p.value]));
}

async function addTo(name: string, prefix: string, n: number, keepOpen: boolean): Promise<void> {
  const queue = new otel.bullmq.Queue(name, { connection, prefix });
  for (let i = 0; i < n; i++) await queue.add('job', { i });
  if (keepOpen) closers.push(() => queue.close());
  else await queue.close();
}

describe.skipIf(skip)('Redis Cluster, a prefix per queue', () => {
  it('exact counts per queue, open here or listed; a queue not found is not reported as 0', async () => {
    // Queues added to and closed before the ones this process keeps open: listed ones are read
    // through the connection and prefixes of open queues.
    await addTo(audio, '{audio}', 4, false);
    await addTo(podcasts, '{podcasts}', 6, false);
    await addTo(thumbnails, '{videos}', 2, false);
    await addTo(emails, '{emails}', 3, true);
    await addTo(videos, '{videos}', 5, true);

    await until(
      async () => (await counts(emails)).waiting === 3 && (await counts(videos)).waiting === 5,
      10_000,
      'the open queues',
    );
    await until(async () => (await counts(audio)).waiting === 4, 10_000, 'the queue listed with its prefix');
    await until(async () => (await counts(thumbnails)).waiting === 2, 10_000, 'the queue listed by name, found under {videos}');
    for (const [name, waiting] of [[emails, 3], [videos, 5], [audio, 4], [thumbnails, 2]] as const) {
      expect(await counts(name), name).toMatchObject({ waiting, active: 0, delayed: 0, failed: 0, completed: 0 });
    }
    // Listed by name, under {podcasts}, which no open queue uses: nothing reported, and a warning
    // naming the fix.
    await sleep(1_000);
    expect(await counts(podcasts)).toEqual({});
    expect(warnings.some((w) => w.includes(`no queue "${podcasts}" was found`) && w.includes('prefix'))).toBe(true);
  }, 60_000);

  it("the lease key is in the queue's hash slot, outside its key space", async () => {
    const node = connection.nodes('master')[0]!;
    for (const [name, prefix] of [[emails, '{emails}'], [videos, '{videos}']] as const) {
      const lease = `queue-otel:${prefix}:${name}:state-lease`;
      expect(await node.cluster('KEYSLOT', lease)).toBe(await node.cluster('KEYSLOT', `${prefix}:${name}:wait`));
      expect(lease.startsWith(`${prefix}:${name}:`)).toBe(false);
      await until(async () => (await connection.get(lease)) !== null, 5_000, `lease ${lease}`);
    }
  });
});
