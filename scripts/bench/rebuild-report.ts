import { REBUILD_MANUAL_STEPS, type RebuildSizeResult } from './rebuild.js';
import type { Report } from './report.js';
import { markdownHead } from './scenario.js';
import { fmt, markdownTable, table } from './util.js';

export const REBUILD_METHOD = [
  "On the filled sandbox of the size (reused, then left for no later scenario): one `kbur backup` kept (the sandbox's kbur.yaml: snapshot and each node's /etc/kubernetes archive, plain).",
  "Before each procedure, untimed: every node reset as `kubeadm reset` leaves it (test/sandbox resetNode, as the rebuild integration tests do: static pod manifests removed and the pods stopped, manifests/, pki/ and the etcd data dir emptied, kubeadm's kubeconfigs deleted; the agents and the kubelet keep running), then 1 s.",
  "kbur: `kbur restore <id> --with-kubernetes-dir --yes`, spawn to exit, exit 0 required: the archives and the snapshot uploaded to the agents, each node's /etc/kubernetes put back, each member restored and started, quorum and keys checked, the control plane started.",
  "Manual, the nodes in parallel as an operator with a shell on each would: `cp` of the snapshot and of the node's archive onto the node (local, same disk); `tar -xpf` of the archive into /etc/kubernetes but for ./manifests (else the kubelet starts etcd on an empty data dir); `etcdctl snapshot restore --name --initial-cluster --initial-cluster-token <new> --initial-advertise-peer-urls --data-dir <the data dir>` of each member; `tar -xpf` of ./manifests; then `etcdctl endpoint health` polled until all three pass.",
  "The order alternates between runs. ratio = kbur / manual (whole); target: median at most 1.3. After each procedure, untimed: all members healthy, a new cluster id, the same members, the backup's key count on every member; then what the restore left (journals, moved-aside files) is deleted.",
];

const verdict = (r: RebuildSizeResult): string =>
  r.error
    ? 'ERROR'
    : r.pass.ratio && r.pass.checks
      ? 'pass'
      : `FAIL (${[!r.pass.ratio && 'ratio', !r.pass.checks && 'check'].filter(Boolean).join(', ')})`;

export function rebuildMissed(r: RebuildSizeResult): string[] {
  if (r.error || !r.median) return [`rebuild ${r.sizeMiB} MiB: no measurement (${r.error ?? 'no runs'})`];
  const out: string[] = [];
  if (!r.pass.ratio) out.push(`rebuild ${r.sizeMiB} MiB: median ratio kbur/manual ${fmt(r.median.ratio, 3)} > ${r.targets.ratioMax}`);
  if (!r.pass.checks) out.push(`rebuild ${r.sizeMiB} MiB: a rebuilt cluster failed its checks (see runs)`);
  return out;
}

function summaryRows(results: RebuildSizeResult[]): { headers: string[]; rows: string[][] } {
  return {
    headers: [
      'size',
      'snapshot MiB',
      'manual s',
      ...REBUILD_MANUAL_STEPS.map((s) => `manual ${s} s`),
      'kbur s',
      'ratio',
      'coord RSS',
      'result',
    ],
    rows: results.map((r) => [
      `${r.sizeMiB} MiB`,
      fmt(r.snapshotMiB, 1),
      fmt(r.median?.manualSeconds),
      ...REBUILD_MANUAL_STEPS.map((s) => fmt(r.median?.manualSteps[s])),
      fmt(r.median?.kburSeconds),
      fmt(r.median?.ratio, 3),
      `${fmt(r.max?.coordinatorPeakRssMiB, 1)} MiB`,
      verdict(r),
    ]),
  };
}

function runRows(r: RebuildSizeResult): { headers: string[]; rows: string[][] } {
  return {
    headers: ['run', 'order', 'manual s', 'kbur s', 'ratio', 'coord RSS', 'restore id'],
    rows: r.runs.map((x) => [
      `${x.run}`,
      x.order.join(', '),
      fmt(x.manualSeconds),
      fmt(x.kburSeconds),
      fmt(x.ratio, 3),
      fmt(x.coordinatorPeakRssMiB, 1),
      x.restoreId,
    ]),
  };
}

const headline = (r: RebuildSizeResult): string =>
  `rebuild ${r.sizeMiB} MiB: backup ${r.backupId || '-'}, sandbox ${r.sandbox}, load average ${r.loadAverage.before.join(' ')} -> ${r.loadAverage.after.join(' ')}`;

export function rebuildText(report: Report): string[] {
  const section = report.rebuild!;
  const out = ['', 'kbur restore --with-kubernetes-dir onto three reset nodes against the manual rebuild (issue 11)', ''];
  const s = summaryRows(section.results);
  out.push(...table(s.headers, s.rows));
  for (const r of section.results) {
    out.push('', headline(r));
    if (r.error) out.push(`  ERROR: ${r.error}`);
    if (r.runs.length) {
      const t = runRows(r);
      out.push(...table(t.headers, t.rows).map((l) => `  ${l}`));
    }
    for (const run of r.runs) for (const p of run.problems) out.push(`  run ${run.run}: ${p}`);
  }
  const missed = section.results.flatMap(rebuildMissed);
  out.push(
    '',
    `target: median kbur / manual <= ${section.targets.ratioMax}, every rebuilt cluster checked`,
    missed.length ? `REBUILD TARGETS MISSED:\n${missed.map((f) => `  - ${f}`).join('\n')}` : 'rebuild target met',
  );
  return out;
}

export function rebuildMarkdown(report: Report): string[] {
  const section = report.rebuild!;
  const out = [
    ...markdownHead(report, 'rebuild', 'kbur rebuild benchmark'),
    `Target: median time of \`kbur restore ID --with-kubernetes-dir --yes\` rebuilding three nodes reset as \`kubeadm reset\` leaves them at most ${section.targets.ratioMax} times the manual rebuild (archives unpacked, \`etcdctl snapshot restore\` of each member, started); every rebuilt cluster checked. Times are medians; RSS is the maximum over runs.`,
    '',
  ];
  const s = summaryRows(section.results);
  out.push(...markdownTable(s.headers, s.rows));
  for (const r of section.results) {
    out.push('', `## Rebuild ${r.sizeMiB} MiB`, '', `${headline(r)}.`);
    if (r.error) out.push('', `**ERROR**: ${r.error}`);
    if (r.runs.length) {
      const t = runRows(r);
      out.push('', ...markdownTable(t.headers, t.rows), '', 'Checks after each rebuild:', '');
      for (const run of r.runs) out.push(`- run ${run.run}: manual: ${run.checks.manual}; kbur: ${run.checks.kbur}`);
    }
    for (const run of r.runs) for (const p of run.problems) out.push('', `- run ${run.run}: ${p}`);
  }
  const missed = section.results.flatMap(rebuildMissed);
  out.push('', '## Rebuild result', '', missed.length ? missed.map((f) => `- missed: ${f}`).join('\n') : 'Rebuild target met.');
  out.push('', '## Rebuild method', '', ...section.method.map((x) => `- ${x}`), '');
  return out;
}
