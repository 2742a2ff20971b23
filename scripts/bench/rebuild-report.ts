import { REBUILD_MANUAL_STEPS, type RebuildSizeResult } from './rebuild.js';
import { KBUR_MODES, KBUR_MODE_TEXT } from './restore-kbur.js';
import type { Report } from './report.js';
import { sectionMarkdown, sectionText, targetsText, verdict } from './render.js';
import { markdownHead } from './scenario.js';
import { fmt } from './util.js';

export const REBUILD_METHOD = [
  "On the filled sandbox of the size (reused, then left for no later scenario): two `kbur backup --json` kept, both with the snapshot and each node's /etc/kubernetes archive, plain: first with the sandbox's kbur.yaml (no snapshot copies: the upload mode), then with `kbur-copies.yaml`, the same plus `backup: {copySnapshotToNodes: true}` (each agent keeps the snapshot as `<stateDir>/snapshots/<backup-id>.db`, the newest only: the copies mode). Both hold the same data (key counts checked).",
  "Before each procedure, untimed: every node reset as `kubeadm reset` leaves it (test/sandbox resetNode, as the rebuild integration tests do: static pod manifests removed and the pods stopped, manifests/, pki/ and the etcd data dir emptied, kubeadm's kubeconfigs deleted; the agents and the kubelet keep running, and the agent's state dir, /var/lib/kbur on a real node, is not kubeadm's to touch), then every node's kept copy checked in place (size), then 1 s.",
  'Every run rebuilds three times, the order rotating: run 1 manual, copies, upload; run 2 copies, upload, manual; run 3 upload, manual, copies; and so on.',
  "kbur, copies kept on the nodes (the target's mode): `kbur --config kbur-copies.yaml restore <copies backup> --with-kubernetes-dir --yes`, spawn to exit, exit 0 required; every node's `stage` line must say `from the copy this node keeps` (a fallback to the upload fails the run): each agent rereads its copy (sha256 and etcd hash) and stages it as a hard link; the archives go from the coordinator to the agents; each node's /etc/kubernetes put back, each member restored and started, quorum and keys checked, the control plane started.",
  "kbur, snapshot uploaded (what brand-new machines get, reported beside it): the same with the backup without copies; preflight checks the repository's copy, then the coordinator streams the snapshot to the three agents over gRPC with mTLS (3x the snapshot, one read fanned out); every `stage` line must say `bytes uploaded`. The nodes share one 2-core machine: the upload costs CPU (TLS, hashing) there, not network time.",
  "Manual, the nodes in parallel as an operator with a shell on each would (from the copies backup): `cp` of the snapshot and of the node's archive from the repository onto the node (local, same disk); `tar -xpf` of the archive into /etc/kubernetes but for ./manifests (else the kubelet starts etcd on an empty data dir); `etcdctl snapshot restore --name --initial-cluster --initial-cluster-token <new> --initial-advertise-peer-urls --data-dir <the data dir>` of each member; `tar -xpf` of ./manifests; then `etcdctl endpoint health` polled until all three pass.",
  "ratio = kbur / manual (whole, its cp included, for both modes); target: median of the copies mode at most 1.3. After each procedure, untimed: all members healthy, a new cluster id, the same members, the backup's key count on every member; then what the restore left (journals, moved-aside files, old data dirs) is deleted; the agents' snapshot copies are not.",
];

