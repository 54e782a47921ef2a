// End to end with a real Prometheus server (Debian's `prometheus`, loopback, its own temp dir and a
// free port, 1 s scrapes) scraping the demo's worker started through queue-otel/register:
// the alert rules pass `promtool check rules` and load healthy, every query of the Grafana
// dashboard and of docs/autoscaling.md returns data, and the rate of busy time equals the number
// of busy workers. A second target, test/fixtures/register/schedules-app.mjs (pg-boss and
// graphile-worker back from a 10-minute outage of their schedulers), makes the schedule rules fire
// on real data.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as semconv from '../src/semconv.js';
import { findBinary, requireBinary } from './helpers/binaries.js';
import { dropSchemas, pgUrl, schemaName } from './helpers/postgres.js';
import { type Child, ROOT, freePort, startNode } from './helpers/processes.js';
import { connection, sleep, until } from './helpers/redis.js';
import { requireLibrary } from './helpers/library.js';

const { Queue } = requireLibrary<typeof import('bullmq')>('bullmq');

const PROMETHEUS = findBinary('prometheus');
const PROMTOOL = findBinary('promtool');
const { skip } = requireBinary('prometheus', PROMETHEUS && PROMTOOL, 'apt-get install --no-install-recommends prometheus');

const RULES = join(ROOT, 'examples/grafana/alerts.yml');
const AUTOSCALING = join(ROOT, 'docs/autoscaling.md');
/**
 * The Prometheus name of the depth metric, from the one place metric names live. The docs write
 * the schema's name (`queue_job_count`); until the code emits it, the queries are run with the
 * name it emits (`queue.jobs.count` before the rename), so the check holds on both sides of it.
 */
const JOB_COUNT = (Object.values(semconv) as unknown[])
  .find((v): v is string => typeof v === 'string' && /^queue\.jobs?\.count$/.test(v))!
  .replaceAll('.', '_');
const DASHBOARD = join(ROOT, 'examples/grafana/dashboard.json');
const BUSY_WORKERS = 4;
const PREFIX = `qo-test-prom-${process.pid}`;
/** The range of rate() in the busy-time check, and what $__rate_interval becomes. */
const RATE_WINDOW_S = 20;

let worker: Child;
let schedulesApp: Child;
const SCHEDULES_SCHEMA = schemaName('prom_sched');
const SCHEDULES_QUEUE = `prom_sched_${process.pid}`;
let prometheus: Child;
let api: string;
let dir: string;

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

async function query(expr: string): Promise<Sample[]> {
  const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { status: string; error?: string; data?: { result: Sample[] } };
  if (body.status !== 'success') throw new Error(`query failed: ${expr}: ${body.error}`);
  return body.data!.result;
}

