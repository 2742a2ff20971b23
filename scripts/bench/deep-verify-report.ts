import type { DeepVerifySizeResult } from './deep-verify.js';
import type { Report } from './report.js';
import { sectionMarkdown, sectionText, targetsText, verdict } from './render.js';
import { markdownHead } from './scenario.js';
import { fmt } from './util.js';

export const DEEP_VERIFY_METHOD = [
  "On the filled sandbox of the size: one `kbur backup` kept in the local repository, with the sandbox's kbur.yaml plus `scratch: {dir: <the bench's folder>}`.",
  "kbur: `kbur verify --deep <id>`, spawn to exit, exit 0 required: everything `kbur verify` checks (the snapshot beside its restore, the other artifacts while the scratch etcd works), the snapshot restored into a scratch etcd on this host with the same tool, etcd started from it (GOGC=400, --unsafe-no-fsync, a 2 ms tick, on etcd 3.4 without the restore tool's v2 snapshot file: nothing of it is kept), its revision, key count, keys by resource and namespace compared with the manifest, the scratch etcd stopped and its folder removed.",
  "Two shapes at the size: the sandbox's fill (1 MiB values outside /registry/, which kbur counts with a count_only range, no value read), and, reported as `kubernetes-shaped`, a snapshot of about the same size made of Kubernetes objects (1 MiB configmaps in one namespace and its namespace object, written into a one-member etcd of its own and saved with `etcdctl snapshot save`), brought in with `kbur import` (untimed): etcd reads the value of every key a range returns (keys_only too), so kbur walks such keys by resource and namespace, counting rather than reading where the db holds 32 KiB or more per key.",
  'etcdctl: `etcdctl snapshot restore <the same snapshot file in the repository> --data-dir <new dir>` alone (env: PATH and ETCDCTL_API=3 only), its data dir removed after (untimed).',
  'Per run both, 1 s apart, the order alternating. ratio = kbur / etcdctl; target: median at most 1.5. Coordinator peak RSS: VmHWM polled every 20 ms (under 150 MiB).',
];

export function deepVerifyMissed(r: DeepVerifySizeResult): string[] {
  const what = `deep-verify ${r.sizeMiB} MiB${r.shape ? ` ${r.shape}-shaped` : ''}`;
  if (r.error || !r.median || !r.max) return [`${what}: no measurement (${r.error ?? 'no runs'})`];
  const out: string[] = [];
  if (!r.pass.ratio) out.push(`${what}: median ratio ${fmt(r.median.ratio, 3)} > ${r.targets.ratioMax}`);
  if (!r.pass.rss) out.push(`${what}: coordinator peak RSS ${fmt(r.max.coordinatorPeakRssMiB, 1)} MiB`);
  return out;
}

function summaryRows(results: DeepVerifySizeResult[]): { headers: string[]; rows: string[][] } {
  return {
    headers: ['size', 'snapshot MiB', 'kbur verify --deep s', 'etcdctl snapshot restore s', 'ratio', 'coord RSS', 'result'],
    rows: results.map((r) => [
      `${r.sizeMiB} MiB${r.shape ? ` ${r.shape}-shaped` : ''}`,
      fmt(r.snapshotMiB, 1),
      fmt(r.median?.kburSeconds),
      fmt(r.median?.etcdctlSeconds),
      fmt(r.median?.ratio, 3),
      `${fmt(r.max?.coordinatorPeakRssMiB, 1)} MiB`,
      verdict(r.error, { ratio: r.pass.ratio, rss: r.pass.rss }),
    ]),
  };
}

function runRows(r: DeepVerifySizeResult): { headers: string[]; rows: string[][] } {
  return {
    headers: ['run', 'order', 'kbur s', 'etcdctl s', 'ratio', 'coord RSS', 'etcdctl RSS', 'kbur CPU s', 'etcdctl CPU s'],
    rows: r.runs.map((x) => [
      `${x.run}`,
      x.order,
      fmt(x.kburSeconds),
      fmt(x.etcdctlSeconds),
      fmt(x.ratio, 3),
      fmt(x.coordinatorPeakRssMiB, 1),
      fmt(x.etcdctlPeakRssMiB, 1),
      fmt(x.cpuSeconds.kbur),
      fmt(x.cpuSeconds.etcdctl),
    ]),
  };
}

const headline = (r: DeepVerifySizeResult): string =>
  `deep-verify ${r.sizeMiB} MiB${r.shape ? ` ${r.shape}-shaped` : ''}: backup ${r.backupId || '-'}, sandbox ${r.sandbox}, load average ${r.loadAverage.before.join(' ')} -> ${r.loadAverage.after.join(' ')}`;

export function deepVerifyText(report: Report): string[] {
  const section = report.deepVerify!;
  return sectionText({
    title: 'kbur verify --deep against etcdctl snapshot restore of the same snapshot (issue 16)',
    summary: summaryRows(section.results),
    results: section.results,
    headline,
    runs: runRows,
    tail: targetsText(
      `target: median kbur verify --deep / etcdctl snapshot restore <= ${section.targets.ratioMax}, coordinator < ${section.targets.rssMaxMiB} MiB`,
      section.results.flatMap(deepVerifyMissed),
      'DEEP-VERIFY TARGETS MISSED:',
      'deep-verify target met',
    ),
  });
}

export function deepVerifyMarkdown(report: Report): string[] {
  const section = report.deepVerify!;
  return sectionMarkdown({
    head: markdownHead(report, 'deep-verify', 'kbur verify --deep benchmark'),
    target: `Target: median wall time of \`kbur verify --deep\` at most ${section.targets.ratioMax} times \`etcdctl snapshot restore\` alone of the same snapshot; coordinator peak RSS under ${section.targets.rssMaxMiB} MiB. Times are medians; RSS is the maximum over runs.`,
    summary: summaryRows(section.results),
    results: section.results,
    label: 'Deep verify',
    describe: (r) => [`${headline(r)}.`],
    runs: runRows,
    result: { missed: section.results.flatMap(deepVerifyMissed), met: 'Deep verify target met.' },
    method: section.method,
  });
}
