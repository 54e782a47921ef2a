#!/usr/bin/env node
// Writes dashboard.json: the Grafana dashboard for queue-otel's metrics, with the names the
// OpenTelemetry JS Prometheus exporter writes (queue_job_busy_time_total, queue_job_memory_usage,
// messaging_process_duration_bucket, ...). Edit the panels here and run `node generate.mjs`.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const DS = { type: 'prometheus', uid: '${datasource}' };
const Q = 'messaging_destination_name=~"$queue"';
const RI = '$__rate_interval';

let id = 0;
let y = 0;
const panels = [];

function row(title) {
  panels.push({ type: 'row', id: ++id, title, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, panels: [] });
  y += 1;
}

/** A row of panels of equal width. Each: [title, description, unit, targets [[expr, legend]], options]. */
function line(...items) {
  const w = 24 / items.length;
  items.forEach(([title, description, unit, targets, extra = {}], i) => {
    panels.push({
      type: extra.type ?? 'timeseries',
      id: ++id,
      title,
      description,
      datasource: DS,
      gridPos: { h: 8, w, x: i * w, y },
      fieldConfig: {
        defaults: {
          unit,
          min: 0,
          custom: extra.type ? undefined : { drawStyle: 'line', lineWidth: 2, fillOpacity: 12, showPoints: 'never', spanNulls: false },
          ...(extra.defaults ?? {}),
        },
        overrides: extra.overrides ?? [],
      },
      options: extra.options ?? { legend: { displayMode: 'table', placement: 'bottom', calcs: ['lastNotNull', 'max'] }, tooltip: { mode: 'multi', sort: 'desc' } },
      targets: targets.map(([expr, legendFormat], j) => ({ refId: String.fromCharCode(65 + j), datasource: DS, expr, legendFormat, range: true })),
    });
  });
  y += 8;
}

