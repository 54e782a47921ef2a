// The live dashboard in a real headless Chromium: the demo's worker started through
// `node --import queue-otel/register` with QUEUE_OTEL_DASHBOARD_PORT, real jobs on the real Redis,
// and assertions on the data the page's charts hold (not only that a canvas exists).
// Writes test-artifacts/dashboard.png.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findBinary, requireBinary } from './helpers/binaries.js';
import { type Child, ROOT, startNode } from './helpers/processes.js';
import { connection } from './helpers/redis.js';
import { requireLibrary } from './helpers/library.js';

const { Queue } = requireLibrary<typeof import('bullmq')>('bullmq');

const CHROMIUM = findBinary('chromium', [process.env.CHROMIUM_PATH ?? '', '/usr/bin/chromium']);
const { skip } = requireBinary('chromium', CHROMIUM, 'apt-get install chromium');
// The flags this machine's notes give for headless Chromium on a closed network, as root.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const BUSY_WORKERS = 2;
const PREFIX = `qo-test-dash-${process.pid}`;

let worker: Child;
let url: string;
let browser: BrowserContext;
let page: Page;
let profile: string;
const pageErrors: string[] = [];

describe.skipIf(skip)('live dashboard in Chromium', () => {
  beforeAll(async () => {
    worker = startNode(['--import', 'queue-otel/register'], 'examples/demo/worker.mjs', {
      OTEL_SERVICE_NAME: 'dashboard-test',
      OTEL_METRICS_EXPORTER: 'none',
      OTEL_TRACES_EXPORTER: 'none',
      QUEUE_OTEL_DASHBOARD_PORT: '0',
      QUEUE_OTEL_QUEUE_STATE_INTERVAL: '1000',
      DEMO_PREFIX: PREFIX,
      DEMO_BUSY_WORKERS: String(BUSY_WORKERS),
      DEMO_BUSY_JOB_S: '120',
      // As `npm run demo` sets it: the job table links the latest profile of thumbnail.
      QUEUE_OTEL_PROFILE_JOBS: 'thumbnail',
    });
    url = (await worker.waitFor(/live dashboard on (http:\/\/\S+)/))[1]!;
    profile = mkdtempSync(join(tmpdir(), 'qo-chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1440, height: 1000 },
    });
    page = await browser.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(url);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await worker?.stop();
    for (const name of ['emails', 'reports', 'webhooks', 'busy', 'billing', 'partners', 'crm']) {
      const q = new Queue(name, { connection: connection(), prefix: PREFIX });
      await q.obliterate({ force: true });
      await q.close();
    }
  }, 60_000);

  /** What the charts of the page hold now: per "queue/chart", each line's label and values. */
  async function charts(): Promise<Record<string, Record<string, Array<number | null>>>> {
    return page.evaluate(() => {
      const out: Record<string, Record<string, Array<number | null>>> = {};
      const state = (globalThis as unknown as { queueOtel: { charts: Map<string, { plot: { series: Array<{ label: string }>; data: Array<Array<number | null>> } }> } }).queueOtel;
      for (const [key, entry] of state.charts) {
        const lines: Record<string, Array<number | null>> = {};
        entry.plot.series.forEach((s, i) => {
          if (i > 0) lines[s.label] = entry.plot.data[i]!;
        });
        out[key] = lines;
      }
      return out;
    });
  }

  const max = (values: Array<number | null> | undefined) => Math.max(-Infinity, ...(values ?? []).filter((v): v is number => v !== null));
  const last = (values: Array<number | null> | undefined) => [...(values ?? [])].reverse().find((v) => v !== null) ?? null;
  /** The largest of `others` at the sample where `values` peaks (the same moment on the chart). */
  const othersAtPeak = (values: Array<number | null> | undefined, ...others: Array<Array<number | null> | undefined>) => {
    const peak = max(values);
    const at = (values ?? []).indexOf(peak);
    return at < 0 ? 0 : Math.max(0, ...others.map((o) => o?.[at] ?? 0));
  };

  it('draws every chart with data from the real jobs', async () => {
    // Poll the page until every condition holds (or 45 s pass), then assert each one.
    const deadline = Date.now() + 45_000;
    let c = await charts();
    const conditions = () => ({
      // N workers each running one long job: N busy workers, against a concurrency of N.
      busyWorkers: last(c['busy/busy']?.['long-export']),
      busyConcurrency: last(c['busy/busy']?.concurrency),
      // import-customers loads a 600,000-row table: it stands out in memory by job, at the moment
      // it peaks, against the other jobs of its queue at that same moment.
      importMemoryMB: max(c['reports/memory']?.['import-customers']) / 2 ** 20,
      otherMemoryMB:
        othersAtPeak(c['reports/memory']?.['import-customers'], c['reports/memory']?.['monthly-report'], c['reports/memory']?.thumbnail) / 2 ** 20,
      thumbnailCpu: max(c['reports/cpu']?.thumbnail),
      webhookCompleted: max(c['webhooks/throughput']?.completed),
      webhookRetried: max(c['webhooks/throughput']?.retried),
      delayedDigests: max(c['emails/depth']?.delayed),
      emailWaitP95: max(c['emails/wait']?.p95),
      busyRunningAge: last(c['busy/age']?.running),
    });
    const ok = (v: ReturnType<typeof conditions>) =>
      v.busyWorkers !== null && Math.abs(v.busyWorkers - BUSY_WORKERS) < 0.1 && v.importMemoryMB > 20 && v.importMemoryMB > 1.5 * v.otherMemoryMB && v.thumbnailCpu > 0.02 &&
      v.webhookCompleted > 0 && v.webhookRetried > 0 && v.delayedDigests === 25 && v.emailWaitP95 > 0 && (v.busyRunningAge ?? 0) > 4;
    while (!ok(conditions()) && Date.now() < deadline) {
      await page.waitForTimeout(1000);
      c = await charts();
    }
    const v = conditions();
    expect(pageErrors).toEqual([]);
    expect(Object.keys(c)).toEqual(expect.arrayContaining(['busy/busy', 'reports/memory', 'reports/cpu', 'webhooks/throughput', 'emails/depth', 'emails/wait', 'emails/age']));
    expect(v.busyWorkers).toBeCloseTo(BUSY_WORKERS, 1);
    expect(v.busyConcurrency).toBe(BUSY_WORKERS);
    expect(v.importMemoryMB).toBeGreaterThan(20);
    // Memory of jobs sharing the event loop is an estimate (docs/metrics.md): the table loader still comes
    // out on top, by a margin, of the other jobs of its queue while it holds its table. (Not against
    // their highest value at any other time: jobs that churn keep garbage until the next drop of
    // the heap, and long-running ones add up, so over a long window they can exceed its peak.)
    expect(v.importMemoryMB).toBeGreaterThan(1.5 * Math.max(v.otherMemoryMB, 1));
    expect(v.thumbnailCpu).toBeGreaterThan(0.02);
    expect(v.webhookCompleted).toBeGreaterThan(0);
    expect(v.webhookRetried).toBeGreaterThan(0);
    expect(v.delayedDigests).toBe(25);
    expect(v.emailWaitP95).toBeGreaterThan(0);
    expect(v.busyRunningAge).toBeGreaterThan(4);

    // What a user sees: tiles and the per-job table.
    // The tile shows the latest rate, one decimal: on a loaded machine two collections' timestamps
    // can jitter it by a tenth, as the chart condition above allows.
    await expect
      .poll(async () => {
        const [busyText, limit] = ((await page.locator('section[data-queue="busy"] .tile .v').first().textContent()) ?? '').split(' / ');
        return Math.abs(Number(busyText) - BUSY_WORKERS) <= 0.1 && limit === String(BUSY_WORKERS);
      }, { timeout: 10_000 })
      .toBe(true);
    expect(await page.locator('section[data-queue="reports"] table.jobs tbody tr').count()).toBeGreaterThanOrEqual(3);
    // The service as the SDK's resource names it (OTEL_SERVICE_NAME here), as Prometheus shows it.
    expect(await page.locator('#service').textContent()).toBe('service dashboard-test');
    // The state tiles say how old they may be (QUEUE_OTEL_QUEUE_STATE_INTERVAL=1000), the wait
    // quantiles that they are interpolated.
    const notes = await page.locator('section[data-queue="emails"] .tile .note').allTextContents();
    expect(notes).toEqual(['as of ≤ 1 s ago', 'as of ≤ 1 s ago', 'as of ≤ 1 s ago']);
    expect(await page.locator('section[data-queue="emails"] .card[data-chart="wait"] p').textContent()).toContain('interpolated within histogram buckets');
    expect(await page.locator('section[data-queue="emails"] table.jobs th').allTextContents()).toEqual(expect.arrayContaining(['wait p50 ≈', 'wait p95 ≈']));
    // The footer's links lead somewhere.
    for (const href of await page.locator('footer a').evaluateAll((as) => as.map((a) => (a as unknown as { href: string }).href))) {
      expect([href, (await page.request.get(href)).status()]).toEqual([href, 200]);
    }
    expect(await page.locator('.card canvas').count()).toBeGreaterThanOrEqual(20);

    // A picture with some history in it: at least 20 s of collections.
    await expect
      .poll(() => page.evaluate(() => { const t = (globalThis as unknown as { queueOtel: { snapshot: { t: number[] } } }).queueOtel.snapshot.t; return t[t.length - 1]! - t[0]!; }), { timeout: 30_000, interval: 1000 })
      .toBeGreaterThan(20);
    mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true });
    await page.locator('nav button[data-q="reports"]').click();
    await page.screenshot({ path: join(ROOT, 'test-artifacts/dashboard.png'), fullPage: true });
  }, 90_000);

  it('draws the lag of the demo\'s late scheduler, and its row in the schedules table', async () => {
    // billing-sync is due every 5 s and its run takes 6-7 s on one worker: each run starts late.
    let lag: Array<number | null> | undefined;
    await expect
      .poll(async () => ((lag = (await charts())['billing/schedules']?.['billing-sync']), max(lag)), { timeout: 30_000, interval: 1000 })
      .toBeGreaterThan(0.5);
    expect(pageErrors).toEqual([]);
    const row = page.locator('section[data-queue="billing"] table.schedules tbody tr');
    await expect.poll(() => row.count()).toBe(1);
    const cells = await row.first().locator('td').allTextContents();
    expect(cells[0]).toBe('billing-sync');
    expect(Number(cells[1])).toBeGreaterThanOrEqual(2); // runs
    expect(cells[2]).toMatch(/ s$/); // the latest run's lag, in seconds
    expect(cells[3]).toMatch(/ ago$/);
    expect(cells[4]).toBe('0'); // BullMQ does not tell missed runs
  }, 60_000);

  it('draws deferred attempts beside the other outcomes, the rate limiter\'s waits, and a profile link', async () => {
    // partners: sync-orders put themselves off (DelayedError) while the partner is closed, 10 s
    // of every 30; crm: a limiter of 10 a second against bursts of 40, and RateLimitError now and then.
    let c = await charts();
    await expect
      .poll(async () => ((c = await charts()), Math.min(max(c['partners/throughput']?.deferred), max(c['crm/ratelimit']?.['held back']))), { timeout: 45_000, interval: 1000 })
      .toBeGreaterThan(0);
    expect(pageErrors).toEqual([]);
    expect(max(c['partners/throughput']?.completed)).toBeGreaterThan(0);
    // The throughput chart says what deferred means; the queues without deferrals have no such line.
    expect(await page.locator('section[data-queue="partners"] .card[data-chart="throughput"] p').textContent()).toContain('deferred: put off on purpose');
    expect(Object.keys(c['emails/throughput'] ?? {})).not.toContain('deferred');
    expect(c['emails/ratelimit']).toBeUndefined();

    // Tiles: deferred a second on partners, the share of time held back and the waits on crm.
    const tile = (queue: string, name: string) => page.locator(`section[data-queue="${queue}"] .tile`).filter({ has: page.locator('.k', { hasText: new RegExp(`^${name}$`) }) });
    await expect.poll(async () => Number.parseFloat((await tile('partners', 'deferred').locator('.v').textContent()) ?? ''), { timeout: 30_000 }).toBeGreaterThan(0);
    const heldText = async () => (await tile('crm', 'rate-limited').locator('.v').textContent()) ?? '';
    await expect.poll(async () => Number.parseFloat(await heldText()), { timeout: 30_000 }).toBeGreaterThan(0);
    expect(await heldText()).toMatch(/% of the time$/);
    expect(await tile('crm', 'rate-limited').locator('.note').textContent()).toMatch(/^\d+ waits \/min$/);

    // The job table: a deferred column, whose cell names the reasons.
    const headers = await page.locator('section[data-queue="partners"] table.jobs th').allTextContents();
    const column = headers.indexOf('deferred');
    expect(column).toBeGreaterThan(0);
    await expect
      .poll(async () => page.locator('section[data-queue="partners"] table.jobs tbody tr').first().locator('td').nth(column).getAttribute('title'), { timeout: 30_000 })
      .toMatch(/^delayed \d/);
    await expect
      .poll(async () => page.locator('section[data-queue="crm"] table.jobs tbody tr').first().locator('td').nth(column).getAttribute('title'), { timeout: 45_000 })
      .toMatch(/rate_limited \d/);

    // The profiled job name has a link to its latest profile, which downloads a V8 CPU profile.
    const link = page.locator('section[data-queue="reports"] table.jobs tbody tr', { hasText: 'thumbnail' }).locator('a.profile');
    await expect.poll(() => link.count(), { timeout: 30_000 }).toBe(1);
    const response = await page.request.get(new URL((await link.getAttribute('href'))!, url).href);
    expect(response.status()).toBe(200);
    expect(Object.keys((await response.json()) as object)).toEqual(expect.arrayContaining(['nodes', 'startTime', 'endTime', 'samples', 'timeDeltas']));
    await page.locator('nav button[data-q="crm"]').click();
    await page.screenshot({ path: join(ROOT, 'test-artifacts/dashboard-deferred.png'), fullPage: true });
  }, 120_000);
});
