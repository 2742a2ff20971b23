import type { Report } from './report.js';
import { SCRIPT_STEPS, type S3Large, type S3Section, type S3SizeResult } from './s3.js';
import { sectionMarkdown, sectionText, targetsText, verdict } from './render.js';
import { markdownHead } from './scenario.js';
import { fmt, markdownTable, table } from './util.js';

export const S3_METHOD = [
  "An S3-compatible server (test/sandbox/s3.ts: fauxqs behind SigV4 checks, its own process, its objects on this disk) on the sandbox network's .20 address, started for the scenario, honouring `If-None-Match: *` on PUT as AWS S3, MinIO and Ceph RGW do (fauxqs alone ignores it: kbur's lock would fall back to a lease object and wait 2 s for it to settle); an age key from `age-keygen`.",
  "kbur: `kbur --config kbur-s3.yaml backup --json`, the sandbox's kbur.yaml with `repository: {type: s3, bucket, prefix, endpoint, region, forcePathStyle: true, credentialsFile}`, `compression: zstd` and `encryption: {recipients: [<the age key's recipient>]}`: the snapshot and every node archive, compressed, encrypted and put as they stream.",
  "The operator's script, each step a process timed spawn to exit, the script's time their sum: `etcdctl snapshot save` of the member kbur snapshots (learned from a warm-up kbur backup) to a file, `zstd -3` (kbur's level) of it, `age -r <recipient>` of that, `s3cmd put` of the result to the same bucket (s3cmd's own config file: path-style, no SSL, SigV4). The script moves the snapshot only, kbur also the node archives.",
  'Per run both, 1 s apart, the order alternating; the bucket is emptied (s3cmd del --recursive, untimed) after each. ratio = kbur / script; target: median at most 1.0.',
  "Memory: peak RSS (VmHWM polled every 20 ms) of kbur's coordinator and of each of the script's processes; the snapshotting agent's VmHWM after the run (the peak over its life). Target: every process under 150 MiB.",
  "At each --large-sizes size: one kbur backup to S3 alone, its coordinator peak RSS and the agent's VmHWM: the memory stays flat with the size.",
];

export function s3Missed(r: S3SizeResult): string[] {
  if (r.error || !r.median || !r.max) return [`s3 ${r.sizeMiB} MiB: no measurement (${r.error ?? 'no runs'})`];
  const out: string[] = [];
  if (!r.pass.ratio) out.push(`s3 ${r.sizeMiB} MiB: median ratio kbur/script ${fmt(r.median.ratio, 3)} > ${r.targets.ratioMax}`);
  if (!r.pass.rss)
    out.push(
      `s3 ${r.sizeMiB} MiB: peak RSS at or over ${r.targets.rssMaxMiB} MiB: ${Object.entries(r.max)
        .filter(([, v]) => !(v < r.targets.rssMaxMiB))
        .map(([p, v]) => `${p} ${fmt(v, 1)} MiB`)
        .join(', ')}`,
    );
  return out;
}

/** What missed the targets, at the measured sizes and the large ones. */
const missed = (section: S3Section): string[] => [...section.results.flatMap(s3Missed), ...section.large.flatMap(largeMissed)];

const largeMissed = (l: S3Large): string[] =>
  l.error
    ? [`s3 ${l.sizeMiB} MiB (memory): no measurement (${l.error})`]
    : l.pass
      ? []
      : [`s3 ${l.sizeMiB} MiB (memory): coordinator ${fmt(l.peakRssMiB.coordinator, 1)} MiB, agent ${fmt(l.peakRssMiB.agent, 1)} MiB`];

function summaryRows(results: S3SizeResult[]): { headers: string[]; rows: string[][] } {
  const headers = [
    'size',
    'kbur s',
    'script s',
    ...SCRIPT_STEPS.map((s) => `${s} s`),
    'ratio',
    'coord RSS',
    'agent RSS',
    'script max RSS',
    'result',
  ];
  const rows = results.map((r) => [
    `${r.sizeMiB} MiB`,
    fmt(r.median?.kburSeconds),
    fmt(r.median?.scriptSeconds),
    ...SCRIPT_STEPS.map((s) => fmt(r.median?.steps[s])),
    fmt(r.median?.ratio, 3),
    `${fmt(r.max?.coordinator, 1)} MiB`,
    `${fmt(r.max?.agent, 1)} MiB`,
    r.max ? `${fmt(Math.max(...SCRIPT_STEPS.map((s) => r.max![s])), 1)} MiB` : '-',
    verdict(r.error, { ratio: r.pass.ratio, rss: r.pass.rss }),
  ]);
  return { headers, rows };
}