export function rebuildMissed(r: RebuildSizeResult): string[] {
  if (r.error || !r.median) return [`rebuild ${r.sizeMiB} MiB: no measurement (${r.error ?? 'no runs'})`];
  const out: string[] = [];
  if (!r.pass.ratio)
    out.push(
      `rebuild ${r.sizeMiB} MiB: median ratio ${KBUR_MODE_TEXT[r.targets.kburMode]} / manual ${fmt(r.median.kbur[r.targets.kburMode].ratio, 3)} > ${r.targets.ratioMax}`,
    );
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
      ...KBUR_MODES.flatMap((m) => [`kbur ${m} s`, `ratio ${m}`, `CPU-s coord/agents/children ${m}`]),
      'coord RSS',
      'result',
    ],
    rows: results.map((r) => [
      `${r.sizeMiB} MiB`,
      fmt(r.snapshotMiB, 1),
      fmt(r.median?.manualSeconds),
      ...REBUILD_MANUAL_STEPS.map((s) => fmt(r.median?.manualSteps[s])),
      ...KBUR_MODES.flatMap((m) => {
        const k = r.median?.kbur[m];
        return [
          fmt(k?.seconds),
          fmt(k?.ratio, 3),
          k ? `${fmt(k.cpuSeconds.coordinator)}/${fmt(k.cpuSeconds.agents)}/${fmt(k.cpuSeconds.agentChildren)}` : '-',
        ];
      }),
      `${fmt(r.max?.coordinatorPeakRssMiB, 1)} MiB`,
      verdict(r.error, { ratio: r.pass.ratio, check: r.pass.checks }),
    ]),
  };
}

function runRows(r: RebuildSizeResult): { headers: string[]; rows: string[][] } {
  return {
    headers: ['run', 'order', 'manual s', ...KBUR_MODES.flatMap((m) => [`kbur ${m} s`, `ratio ${m}`, `steps ${m}`]), 'restore ids'],
    rows: r.runs.map((x) => [
      `${x.run}`,
      x.order.join(', '),
      fmt(x.manualSeconds),
      ...KBUR_MODES.flatMap((m) => [
        fmt(x.kbur[m].seconds),
        fmt(x.kbur[m].ratio, 3),
        Object.entries(x.kbur[m].steps)
          .map(([s, t]) => `${s} ${fmt(t)}`)
          .join(', '),
      ]),
      KBUR_MODES.map((m) => x.kbur[m].restoreId).join(', '),
    ]),
  };
}

const headline = (r: RebuildSizeResult): string =>
  `rebuild ${r.sizeMiB} MiB: backups ${KBUR_MODES.map((m) => `${m} ${r.backups[m] ?? '-'}`).join(', ')}, sandbox ${r.sandbox}, load average ${r.loadAverage.before.join(' ')} -> ${r.loadAverage.after.join(' ')}`;

export function rebuildText(report: Report): string[] {
  const section = report.rebuild!;
  return sectionText({
    title: 'kbur restore --with-kubernetes-dir onto three reset nodes against the manual rebuild (issue 11)',
    summary: summaryRows(section.results),
    results: section.results,
    headline,
    runs: runRows,
    tail: targetsText(
      `target: median ${KBUR_MODE_TEXT[section.targets.kburMode]} / manual <= ${section.targets.ratioMax} (the upload reported beside it), every rebuilt cluster checked`,
      section.results.flatMap(rebuildMissed),
      'REBUILD TARGETS MISSED:',
      'rebuild target met',
    ),
  });
}

export function rebuildMarkdown(report: Report): string[] {
  const section = report.rebuild!;
  return sectionMarkdown({
    head: markdownHead(report, 'rebuild', 'kbur rebuild benchmark'),
    target: `Target: median time of \`kbur restore ID --with-kubernetes-dir --yes\` rebuilding three nodes reset as \`kubeadm reset\` leaves them, from the snapshot copies they kept (${KBUR_MODE_TEXT[section.targets.kburMode]}), at most ${section.targets.ratioMax} times the manual rebuild (snapshot and archives copied on, archives unpacked, \`etcdctl snapshot restore\` of each member, started); the rebuild with the snapshot uploaded (brand-new machines) is reported beside it; every rebuilt cluster checked. Times are medians; RSS is the maximum over runs.`,
    summary: summaryRows(section.results),
    results: section.results,
    label: 'Rebuild',
    describe: (r) => [`${headline(r)}.`],
    runs: runRows,
    afterRuns: (r) => [
      '',
      'Checks after each rebuild:',
      '',
      ...r.runs.map(
        (run) =>
          `- run ${run.run}: manual: ${run.checks.manual}; ${KBUR_MODES.map((m) => `${KBUR_MODE_TEXT[m]}: ${run.kbur[m].check}`).join('; ')}`,
      ),
    ],
    result: { missed: section.results.flatMap(rebuildMissed), met: 'Rebuild target met.' },
    method: section.method,
  });
}
