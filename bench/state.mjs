// Read time of queue-otel's queue-state reads against the size of the PostgreSQL job tables.
//
// Run: `npm run bench:state` (builds, then runs this file), or `node bench/state.mjs` after a build.
// Needs the local PostgreSQL (PG_URL, default postgres://postgres@127.0.0.1:5432/test). A few
// minutes at the default sizes (filling pg-boss's table, with its 17 indexes, is most of it).
//
// For pg-boss 12 and graphile-worker 0.18, each in a schema of its own made by the library itself
// (pg-boss start(), graphile-worker migrate()), the job table is filled to each size in turn with
// one INSERT ... SELECT generate_series per step (the rows the libraries would write, in their own
// columns), then VACUUM ANALYZE, then timed:
//
//   pg-boss (one queue, `bench`; 80% ready, 10% deferred, 5% failed, 5% completed):
//     queue-otel read    pgBossStateSource.read() with the lease, as a process reads every interval
//                        (median and p95 of SAMPLES reads, after 3 warm-up reads), and the shared
//                        buffers of its statement (EXPLAIN (ANALYZE, BUFFERS))
//     pg-boss cached     boss.getQueueStats('bench'): the counts its monitor keeps
//     pg-boss counted    boss.getQueueStats('bench', { force: true }) with its cache emptied first:
//                        the aggregate pg-boss's monitor runs every monitorIntervalSeconds
//     before             the statement queue-otel ran before this read was rewritten
//   graphile-worker (85% waiting, 10% delayed, 5% failed, 10 locked):
//     queue-otel read    graphileStateSource.read() with the lease, without and then with the
//                        opt-in indexes of docs/queue-state.md (created for the timing, dropped after)
//     graphile-worker    has no stats call of its own
//     before             the statement queue-otel ran before (one pass counting every state)
//
// Environment:
//   BENCH_STATE_SIZES    comma-separated job counts (default 10000,100000,1000000)
//   BENCH_STATE_SAMPLES  timed reads per size (default 30)
//   BENCH_STATE_PLANS    1: also print the EXPLAIN (ANALYZE, BUFFERS) plan of each read statement per size
//   PG_URL               the database
//
// The schemas are dropped at the end. Results are printed and merged into bench/last-run.json
// under the `state` key.

import { createRequire } from 'node:module';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const pg = require('pg');
const { PgBoss } = require('pg-boss');
const gw = require('graphile-worker');
const { pgBossStateSource, pgBossReadSql } = require('../dist/cjs/adapters/pg-boss-state.js');
const { graphileStateSource, graphileReadSql, graphileLargeSql, LOCKED_INDEX, FAILED_INDEX } = require('../dist/cjs/adapters/graphile-worker-state.js');

const URL_ = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const SIZES = (process.env.BENCH_STATE_SIZES ?? '10000,100000,1000000').split(',').map(Number).filter((n) => n > 0);
const SAMPLES = Number(process.env.BENCH_STATE_SAMPLES ?? 30);
const tag = Math.random().toString(36).slice(2, 8);
const BOSS_SCHEMA = `qo_bench_boss_${tag}`;
const GW_SCHEMA = `qo_bench_gw_${tag}`;
// The session's socket does not keep a process alive (by design); this one must stay until done.
const keepAlive = setInterval(() => {}, 60_000);

const admin = new pg.Client({ connectionString: URL_ });
await admin.connect();
const request = { owner: `bench-${tag}`, leaseMs: 20_000, timeoutMs: 10_000, intervalMs: 15_000, begin: async () => {} };
const results = { pgBoss: [], graphileWorker: [] };

async function timed(fn) {
  const started = performance.now();
  const value = await fn();
  return { ms: performance.now() - started, value };
}

async function samples(fn, n = SAMPLES, warmup = 3) {
  for (let i = 0; i < warmup; i++) await fn();
  const times = [];
  for (let i = 0; i < n; i++) times.push((await timed(fn)).ms);
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(times.length / 2)], p95: times[Math.min(times.length - 1, Math.ceil(times.length * 0.95) - 1)] };
}

const PLANS = process.env.BENCH_STATE_PLANS === '1';

