import type { Report } from './report.js';
import { sectionMarkdown, sectionText, targetsText, verdict } from './render.js';
import { markdownHead } from './scenario.js';
import type { ScrapeSizeResult } from './scrape.js';
import { fmt } from './util.js';

export const SCRAPE_METHOD = [
  "On the filled sandbox of the size (the one the backup scenario leaves, else a fresh one): a warm-up `kbur backup` (discarded), then per run three `kbur backup --json`, 1 s apart: one while every agent's /metrics (its health address, `http://<node>:9443/metrics`) is fetched every second (still 15-60 times Prometheus's usual interval), one without, the order of these two alternating between runs (page cache), and one while every agent is scraped every 50 ms (a stress).",
  "Scrape latency: from the request to the whole body read (test/sandbox/prometheus.ts scrapeLatencies), of the agent that streamed the snapshot (the manifest's `etcd.node`), over the whole stressed backup; a refused or failed scrape counts as failed. Target: every scrape answered, the slowest under 100 ms.",
  "Backup wall time: spawn to exit of `kbur backup`. Target: nothing measurable, i.e. the median scraped every second differs from the median without by no more than the spread (max - min) of either's runs. The stressed backup's time is reported beside it, with no target.",
];

export function scrapeMissed(r: ScrapeSizeResult): string[] {
  if (r.error || !r.latencyMs || !r.wallSeconds) return [`scrape ${r.sizeMiB} MiB: no measurement (${r.error ?? 'no runs'})`];
  const out: string[] = [];
  if (!r.pass.latency)
    out.push(
      `scrape ${r.sizeMiB} MiB: slowest scrape ${fmt(r.latencyMs.max, 1)} ms (target < ${r.targets.scrapeMaxMs} ms), ${r.latencyMs.failed} failed`,
    );
  if (!r.pass.wallTime)
    out.push(
      `scrape ${r.sizeMiB} MiB: backup median ${fmt(r.wallSeconds.scraped.median)} s scraped vs ${fmt(r.wallSeconds.unscraped.median)} s not, ${fmt(r.wallSeconds.difference)} s apart, more than the runs' spread ${fmt(r.wallSeconds.spread)} s`,
    );
  return out;
}

function summaryRows(results: ScrapeSizeResult[]): { headers: string[]; rows: string[][] } {
  const headers = [
    'size',
    'scrapes',
    'failed',
    'median ms',
    'p95 ms',
    'max ms',
    'backup s scraped 1 s',
    'backup s not',
    'difference s',
    'backup s scraped 50 ms',
    'spread s',
    'result',
  ];
  const rows = results.map((r) => {
    const w = r.wallSeconds;
    const l = r.latencyMs;
    return [
      `${r.sizeMiB} MiB`,
      `${l?.count ?? '-'}`,
      `${l?.failed ?? '-'}`,
      fmt(l?.median, 1),
      fmt(l?.p95, 1),
      fmt(l?.max, 1),
      w ? `${fmt(w.scraped.median)} (${fmt(w.scraped.min)}-${fmt(w.scraped.max)})` : '-',
      w ? `${fmt(w.unscraped.median)} (${fmt(w.unscraped.min)}-${fmt(w.unscraped.max)})` : '-',
      fmt(w?.difference),
      w ? `${fmt(w.stressed.median)} (+${fmt(w.stressedDifference)})` : '-',
      fmt(w?.spread),
      verdict(r.error, { latency: r.pass.latency, 'wall time': r.pass.wallTime }),
    ];
  });
  return { headers, rows };
}

function runRows(r: ScrapeSizeResult): { headers: string[]; rows: string[][] } {
  const headers = [
    'run',
    'order',
    'node',
    'backup s scraped 1 s',
    'backup s not',
    'backup s scraped 50 ms',
    'scrapes',
    'failed',
    'median ms',
    'max ms',
  ];
  const rows = r.runs.map((x) => [
    `${x.run}`,
    x.order,
    x.node,
    fmt(x.scrapedSeconds),
    fmt(x.unscrapedSeconds),
    fmt(x.stressedSeconds),
    `${x.scrapes}`,
    `${x.failedScrapes}`,
    fmt(x.scrapeMedianMs, 1),
    fmt(x.scrapeMaxMs, 1),
  ]);
  return { headers, rows };
}

const headline = (r: ScrapeSizeResult): string =>
  `scrape ${r.sizeMiB} MiB: sandbox ${r.sandbox}, load average ${r.loadAverage.before.join(' ')} -> ${r.loadAverage.after.join(' ')}`;

export function scrapeText(report: Report): string[] {
  const section = report.scrape!;
  return sectionText({
    title: `kbur agent /metrics scraped every ${section.targets.everyMs} ms and every ${section.targets.stressEveryMs} ms during kbur backup (issue 14)`,
    summary: summaryRows(section.results),
    results: section.results,
    headline,
    runs: runRows,
    tail: targetsText(
      `targets: every scrape under ${section.targets.scrapeMaxMs} ms; backup wall time with a scraper within the runs' spread of without`,
      section.results.flatMap(scrapeMissed),
      'SCRAPE TARGETS MISSED:',
      'scrape targets met',
    ),
  });
}

export function scrapeMarkdown(report: Report): string[] {
  const section = report.scrape!;
  return sectionMarkdown({
    head: markdownHead(report, 'scrape', 'kbur agent metrics under load (scrape)'),
    target: `Targets: every scrape of the snapshotting agent's /metrics during \`kbur backup\` answered in under ${section.targets.scrapeMaxMs} ms while scraped every ${section.targets.stressEveryMs} ms; the backup's median wall time with a scraper every ${section.targets.everyMs} ms differs from the median without by no more than the spread of the runs. Backup times: median (min-max).`,
    summary: summaryRows(section.results),
    results: section.results,
    label: 'Scrape',
    describe: (r) => [`${headline(r)}.`],
    runs: runRows,
    result: { missed: section.results.flatMap(scrapeMissed), met: 'Scrape targets met.' },
    method: section.method,
  });
}