row('Workers: are they keeping up?');
line(
  [
    'Busy workers against concurrency',
    'Rate of queue.job.busy.time: seconds of work per second, running jobs included at each scrape. A fully busy pool of 10 reads 10.',
    'short',
    [
      [`sum by (messaging_destination_name) (rate(queue_job_busy_time_total{${Q}}[${RI}]))`, '{{messaging_destination_name}} busy'],
      [`sum by (messaging_destination_name) (queue_worker_concurrency{${Q}})`, '{{messaging_destination_name}} concurrency'],
    ],
    { overrides: [{ matcher: { id: 'byRegexp', options: '.* concurrency' }, properties: [{ id: 'custom.lineStyle', value: { fill: 'dash', dash: [8, 6] } }, { id: 'custom.fillOpacity', value: 0 }] }] },
  ],
  [
    'Busy workers by job name',
    'Which job names use the workers.',
    'short',
    [[`sum by (messaging_destination_name, queue_job_name) (rate(queue_job_busy_time_total{${Q}}[${RI}]))`, '{{messaging_destination_name}} / {{queue_job_name}}']],
  ],
  [
    'Utilisation',
    'Busy workers divided by the concurrency limit. Near 100% for long: add workers.',
    'percentunit',
    [[`sum by (messaging_destination_name) (rate(queue_job_busy_time_total{${Q}}[${RI}])) / sum by (messaging_destination_name) (queue_worker_concurrency{${Q}} > 0)`, '{{messaging_destination_name}}']],
    { type: 'gauge', defaults: { max: 1, thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }, { color: 'orange', value: 0.8 }, { color: 'red', value: 0.95 }] } }, options: { reduceOptions: { calcs: ['lastNotNull'] }, showThresholdMarkers: true } },
  ],
);
row('Throughput and failures');
line(
  [
    'Attempts by outcome',
    'Attempts ended per second: completed, retried (will run again), failed (no attempt left: a dead letter).',
    'ops',
    [[`sum by (messaging_destination_name, queue_job_outcome) (rate(messaging_process_duration_count{${Q}}[${RI}]))`, '{{messaging_destination_name}} {{queue_job_outcome}}']],
    { overrides: ['completed:green', 'retried:orange', 'failed:red'].map((s) => { const [o, c] = s.split(':'); return { matcher: { id: 'byRegexp', options: `.* ${o}` }, properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: c } }] }; }) },
  ],
  [
    'Dead letters by job name and error',
    'Jobs that ended in the failed set, by error.type.',
    'short',
    [[`sum by (messaging_destination_name, queue_job_name, error_type) (increase(messaging_process_duration_count{${Q}, queue_job_outcome="failed"}[${RI}]))`, '{{queue_job_name}}: {{error_type}}']],
    { defaults: { custom: { drawStyle: 'bars', fillOpacity: 60, lineWidth: 1, showPoints: 'never' } } },
  ],
  [
    'Jobs added',
    'Jobs added per second by producers (add, addBulk, flows).',
    'ops',
    [[`sum by (messaging_destination_name) (rate(messaging_client_sent_messages_total{${Q}}[${RI}]))`, '{{messaging_destination_name}}']],
  ],
);
row('Latency');
line(
  [
    'Wait before start (p50, p95)',
    'From when a job became ready until its first attempt started. Too long: add workers.',
    's',
    [
      [`histogram_quantile(0.5, sum by (le, messaging_destination_name) (rate(queue_job_wait_duration_bucket{${Q}}[${RI}])))`, '{{messaging_destination_name}} p50'],
      [`histogram_quantile(0.95, sum by (le, messaging_destination_name) (rate(queue_job_wait_duration_bucket{${Q}}[${RI}])))`, '{{messaging_destination_name}} p95'],
    ],
  ],
  [
    'Run time p95 by job name',
    'messaging.process.duration of each attempt. Too long: split the job or give it a bigger machine.',
    's',
    [[`histogram_quantile(0.95, sum by (le, messaging_destination_name, queue_job_name) (rate(messaging_process_duration_bucket{${Q}}[${RI}])))`, '{{messaging_destination_name}} / {{queue_job_name}}']],
  ],
  [
    'Attempts needed (p95)',
    'Attempts a job needed, recorded when it completed or finally failed.',
    'short',
    [[`histogram_quantile(0.95, sum by (le, messaging_destination_name) (rate(queue_job_attempts_bucket{${Q}}[${RI}])))`, '{{messaging_destination_name}}']],
  ],
);
row('Queue state');
line(
  [
    'Depth by state',
    'queue.job.count, read by one process of the cluster (completed left out: history, not backlog).',
    'short',
    [[`sum by (messaging_destination_name, queue_job_state) (queue_job_count{${Q}, queue_job_state!="completed"})`, '{{messaging_destination_name}} {{queue_job_state}}']],
  ],
  [
    'Oldest job',
    'Oldest job ready to run, oldest dead letter, longest-running job.',
    's',
    [
      [`max by (messaging_destination_name) (queue_oldest_age{${Q}})`, '{{messaging_destination_name}} waiting'],
      [`max by (messaging_destination_name) (queue_failed_oldest_age{${Q}})`, '{{messaging_destination_name}} dead letter'],
      [`max by (messaging_destination_name) (queue_job_running_oldest{${Q}})`, '{{messaging_destination_name}} running'],
    ],
  ],
  [
    'Stalled jobs',
    'Jobs whose worker stopped renewing the lock (0 when none were found).',
    'short',
    [[`sum by (messaging_destination_name) (increase(queue_job_stalled_total{${Q}}[${RI}])) or (sum by (messaging_destination_name) (queue_worker_concurrency{${Q}}) * 0)`, '{{messaging_destination_name}}']],
  ],
);
row('Which job eats the server?');
line(
  [
    'Memory held by job name',
    'queue.job.memory.usage: memory held by running jobs, summed by job name (top 10).',
    'bytes',
    [[`topk(10, sum by (messaging_destination_name, queue_job_name) (queue_job_memory_usage{${Q}}))`, '{{messaging_destination_name}} / {{queue_job_name}}']],
  ],
  [
    'CPU by job name',
    'Rate of queue.job.cpu.time, in cores (top 10).',
    'short',
    [[`topk(10, sum by (messaging_destination_name, queue_job_name) (rate(queue_job_cpu_time_total{${Q}}[${RI}])))`, '{{messaging_destination_name}} / {{queue_job_name}}']],
  ],
  [
    'Memory peak p95 by job name',
    'The most memory each job was seen to hold, recorded when it ended.',
    'bytes',
    [[`histogram_quantile(0.95, sum by (le, messaging_destination_name, queue_job_name) (rate(queue_job_memory_peak_bucket{${Q}}[${RI}])))`, '{{messaging_destination_name}} / {{queue_job_name}}']],
  ],
);
row('Schedules: did it run, and on time?');
line(
  [
    'Schedule lag of the latest runs',
    'queue.schedule.lag: how late each run of a job scheduler, repeatable job or cron entry started against the time it was due (the mean of the runs in the interval). pg-boss: until pg-boss sent the run\'s job (docs/schedules.md).',
    's',
    [[
      `sum by (messaging_destination_name, queue_schedule_name) (increase(queue_schedule_lag_sum{${Q}}[${RI}])) / sum by (messaging_destination_name, queue_schedule_name) (increase(queue_schedule_lag_count{${Q}}[${RI}]))`,
      '{{messaging_destination_name}} / {{queue_schedule_name}}',
    ]],
    { defaults: { custom: { drawStyle: 'points', pointSize: 7, showPoints: 'always' } } },
  ],
  [
    'Runs by schedule',
    'Scheduled runs started, by schedule.',
    'short',
    [[`sum by (messaging_destination_name, queue_schedule_name) (increase(queue_schedule_lag_count{${Q}}[${RI}]))`, '{{messaging_destination_name}} / {{queue_schedule_name}}']],
    { defaults: { custom: { drawStyle: 'bars', fillOpacity: 60, lineWidth: 1, showPoints: 'never' } } },
  ],
  [
    'Missed runs',
    'queue.schedule.missed: runs the scheduler says it missed at their time (graphile-worker backfills, pg-boss catch-ups with missed: once); 0 for the other schedules. BullMQ and Bull cannot tell: their late runs show in the lag.',
    'short',
    [[
      `sum by (messaging_destination_name, queue_schedule_name) (increase(queue_schedule_missed_total{${Q}}[${RI}])) or (sum by (messaging_destination_name, queue_schedule_name) (queue_schedule_lag_count{${Q}}) * 0)`,
      '{{messaging_destination_name}} / {{queue_schedule_name}}',
    ]],
    { defaults: { custom: { drawStyle: 'bars', fillOpacity: 60, lineWidth: 1, showPoints: 'never' } } },
  ],
);