/** Prints the plan of a statement (BENCH_STATE_PLANS=1). */
async function printPlan(title, sql) {
  if (!PLANS) return;
  const { rows } = await admin.query(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${sql}`);
  console.log(`\n--- ${title}\n${rows.map((r) => r['QUERY PLAN']).join('\n')}\n`);
}

/** Shared buffers (hit + read) and execution time of a statement, from EXPLAIN (ANALYZE, BUFFERS). */
async function explain(sql) {
  const { rows } = await admin.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql}`);
  const top = rows[0]['QUERY PLAN'][0];
  return { buffers: top.Plan['Shared Hit Blocks'] + top.Plan['Shared Read Blocks'], executionMs: top['Execution Time'], planningMs: top['Planning Time'] };
}

/** A package's version, from the package.json above its entry point (not every package exports it). */
function versionOf(name) {
  for (let dir = dirname(require.resolve(name)); dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8'));
      if (pkg.name === name) return pkg.version;
    }
  }
  return '?';
}

const fmt = (ms) => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1)).padStart(7);

// ---- pg-boss ------------------------------------------------------------------------------------

async function benchPgBoss() {
  const boss = new PgBoss({ connectionString: URL_, schema: BOSS_SCHEMA, supervise: false, schedule: false });
  boss.on('error', (e) => console.error('pg-boss error', e.message));
  await boss.start();
  await boss.createQueue('bench');
  const source = pgBossStateSource('bench', () => [{ db: boss.getDb(), schema: BOSS_SCHEMA }], false);
  const job = `${BOSS_SCHEMA}.job`;
  const before = `SELECT
    (SELECT floor(extract(epoch FROM min(j.start_after)) * 1000) FROM ${job} j
      WHERE j.name = 'bench' AND j.state IN ('created', 'retry') AND NOT j.blocked AND j.start_after <= now()) AS oldest_ready,
    (SELECT floor(extract(epoch FROM min(j.completed_on)) * 1000) FROM ${job} j
      WHERE j.name = 'bench' AND j.state = 'failed') AS oldest_failed`;
  let filled = 0;
  console.log(`\npg-boss ${versionOf('pg-boss')} (schema ${BOSS_SCHEMA}, queue "bench"; ms, median / p95 of ${SAMPLES})`);
  console.log('     jobs | queue-otel read     buffers | pg-boss cached | pg-boss counted | before (old read)');
  for (const size of SIZES) {
    const fill = await timed(() =>
      admin.query(`INSERT INTO ${job} (name, state, start_after, created_on, started_on, completed_on, data)
        SELECT 'bench',
          (CASE WHEN g % 20 < 18 THEN 'created' WHEN g % 20 = 18 THEN 'failed' ELSE 'completed' END)::${BOSS_SCHEMA}.job_state,
          CASE WHEN g % 20 IN (16, 17) THEN now() + g * interval '1 second' ELSE now() - g * interval '1 millisecond' END,
          now() - g * interval '1 millisecond',
          CASE WHEN g % 20 >= 18 THEN now() - g * interval '1 millisecond' END,
          CASE WHEN g % 20 >= 18 THEN now() - g * interval '1 millisecond' + interval '1 second' END,
          '{}'::jsonb
        FROM generate_series(${filled + 1}, ${size}) g`),
    );
    filled = size;
    await admin.query(`VACUUM ANALYZE ${BOSS_SCHEMA}.job_common`);
    // pg-boss's own count (its monitor's aggregate), which also fills the counts queue-otel reads.
    await admin.query(`UPDATE ${BOSS_SCHEMA}.queue SET monitor_on = NULL WHERE name = 'bench'`);
    const counted = await timed(() => boss.getQueueStats('bench', { force: true }));
    const countedTimes = [counted.ms];
    for (let i = 0; i < 4; i++) {
      await admin.query(`UPDATE ${BOSS_SCHEMA}.queue SET monitor_on = NULL WHERE name = 'bench'`);
      countedTimes.push((await timed(() => boss.getQueueStats('bench', { force: true }))).ms);
    }
    countedTimes.sort((a, b) => a - b);
    const cached = await samples(() => boss.getQueueStats('bench'));
    const read = await samples(() => source.read(request));
    const reading = await source.read(request);
    const plan = await explain(pgBossReadSql(BOSS_SCHEMA, "'bench'"));
    await printPlan(`pg-boss read, ${size} jobs`, pgBossReadSql(BOSS_SCHEMA, "'bench'"));
    const old = await samples(() => admin.query(before), 5, 1);
    const row = {
      jobs: size,
      fillMs: Math.round(fill.ms),
      read,
      readBuffers: plan.buffers,
      readExecutionMs: plan.executionMs,
      pgBossCached: cached,
      pgBossCountedMedianMs: countedTimes[2],
      before: old,
      reading,
      truth: (await admin.query(`SELECT (SELECT json_object_agg(state, n) FROM (SELECT state, count(*)::int AS n FROM ${job} WHERE name = 'bench' GROUP BY 1) c) AS counts,
          (SELECT floor(extract(epoch FROM min(start_after)) * 1000) FROM ${job} WHERE name = 'bench' AND state < 'active' AND start_after <= now()) AS oldest_ready,
          (SELECT floor(extract(epoch FROM min(completed_on)) * 1000) FROM ${job} WHERE name = 'bench' AND state = 'failed') AS oldest_failed`)).rows[0],
    };
    results.pgBoss.push(row);
    console.log(
      `${String(size).padStart(9)} | ${fmt(read.median)} / ${fmt(read.p95)} ${String(plan.buffers).padStart(7)} | ${fmt(cached.median)}        | ${fmt(countedTimes[2])}         | ${fmt(old.median)}`,
    );
  }
  await source.release(request.owner);
  await boss.stop({ graceful: false });
}