function runRows(r: S3SizeResult): { headers: string[]; rows: string[][] } {
  const headers = [
    'run',
    'order',
    'kbur s',
    'script s',
    'ratio',
    'kbur MiB put',
    'script MiB put',
    ...Object.keys(r.runs[0]?.peakRssMiB ?? {}).map((p) => `${p} RSS`),
  ];
  const rows = r.runs.map((x) => [
    `${x.run}`,
    x.order,
    fmt(x.kburSeconds),
    fmt(x.scriptSeconds),
    fmt(x.ratio, 3),
    fmt(x.kburObjectBytes / 1048576, 1),
    fmt(x.scriptObjectBytes / 1048576, 1),
    ...Object.values(x.peakRssMiB).map((v) => fmt(v, 1)),
  ]);
  return { headers, rows };
}

function largeRows(large: S3Large[]): { headers: string[]; rows: string[][] } {
  return {
    headers: ['size', 'kbur s', 'snapshot MiB', 'coord RSS', 'agent RSS', 'result'],
    rows: large.map((l) => [
      `${l.sizeMiB} MiB`,
      fmt(l.seconds),
      fmt(l.snapshotBytes / 1048576, 1),
      `${fmt(l.peakRssMiB.coordinator, 1)} MiB`,
      `${fmt(l.peakRssMiB.agent, 1)} MiB`,
      l.error ? 'ERROR' : l.pass ? 'pass' : 'FAIL (rss)',
    ]),
  };
}

const headline = (r: S3SizeResult): string =>
  `s3 ${r.sizeMiB} MiB: sandbox ${r.sandbox}, load average ${r.loadAverage.before.join(' ')} -> ${r.loadAverage.after.join(' ')}`;

export function s3Text(report: Report): string[] {
  const section = report.s3!;
  const large: string[] = [];
  if (section.large.length) {
    const l = largeRows(section.large);
    large.push('', 'one kbur backup to S3 per large size (memory):', ...table(l.headers, l.rows).map((x) => `  ${x}`));
    for (const x of section.large) if (x.error) large.push(`  ${x.sizeMiB} MiB ERROR: ${x.error}`);
  }
  return sectionText({
    title: 'kbur backup to S3 (zstd, age) against etcdctl snapshot save, zstd, age -r, s3cmd put (issue 12)',
    summary: summaryRows(section.results),
    results: section.results,
    headline,
    runs: runRows,
    tail: [
      ...large,
      ...targetsText(
        `targets: median kbur/script <= ${section.targets.ratioMax}, every process < ${section.targets.rssMaxMiB} MiB (large sizes too)`,
        missed(section),
        'S3 TARGETS MISSED:',
        's3 targets met',
      ),
    ],
  });
}

export function s3Markdown(report: Report): string[] {
  const section = report.s3!;
  const large: string[] = [];
  if (section.large.length) {
    const l = largeRows(section.large);
    large.push('', '## S3 memory at large sizes', '', ...markdownTable(l.headers, l.rows));
    for (const x of section.large) if (x.error) large.push('', `**ERROR** ${x.sizeMiB} MiB: ${x.error}`);
  }
  return sectionMarkdown({
    head: markdownHead(report, 's3', 'kbur backup to S3 benchmark'),
    target: `Targets: median wall time of \`kbur backup\` to S3 with zstd and age at most ${section.targets.ratioMax} times the operator's script (etcdctl snapshot save, zstd, age -r, s3cmd put); every process under ${section.targets.rssMaxMiB} MiB peak RSS, at the large sizes too. Times are medians; RSS is the maximum over runs.`,
    summary: summaryRows(section.results),
    results: section.results,
    label: 'S3',
    describe: (r) => [`${headline(r)}.`],
    runs: runRows,
    afterResults: large,
    result: { missed: missed(section), met: 'S3 targets met.' },
    method: section.method,
  });
}