const dashboard = {
  __requires: [
    { type: 'grafana', id: 'grafana', name: 'Grafana', version: '10.0.0' },
    { type: 'datasource', id: 'prometheus', name: 'Prometheus', version: '1.0.0' },
    { type: 'panel', id: 'timeseries', name: 'Time series', version: '' },
    { type: 'panel', id: 'gauge', name: 'Gauge', version: '' },
  ],
  uid: 'queue-otel',
  title: 'Job queues (queue-otel)',
  description: 'Workers, throughput, failures, wait and run time, queue depth, per-job memory and CPU, and scheduled runs from queue-otel.',
  tags: ['queue-otel', 'opentelemetry', 'bullmq', 'queues'],
  editable: true,
  schemaVersion: 39,
  version: 1,
  refresh: '30s',
  time: { from: 'now-1h', to: 'now' },
  timezone: '',
  graphTooltip: 1,
  templating: {
    list: [
      { name: 'datasource', label: 'Prometheus', type: 'datasource', query: 'prometheus', current: {}, hide: 0, refresh: 1 },
      {
        name: 'queue',
        label: 'Queue',
        type: 'query',
        datasource: DS,
        query: { query: 'label_values(queue_worker_concurrency, messaging_destination_name)', refId: 'queue' },
        definition: 'label_values(queue_worker_concurrency, messaging_destination_name)',
        multi: true,
        includeAll: true,
        allValue: '.*',
        current: { selected: true, text: ['All'], value: ['$__all'] },
        refresh: 2,
        sort: 1,
        hide: 0,
      },
    ],
  },
  annotations: { list: [] },
  panels,
};

const out = join(dirname(fileURLToPath(import.meta.url)), 'dashboard.json');
writeFileSync(out, JSON.stringify(dashboard, null, 2) + '\n');
console.log(`wrote ${out}: ${panels.filter((p) => p.type !== 'row').length} panels`);