// ---- graphile-worker ----------------------------------------------------------------------------

async function benchGraphile() {
  const utils = await gw.makeWorkerUtils({ connectionString: URL_, schema: GW_SCHEMA });
  await utils.migrate();
  await utils.addJob('bench', {}); // makes the task row
  await admin.query(`DELETE FROM ${GW_SCHEMA}._private_jobs`);
  const source = graphileStateSource(() => utils.withPgClient, GW_SCHEMA);
  const table = `${GW_SCHEMA}._private_jobs`;
  const before = `SELECT count(*) FILTER (WHERE j.locked_at IS NULL AND j.attempts < j.max_attempts AND j.run_at <= now()) AS waiting,
      count(*) FILTER (WHERE j.locked_at IS NULL AND j.attempts < j.max_attempts AND j.run_at > now()) AS delayed,
      count(*) FILTER (WHERE j.locked_at IS NOT NULL) AS active,
      count(*) FILTER (WHERE j.locked_at IS NULL AND j.attempts >= j.max_attempts) AS failed,
      min(j.run_at) FILTER (WHERE j.locked_at IS NULL AND j.attempts < j.max_attempts AND j.run_at <= now()) AS oldest_ready,
      min(j.updated_at) FILTER (WHERE j.locked_at IS NULL AND j.attempts >= j.max_attempts) AS oldest_failed
    FROM ${table} j`;
  let filled = 0;
  console.log(`\ngraphile-worker ${versionOf('graphile-worker')} (schema ${GW_SCHEMA}; ms, median / p95 of ${SAMPLES}; graphile-worker has no stats call of its own)`);
  console.log('     jobs | queue-otel read     buffers | with opt-in indexes | before (old read)');
  for (const size of SIZES) {
    const fill = await timed(() =>
      admin.query(`INSERT INTO ${table} (task_id, payload, priority, run_at, attempts, max_attempts, last_error, locked_at, locked_by)
        SELECT (SELECT id FROM ${GW_SCHEMA}._private_tasks LIMIT 1), '{}', (g % 3)::smallint,
          -- A failed job's run_at is where graphile-worker's failJobs left it: failure + exp(least(attempts, 10)) s.
          CASE WHEN g % 20 IN (17, 18) THEN now() + g * interval '1 second'
            WHEN g % 20 = 19 THEN now() - g * interval '1 millisecond' + exp(10) * interval '1 second'
            ELSE now() - g * interval '1 millisecond' END,
          CASE WHEN g % 20 = 19 THEN 25 ELSE 0 END, 25,
          CASE WHEN g % 20 = 19 THEN 'boom' END,
          CASE WHEN g <= 10 THEN now() END, CASE WHEN g <= 10 THEN 'bench-worker' END
        FROM generate_series(${filled + 1}, ${size}) g`),
    );
    filled = size;
    await admin.query(`VACUUM ANALYZE ${table}`);
    const read = await samples(() => source.read(request));
    const reading = await source.read(request);
    const plan = await explain(graphileReadSql(GW_SCHEMA));
    await printPlan(`graphile-worker read, ${size} jobs`, graphileReadSql(GW_SCHEMA));
    await admin.query(`CREATE INDEX ${LOCKED_INDEX} ON ${table} (locked_at) WHERE locked_at IS NOT NULL`);
    await admin.query(`CREATE INDEX ${FAILED_INDEX} ON ${table} (attempts, run_at) WHERE is_available = false AND locked_at IS NULL`);
    await admin.query(`ANALYZE ${table}`);
    const indexed = await samples(() => source.read(request));
    if (PLANS) {
      const [, , , exact] = graphileLargeSql(GW_SCHEMA, true, true).split('\n').join(' ').split(';');
      await printPlan(`graphile-worker read with the opt-in indexes (their statement), ${size} jobs`, exact);
    }
    const readingIndexed = await source.read(request);
    await admin.query(`DROP INDEX ${GW_SCHEMA}.${LOCKED_INDEX}; DROP INDEX ${GW_SCHEMA}.${FAILED_INDEX}`);
    const old = await samples(() => admin.query(before), 5, 1);
    const row = {
      jobs: size,
      fillMs: Math.round(fill.ms),
      read,
      readBuffers: plan.buffers,
      readExecutionMs: plan.executionMs,
      withIndexes: indexed,
      before: old,
      reading,
      readingIndexed,
      truth: (await admin.query(`SELECT count(*) FILTER (WHERE j.is_available AND j.run_at <= now()) AS waiting,
          count(*) FILTER (WHERE j.is_available AND j.run_at > now()) AS delayed, count(*) FILTER (WHERE j.locked_at IS NOT NULL) AS active,
          count(*) FILTER (WHERE NOT j.is_available AND j.locked_at IS NULL) AS failed,
          floor(extract(epoch FROM min(j.run_at) FILTER (WHERE j.is_available AND j.run_at <= now())) * 1000) AS oldest_ready,
          floor(extract(epoch FROM min(j.run_at - exp(least(j.attempts, 10)) * interval '1 second') FILTER (WHERE NOT j.is_available AND j.locked_at IS NULL)) * 1000) AS oldest_failed
        FROM ${table} j`)).rows[0],
    };
    results.graphileWorker.push(row);
    console.log(`${String(size).padStart(9)} | ${fmt(read.median)} / ${fmt(read.p95)} ${String(plan.buffers).padStart(7)} | ${fmt(indexed.median)} / ${fmt(indexed.p95)}   | ${fmt(old.median)}`);
  }
  await source.release(request.owner);
  await utils.release();
}

try {
  console.log(`bench/state.mjs: ${cpus().length} CPUs, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}, PostgreSQL ${(await admin.query('SHOW server_version')).rows[0].server_version}`);
  await benchPgBoss();
  await benchGraphile();
  for (const row of results.pgBoss) console.log(`pg-boss ${row.jobs}: reading ${JSON.stringify(row.reading)}; truth ${JSON.stringify(row.truth)}`);
  for (const row of results.graphileWorker) {
    console.log(`graphile-worker ${row.jobs}: reading ${JSON.stringify(row.reading)}; with indexes ${JSON.stringify(row.readingIndexed)}; truth ${JSON.stringify(row.truth)}`);
  }
  const file = fileURLToPath(new URL('./last-run.json', import.meta.url));
  const last = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
  last.state = { at: new Date().toISOString(), samples: SAMPLES, ...results };
  writeFileSync(file, JSON.stringify(last, null, 2) + '\n');
} finally {
  await admin.query(`DROP SCHEMA IF EXISTS ${BOSS_SCHEMA} CASCADE; DROP SCHEMA IF EXISTS ${GW_SCHEMA} CASCADE`).catch(() => {});
  await admin.end();
  clearInterval(keepAlive);
}
process.exit(0);
