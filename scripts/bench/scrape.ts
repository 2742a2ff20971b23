/**
 * The scrape scenario (issue 14): while `kbur backup` streams the snapshot, every agent's /metrics is
 * scraped every 50 ms (a stress: the snapshotting agent's scrape latencies) and, in another backup,
 * every second (still 15-60 times Prometheus's usual interval: what a scrape costs the backup),
 * against a backup without a scraper, in rotating order on the same sandbox.
 */
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { scrapeLatencies } from '../../test/sandbox/prometheus.js';
import { kburBackup } from './backup.js';
import { SCRAPE_METHOD, scrapeMarkdown, scrapeText } from './scrape-report.js';
import { type Context, type Scenario, measureInto } from './scenario.js';
import { log, median, round } from './util.js';

export const SCRAPE_TARGETS = { scrapeMaxMs: 100, everyMs: 1000, stressEveryMs: 50 } as const;

export interface ScrapeRun {
  run: number;
  order: 'scraped-first' | 'unscraped-first';
  /** The member kbur snapshotted in the scraped backup: its agent is the one whose scrapes count. */
  node: string;
  /** Scraped every `everyMs`: the wall-time target's backup. */
  scrapedSeconds: number;
  /** Scraped every `stressEveryMs`: the latencies' backup; its wall time is reported, with no target. */
  stressedSeconds: number;
  unscrapedSeconds: number;
  scrapes: number;
  failedScrapes: number;
  scrapeMedianMs: number;
  scrapeMaxMs: number;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface ScrapeSizeResult {
  sizeMiB: number;
  sandbox: 'reused' | 'fresh';
  loadAverage: { before: number[]; after: number[] };
  runs: ScrapeRun[];
  /** Every scrape of the snapshotting agent over all runs; a failed scrape counts in `failed`, not in the times. */
  latencyMs: { count: number; failed: number; median: number; p95: number; max: number } | undefined;
  /** Backup wall time over the runs, with a scraper and without, and the difference of the medians. */
  wallSeconds:
    { scraped: Spread; stressed: Spread; unscraped: Spread; difference: number; stressedDifference: number; spread: number } | undefined;
  targets: typeof SCRAPE_TARGETS;
  /** latency: every scrape answered, the slowest under the target; wallTime: the medians differ by no more than the runs' spread. */
  pass: { latency: boolean; wallTime: boolean };
  error?: string;
}

export interface ScrapeSection {
  targets: typeof SCRAPE_TARGETS;
  method: string[];
  results: ScrapeSizeResult[];
}

const spread = (xs: number[]): Spread => ({ median: round(median(xs)), min: round(Math.min(...xs)), max: round(Math.max(...xs)) });

/** The p-th percentile (nearest rank) of sorted values. */
export const percentile = (sorted: number[], p: number): number => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;

export function finishScrapeResult(r: ScrapeSizeResult, allLatencies: number[]): void {
  r.loadAverage.after = loadavg().map((x) => round(x, 2));
  const ok = allLatencies.filter(Number.isFinite).sort((a, b) => a - b);
  r.latencyMs = ok.length
    ? {
        count: allLatencies.length,
        failed: allLatencies.length - ok.length,
        median: round(median(ok), 1),
        p95: round(percentile(ok, 95), 1),
        max: round(ok.at(-1)!, 1),
      }
    : undefined;
  if (r.runs.length) {
    const scraped = spread(r.runs.map((x) => x.scrapedSeconds));
    const stressed = spread(r.runs.map((x) => x.stressedSeconds));
    const unscraped = spread(r.runs.map((x) => x.unscrapedSeconds));
    r.wallSeconds = {
      scraped,
      stressed,
      unscraped,
      difference: round(scraped.median - unscraped.median),
      stressedDifference: round(stressed.median - unscraped.median),
      spread: round(Math.max(scraped.max - scraped.min, unscraped.max - unscraped.min)),
    };
  }
  r.pass = {
    latency: r.error === undefined && r.latencyMs !== undefined && r.latencyMs.failed === 0 && r.latencyMs.max < SCRAPE_TARGETS.scrapeMaxMs,
    wallTime: r.error === undefined && r.wallSeconds !== undefined && Math.abs(r.wallSeconds.difference) <= r.wallSeconds.spread,
  };
}

async function benchScrape(ctx: Context, r: ScrapeSizeResult, all: number[]): Promise<void> {
  const { sizeMiB, opts } = ctx;
  const signal = ctx.state.abort.signal;
  const { filled, reused } = await ctx.filled();
  r.sandbox = reused ? 'reused' : 'fresh';
  const { sandbox } = filled;
  log(`${sizeMiB} MiB scrape: warm-up kbur backup (discarded)`);
  await kburBackup(sandbox, signal);
  for (let i = 0; i < opts.runs; i++) {
    const order = i % 2 === 0 ? 'scraped-first' : 'unscraped-first';
    const got: { scraped?: { seconds: number; node: string; times: number[] }; stressed?: typeof got.scraped; unscraped?: number } = {};
    const withScraper = async (everyMs: number, into: 'scraped' | 'stressed'): Promise<void> => {
      const stop = new AbortController();
      const onAbort = (): void => stop.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      // Every agent is scraped, as Prometheus would: which one snapshots is known only from the manifest.
      const scrapes = sandbox.nodes.map((n) => scrapeLatencies(`http://${n.healthAddress}/metrics`, everyMs, stop.signal));
      try {
        const backup = await kburBackup(sandbox, signal);
        stop.abort();
        const node = backup.manifest.etcd!.node;
        const times = (await Promise.all(scrapes))[sandbox.nodes.findIndex((n) => n.name === node)] ?? [];
        got[into] = { seconds: backup.measured.seconds, node, times };
      } finally {
        stop.abort();
        signal.removeEventListener('abort', onAbort);
        await Promise.allSettled(scrapes);
      }
    };
    const withoutScraper = async (): Promise<void> => {
      got.unscraped = (await kburBackup(sandbox, signal)).measured.seconds;
    };
    const paced = (): Promise<void> => withScraper(SCRAPE_TARGETS.everyMs, 'scraped');
    const stress = (): Promise<void> => withScraper(SCRAPE_TARGETS.stressEveryMs, 'stressed');
    for (const step of order === 'scraped-first' ? [paced, withoutScraper, stress] : [withoutScraper, paced, stress]) {
      await sleep(1_000, undefined, { signal });
      await step();
    }
    const { scraped, stressed, unscraped } = got;
    if (!scraped || !stressed || unscraped === undefined) throw new Error(`scrape run ${i + 1} did not measure all three backups`);
    all.push(...stressed.times);
    const ok = stressed.times.filter(Number.isFinite).sort((a, b) => a - b);
    const run: ScrapeRun = {
      run: i + 1,
      order,
      node: stressed.node,
      scrapedSeconds: round(scraped.seconds),
      stressedSeconds: round(stressed.seconds),
      unscrapedSeconds: round(unscraped),
      scrapes: stressed.times.length,
      failedScrapes: stressed.times.length - ok.length,
      scrapeMedianMs: ok.length ? round(median(ok), 1) : NaN,
      scrapeMaxMs: ok.length ? round(ok.at(-1)!, 1) : NaN,
    };
    r.runs.push(run);
    log(
      `${sizeMiB} MiB scrape run ${i + 1}/${opts.runs} (${order}): backup ${run.scrapedSeconds.toFixed(2)} s scraped every 1 s, ${run.stressedSeconds.toFixed(2)} s every 50 ms, ${run.unscrapedSeconds.toFixed(2)} s not; ` +
        `${run.scrapes} scrapes of ${run.node} (${run.failedScrapes} failed), median ${run.scrapeMedianMs} ms, max ${run.scrapeMaxMs} ms`,
    );
  }
}

export const scrapeScenario: Scenario = {
  name: 'scrape',
  title: "the agents' /metrics scraped every second and every 50 ms during `kbur backup`",
  missing: async () => undefined,
  sizes: (opts) => [opts.size],
  async run(ctx) {
    const section = (ctx.report.scrape ??= { targets: SCRAPE_TARGETS, method: SCRAPE_METHOD, results: [] });
    const r: ScrapeSizeResult = {
      sizeMiB: ctx.sizeMiB,
      sandbox: 'fresh',
      loadAverage: { before: loadavg().map((x) => round(x, 2)), after: [] },
      runs: [],
      latencyMs: undefined,
      wallSeconds: undefined,
      targets: SCRAPE_TARGETS,
      pass: { latency: false, wallTime: false },
    };
    section.results.push(r);
    const all: number[] = [];
    await measureInto(
      r,
      () => benchScrape(ctx, r, all),
      (x) => finishScrapeResult(x, all),
    );
  },
  text: (report) => (report.scrape ? scrapeText(report) : []),
  markdown: (report) => (report.scrape ? scrapeMarkdown(report) : []),
};