describe.skipIf(skip)('Prometheus end to end', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'qo-prometheus-'));
    const metricsPort = await freePort();
    worker = startNode(['--import', 'queue-otel/register'], 'examples/demo/worker.mjs', {
      OTEL_SERVICE_NAME: 'prometheus-e2e',
      OTEL_METRICS_EXPORTER: 'prometheus',
      OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
      OTEL_EXPORTER_PROMETHEUS_PORT: String(metricsPort),
      OTEL_TRACES_EXPORTER: 'none',
      QUEUE_OTEL_QUEUE_STATE_INTERVAL: '1000',
      DEMO_PREFIX: PREFIX,
      DEMO_BUSY_WORKERS: String(BUSY_WORKERS),
      DEMO_BUSY_JOB_S: '600',
    });
    const schedulesPort = await freePort();
    schedulesApp = startNode(['--import', 'queue-otel/register'], 'test/fixtures/register/schedules-app.mjs', {
      OTEL_SERVICE_NAME: 'prometheus-e2e-schedules',
      OTEL_METRICS_EXPORTER: 'prometheus',
      OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
      OTEL_EXPORTER_PROMETHEUS_PORT: String(schedulesPort),
      OTEL_TRACES_EXPORTER: 'none',
      QUEUE_OTEL_QUEUE_STATE: 'false',
      PG_URL: pgUrl(),
      QO_SCHEMA: SCHEDULES_SCHEMA,
      QO_QUEUE: SCHEDULES_QUEUE,
      QO_DOWN_MIN: '10',
    });
    await worker.waitFor(/demo: worker running/);
    await schedulesApp.waitFor(/SCHEDULES_DONE/, 60_000);

    const port = await freePort();
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global:',
        '  scrape_interval: 1s',
        '  evaluation_interval: 1s',
        'rule_files:',
        `  - ${JSON.stringify(RULES)}`,
        'scrape_configs:',
        '  - job_name: queue-otel-demo',
        '    static_configs:',
        `      - targets: ["127.0.0.1:${metricsPort}"]`,
        '  - job_name: queue-otel-schedules',
        '    static_configs:',
        `      - targets: ["127.0.0.1:${schedulesPort}"]`,
        '',
      ].join('\n'),
    );
    const proc = spawn(
      PROMETHEUS!,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let log = '';
    proc.stderr.on('data', (d) => (log += d));
    const exited = new Promise<void>((r) => proc.on('exit', () => r()));
    prometheus = {
      process: proc,
      stdout: () => '',
      stderr: () => log,
      exited: exited.then(() => ({ code: proc.exitCode, signal: proc.signalCode })),
      kill: (s = 'SIGTERM') => void proc.kill(s),
      stop: async () => {
        proc.kill('SIGTERM');
        await exited;
      },
      waitFor: async () => [] as unknown as RegExpMatchArray,
    };
    api = `http://127.0.0.1:${port}`;
    await until(async () => {
      if (proc.exitCode !== null) throw new Error(`prometheus exited (${proc.exitCode}):\n${log}`);
      return (await fetch(`${api}/-/ready`).catch(() => undefined))?.ok === true;
    }, 30_000, 'Prometheus to be ready');
    // Enough scrapes for rate() over RATE_WINDOW_S with the busy workers running all along.
    await until(async () => (await query('queue_job_busy_time_total{messaging_destination_name="busy"}')).length > 0, 20_000, 'first scrape');
    await sleep((RATE_WINDOW_S + 6) * 1000);
  }, 90_000);

  afterAll(async () => {
    await prometheus?.stop();
    await worker?.stop();
    await schedulesApp?.stop();
    await dropSchemas(SCHEDULES_SCHEMA, `${SCHEDULES_SCHEMA}_boss`).catch(() => {});
    if (dir) rmSync(dir, { recursive: true, force: true });
    for (const name of ['emails', 'reports', 'webhooks', 'busy', 'billing', 'partners', 'crm']) {
      const q = new Queue(name, { connection: connection(), prefix: PREFIX });
      await q.obliterate({ force: true });
      await q.close();
    }
  }, 60_000);

  it('the alert rules pass promtool check rules, and load and evaluate healthy in Prometheus', { timeout: 90_000 }, async () => {
    const check = spawnSync(PROMTOOL!, ['check', 'rules', RULES], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toContain('SUCCESS: 9 rules found');

    const rules = (await (await fetch(`${api}/api/v1/rules`)).json()) as {
      data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> };
    };
    const all = rules.data.groups.flatMap((g) => g.rules);
    expect(all.map((r) => r.name).sort()).toEqual([
      'QueueDeadLettersGrowing',
      'QueueFailureRateHigh',
      'QueueJobMemoryHigh',
      'QueueJobStuck',
      'QueueOldestJobWaitingTooLong',
      'QueueScheduleNotRun',
      'QueueScheduleRunLate',
      'QueueScheduleRunMissed',
      'QueueWorkersSaturated',
    ]);
    expect(all.filter((r) => r.health !== 'ok')).toEqual([]);
    // The flaky webhooks use up their attempts (45% of attempts fail, 4 attempts: about 4% of
    // jobs): once the first dead letter is scraped, the dead-letter rule fires for that queue.
    await until(async () => (await query('queue_job_count{messaging_destination_name="webhooks", queue_job_state="failed"} > 0')).length > 0, 60_000, 'a dead letter in webhooks');
    const firing = async () => {
      const alerts = (await (await fetch(`${api}/api/v1/alerts`)).json()) as { data: { alerts: Array<{ labels: Record<string, string>; state: string }> } };
      return alerts.data.alerts.some((a) => a.labels.alertname === 'QueueDeadLettersGrowing' && a.labels.messaging_destination_name === 'webhooks' && a.state === 'firing');
    };
    await until(firing, 15_000, 'QueueDeadLettersGrowing firing for webhooks');
  });

  it('the schedule rules fire on real data: late and missed runs after an outage, and a schedule that has not run', { timeout: 90_000 }, async () => {
    type Alert = { labels: Record<string, string>; state: string };
    const alerts = async () => ((await (await fetch(`${api}/api/v1/alerts`)).json()) as { data: { alerts: Alert[] } }).data.alerts;
    const firing = (list: Alert[], name: string, system: string, schedule: string) =>
      list.some((a) => a.labels.alertname === name && a.state === 'firing' && a.labels.messaging_system === system && a.labels.queue_schedule_name === schedule);
    // graphile-worker backfilled 10 missed minutes, the oldest about 10 minutes late; pg-boss sent
    // one catch-up run. The demo's BullMQ scheduler runs a few seconds late: not past 5 minutes.
    await until(async () => {
      const list = await alerts();
      return (
        firing(list, 'QueueScheduleRunLate', 'graphile-worker', 'nightly-billing') &&
        firing(list, 'QueueScheduleRunMissed', 'graphile-worker', 'nightly-billing') &&
        firing(list, 'QueueScheduleRunMissed', 'pg-boss', `${SCHEDULES_QUEUE}:nightly`)
      );
    }, 30_000, 'the late and missed schedule alerts');
    const list = await alerts();
    expect(list.filter((a) => a.labels.alertname?.startsWith('QueueSchedule') && a.labels.queue_schedule_name === 'billing-sync')).toEqual([]);
    const [missed] = await query(`sum(queue_schedule_missed_total{queue_schedule_name="nightly-billing"})`);
    expect(Number(missed!.value[1])).toBeGreaterThanOrEqual(9);
    expect(Number(missed!.value[1])).toBeLessThanOrEqual(10);
    const [demoLag] = await query('sum(queue_schedule_lag_sum{queue_schedule_name="billing-sync"}) / sum(queue_schedule_lag_count{queue_schedule_name="billing-sync"})');
    console.log(`prometheus e2e: the demo's billing-sync scheduler runs ${Number(demoLag!.value[1]).toFixed(2)} s late on average; graphile-worker missed ${missed!.value[1]} minutes`);
    expect(Number(demoLag!.value[1])).toBeGreaterThan(0.5);

    // "Has not run for 25 hours, ran in 3 days", on a scale a test can wait for: not for 15 s, in
    // 10 min. graphile-worker's crontab runs once a minute; the demo's scheduler every few seconds.
    const rules = readFileSync(RULES, 'utf8');
    const notRun = /- alert: QueueScheduleNotRun[\s\S]*?expr: \|\n([\s\S]*?)\n\s+labels:/.exec(rules)![1]!;
    const scaled = notRun.replaceAll('[3d]', '[10m]').replaceAll('[25h]', '[15s]').replaceAll('offset 25h', 'offset 15s');
    let quiet: Sample[] = [];
    await until(async () => (quiet = await query(scaled)).some((r) => r.metric.queue_schedule_name === 'nightly-billing'), 70_000, 'a minute with no crontab run for 15 s');
    expect(quiet.map((r) => r.metric.queue_schedule_name)).not.toContain('billing-sync');
  });

  it('every query of the Grafana dashboard returns data', { timeout: 60_000 }, async () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
      panels: Array<{ type: string; title: string; datasource?: { uid: string }; targets?: Array<{ expr: string }> }>;
      templating: { list: Array<{ name: string }> };
    };
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(['datasource', 'queue']);
    const panels = dashboard.panels.filter((p) => p.type !== 'row');
    expect(panels.length).toBeGreaterThanOrEqual(12);
    // The failed-outcome series begins with the first dead letter, which the test above may have
    // seen (through the failed set's size) one scrape after it: increase() over it needs two
    // samples of that series in the window.
    await until(
      async () =>
        (await query(`count_over_time(messaging_process_duration_count{queue_job_outcome="failed"}[${RATE_WINDOW_S}s]) >= 2`)).length > 0,
      15_000,
      'two scrapes of a failed-outcome series',
    );
    const empty: string[] = [];
    let queries = 0;
    for (const panel of panels) {
      expect(panel.datasource?.uid, panel.title).toBe('${datasource}');
      for (const target of panel.targets ?? []) {
        queries++;
        // What Grafana substitutes: every queue, and a rate interval of a few scrapes.
        const expr = target.expr.replaceAll('$queue', '.*').replaceAll('$__rate_interval', `${RATE_WINDOW_S}s`);
        const result = await query(expr);
        if (result.length === 0) empty.push(`${panel.title}: ${expr}`);
      }
    }
    expect(queries).toBeGreaterThanOrEqual(15);
    expect(empty).toEqual([]);
  });

  it('the rate of busy time equals the number of busy workers within 5%', async () => {
    const [busy] = await query(`sum(rate(queue_job_busy_time_total{messaging_destination_name="busy"}[${RATE_WINDOW_S}s]))`);
    const [active] = await query('sum(queue_job_active{messaging_destination_name="busy"})');
    const [concurrency] = await query('sum(queue_worker_concurrency{messaging_destination_name="busy"})');
    const rate = Number(busy!.value[1]);
    console.log(
      `prometheus e2e: rate(queue_job_busy_time_total[${RATE_WINDOW_S}s]) = ${rate.toFixed(4)} with ${BUSY_WORKERS} workers busy ` +
        `(error ${((Math.abs(rate - BUSY_WORKERS) / BUSY_WORKERS) * 100).toFixed(2)}%)`,
    );
    expect(Number(active!.value[1])).toBe(BUSY_WORKERS);
    expect(Number(concurrency!.value[1])).toBe(BUSY_WORKERS);
    expect(Math.abs(rate - BUSY_WORKERS) / BUSY_WORKERS).toBeLessThan(0.05);
  });

  it('every query of docs/autoscaling.md returns one value, and worker saturation reads 1 when every worker is busy', async () => {
    const queries = autoscalingQueries(readFileSync(AUTOSCALING, 'utf8'));
    // The promql block (3), the KEDA triggers (3), the adapter's rules (3).
    expect(queries.map((q) => q.from)).toEqual(['promql', 'promql', 'promql', 'keda', 'keda', 'keda', 'adapter', 'adapter', 'adapter']);
    const answers: string[] = [];
    for (const { expr } of queries) {
      // The series here are younger than 2 minutes: a range that long would make rate() read low.
      const run = expr.replaceAll('[2m]', `[${RATE_WINDOW_S}s]`);
      const result = await query(run);
      answers.push(`${result.map((r) => r.value[1]).join(', ') || '(none)'} <- ${run}`);
      expect(result, expr).toHaveLength(1);
      expect(Number.isFinite(Number(result[0]!.value[1])), expr).toBe(true);
    }
    console.log(`autoscaling queries:\n${answers.join('\n')}`);
    const saturation = queries.find((q) => q.from === 'keda' && q.expr.includes('queue_worker_concurrency'))!.expr;
    const [busy] = await query(saturation.replaceAll('"emails"', '"busy"').replaceAll('[2m]', `[${RATE_WINDOW_S}s]`));
    expect(Math.abs(Number(busy!.value[1]) - 1)).toBeLessThan(0.05);
  });
});

