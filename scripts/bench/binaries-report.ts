import { KINDS, type BinariesSizeResult } from './binaries.js';
import type { Report } from './report.js';
import { sectionMarkdown, sectionText } from './render.js';
import { markdownHead } from './scenario.js';
import { fmt, toMiB } from './util.js';

export const BINARIES_METHOD = [
  "sea: `dist/package/kbur`, the single executable `npm run package` makes (this Node, stripped, with the bundle and its V8 code cache injected; the shebang's flags are its execArgv). bundle: today's `node <NODE_FLAGS> dist/coordinator/kbur.cjs` (the code-cache loader of dist/coordinator/kbur-bundle.cjs).",
  "On the filled sandbox of the size, its agents as the sandbox starts them (node dist/agent/bin.js: the agent's own executable is sized, not timed). One warm-up `kbur backup --json` of each (discarded), then per run one of each, 1 s apart, the order alternating.",
  "First byte: from spawn until the backup's snapshot file in the local repository (`<repo>/<cluster>/backups/<new id>/etcd/snapshot*`, its `.part` while it streams) holds a byte, the repository looked at every 2 ms: the coordinator's start, config, TLS to the agents, preflight and node info, and the agent's snapshot call until etcd's first bytes arrive. Total: spawn to exit. Peak RSS: VmHWM polled every 20 ms.",
  "Sizes: the executables alone (each runs with no Node installed); the bundle's three files, beside the Node binary they need. No target: reported beside each other.",
];

const sum = (files: Record<string, number>): number => Object.values(files).reduce((a, b) => a + b, 0);

function summaryRows(results: BinariesSizeResult[]): { headers: string[]; rows: string[][] } {
  return {
    headers: [
      'size',
      'first byte s sea',
      'first byte s bundle',
      'backup s sea',
      'backup s bundle',
      'RSS sea',
      'RSS bundle',
      'kbur MiB sea',
      'kbur-agent MiB sea',
      'bundle MiB (+ node)',
    ],
    rows: results.map((r) => [
      `${r.sizeMiB} MiB`,
      fmt(r.median?.firstByteSeconds.sea, 3),
      fmt(r.median?.firstByteSeconds.bundle, 3),
      fmt(r.median?.seconds.sea),
      fmt(r.median?.seconds.bundle),
      `${fmt(r.max?.peakRssMiB.sea, 1)} MiB`,
      `${fmt(r.max?.peakRssMiB.bundle, 1)} MiB`,
      fmt(r.files.sea.kbur === undefined ? undefined : toMiB(r.files.sea.kbur), 1),
      fmt(r.files.sea['kbur-agent'] === undefined ? undefined : toMiB(r.files.sea['kbur-agent']), 1),
      r.files.node.bytes ? `${fmt(toMiB(sum(r.files.bundle)), 1)} (+ ${fmt(toMiB(r.files.node.bytes), 1)})` : '-',
    ]),
  };
}

function runRows(r: BinariesSizeResult): { headers: string[]; rows: string[][] } {
  return {
    headers: ['run', 'order', ...KINDS.flatMap((k) => [`first byte s ${k}`, `backup s ${k}`, `RSS ${k}`])],
    rows: r.runs.map((x) => [
      `${x.run}`,
      x.order.join(', '),
      ...KINDS.flatMap((k) => [fmt(x.firstByteSeconds[k], 3), fmt(x.seconds[k]), fmt(x.peakRssMiB[k], 1)]),
    ]),
  };
}

const headline = (r: BinariesSizeResult): string =>
  `binaries ${r.sizeMiB} MiB: sandbox ${r.sandbox}; files: ${Object.entries(r.files.sea)
    .map(([f, b]) => `${f} ${b} B`)
    .join(', ')}; bundle ${Object.entries(r.files.bundle)
    .map(([f, b]) => `${f} ${b} B`)
    .join(', ')}, node ${r.files.node.bytes} B; load average ${r.loadAverage.before.join(' ')} -> ${r.loadAverage.after.join(' ')}`;

export function binariesText(report: Report): string[] {
  const section = report.binaries!;
  return sectionText({
    title: "kbur backup as the single executable (sea) against today's bundle: start to first byte, size (issue 15)",
    summary: summaryRows(section.results),
    results: section.results,
    headline,
    runs: runRows,
    tail: ['', 'no target: reported beside each other'],
  });
}

export function binariesMarkdown(report: Report): string[] {
  const section = report.binaries!;
  return sectionMarkdown({
    head: markdownHead(report, 'binaries', 'kbur single executables benchmark'),
    target:
      "`kbur backup` as the single executable against today's bundle: time from spawn to the snapshot's first byte in the repository, and to exit (medians), peak RSS (maximum over runs), and the files' sizes. No target.",
    summary: summaryRows(section.results),
    results: section.results,
    label: 'Binaries',
    describe: (r) => [`${headline(r)}.`],
    runs: runRows,
    method: section.method,
  });
}
