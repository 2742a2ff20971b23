/**
 * The scrape scenario (issue 14): while `kbur backup` streams the snapshot, the agents' /metrics are
 * scraped every 50 ms; the snapshotting agent's scrape latencies, and the backup's wall time with a
 * scraper against without one, in alternating runs on the same sandbox.
 */
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { scrapeLatencies } from '../../test/sandbox/prometheus.js';
import { kburBackup } from './backup.js';
import { SCRAPE_METHOD, scrapeMarkdown, scrapeText } from './scrape-report.js';
import type { Context, Scenario } from './scenario.js';
import { log, median, round } from './util.js';

export const SCRAPE_TARGETS = { scrapeMaxMs: 100, everyMs: 50 } as const;

export interface ScrapeRun {
  run: number;
  order: 'scraped-first' | 'unscraped-first';
  /** The member kbur snapshotted in the scraped backup: its agent is the one whose scrapes count. */
  node: string;
  scrapedSeconds: number;
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
  wallSeconds: { scraped: Spread; unscraped: Spread; difference: number; spread: number } | undefined;
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
    const unscraped = spread(r.runs.map((x) => x.unscrapedSeconds));
    r.wallSeconds = {
      scraped,
      unscraped,
      difference: round(scraped.median - unscraped.median),
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
    let scraped: { seconds: number; node: string; times: number[] } | undefined;
    let unscraped: number | undefined;
    const withScraper = async (): Promise<void> => {
      const stop = new AbortController();
      const onAbort = (): void => stop.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      // Every agent is scraped, as Prometheus would: which one snapshots is known only from the manifest.
      const scrapes = sandbox.nodes.map((n) => scrapeLatencies(`http://${n.healthAddress}/metrics`, SCRAPE_TARGETS.everyMs, stop.signal));
      try {
        const got = await kburBackup(sandbox, signal);
        stop.abort();
        const node = got.manifest.etcd!.node;
        const times = (await Promise.all(scrapes))[sandbox.nodes.findIndex((n) => n.name === node)] ?? [];
        scraped = { seconds: got.measured.seconds, node, times };
      } finally {
        stop.abort();
        signal.removeEventListener('abort', onAbort);
        await Promise.allSettled(scrapes);
      }
    };
    const withoutScraper = async (): Promise<void> => {
      unscraped = (await kburBackup(sandbox, signal)).measured.seconds;
    };
    for (const step of order === 'scraped-first' ? [withScraper, withoutScraper] : [withoutScraper, withScraper]) {
      await sleep(1_000, undefined, { signal });
      await step();
    }
    if (!scraped || unscraped === undefined) throw new Error(`scrape run ${i + 1} did not measure both backups`);
    all.push(...scraped.times);
    const ok = scraped.times.filter(Number.isFinite).sort((a, b) => a - b);
    const run: ScrapeRun = {
      run: i + 1,
      order,
      node: scraped.node,
      scrapedSeconds: round(scraped.seconds),
      unscrapedSeconds: round(unscraped),
      scrapes: scraped.times.length,
      failedScrapes: scraped.times.length - ok.length,
      scrapeMedianMs: ok.length ? round(median(ok), 1) : NaN,
      scrapeMaxMs: ok.length ? round(ok.at(-1)!, 1) : NaN,
    };
    r.runs.push(run);
    log(
      `${sizeMiB} MiB scrape run ${i + 1}/${opts.runs} (${order}): backup ${run.scrapedSeconds.toFixed(2)} s scraped, ${run.unscrapedSeconds.toFixed(2)} s not; ` +
        `${run.scrapes} scrapes of ${run.node} (${run.failedScrapes} failed), median ${run.scrapeMedianMs} ms, max ${run.scrapeMaxMs} ms`,
    );
  }
}

export const scrapeScenario: Scenario = {
  name: 'scrape',
  title: "the snapshotting agent's /metrics scraped every 50 ms during `kbur backup`",
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
    try {
      await benchScrape(ctx, r, all);
    } catch (err) {
      r.error = (err as Error).message;
      throw err;
    } finally {
      finishScrapeResult(r, all);
    }
  },
  text: (report) => (report.scrape ? scrapeText(report) : []),
  markdown: (report) => (report.scrape ? scrapeMarkdown(report) : []),
};