/**
 * The PromQL of docs/autoscaling.md: each line of its `promql` block, each KEDA trigger's
 * `query:`, and each prometheus-adapter `metricsQuery:` with its template filled in as the adapter
 * does for an HPA that selects `messaging_destination_name=emails` (`namespaced: false`).
 */
function autoscalingQueries(markdown: string): Array<{ from: 'promql' | 'keda' | 'adapter'; expr: string }> {
  const out: Array<{ from: 'promql' | 'keda' | 'adapter'; expr: string }> = [];
  const unquote = (v: string) => (v.startsWith("'") ? v.slice(1, -1).replaceAll("''", "'") : v.startsWith('"') ? (JSON.parse(v) as string) : v);
  for (const [, lang, body] of markdown.matchAll(/```(\w+)\n([\s\S]*?)```/g)) {
    if (lang === 'promql') {
      for (const line of body!.split('\n')) if (line.trim() !== '' && !line.trim().startsWith('#')) out.push({ from: 'promql', expr: line.trim() });
      continue;
    }
    if (lang !== 'yaml') continue;
    let series = '';
    for (const line of body!.split('\n')) {
      const field = /^\s*-?\s*(query|seriesQuery|metricsQuery):\s*(.+?)\s*$/.exec(line);
      if (!field) continue;
      const value = unquote(field[2]!);
      if (field[1] === 'query') out.push({ from: 'keda', expr: value });
      else if (field[1] === 'seriesQuery') series = /^[a-z_:][a-z0-9_:]*/i.exec(value)![0];
      else out.push({ from: 'adapter', expr: value.replaceAll('<<.Series>>', series).replaceAll('<<.LabelMatchers>>', 'messaging_destination_name="emails"') });
    }
  }
  return out.map((q) => ({ ...q, expr: q.expr.replaceAll('queue_job_count', JOB_COUNT) }));
}
