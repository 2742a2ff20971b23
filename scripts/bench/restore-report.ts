import { RESTORE_TARGETS, type RestoreBackup, type RestoreSection, type RestoreSizeResult } from './restore.js';
import { KBUR_MODES, KBUR_MODE_TEXT, KBUR_STEPS, type KburMode, type KburRestoreRunResult } from './restore-kbur.js';
import { MANUAL_STEPS } from './restore-manual.js';
import { missedText, sectionMarkdown, sectionText, verdict } from './render.js';
import { fmt, markdownTable, median, table } from './util.js';

export const RESTORE_METHOD = [
  "Per restore size: the backup benchmark's sandbox of that size after its runs (else a fresh one, filled the same way). Two `kbur backup --json` are taken and kept: first one with the sandbox's kbur.yaml, for the upload mode; then one with `kbur-copies.yaml`, the same config plus `backup: {copySnapshotToNodes: true}`, for the copies mode: after it each agent keeps its snapshot as `<stateDir>/snapshots/<backup-id>.db` (agents keep the newest `localSnapshots.keep` copies, 1 by default, so the first backup has none). Every `nodeCopies[].ok` of that backup must be true, and each node's copy is checked in place (size) before every procedure of every run.",
  'Every run restores three times, 1 s apart, the order rotating: run 1 manual, copies, upload; run 2 copies, upload, manual; run 3 upload, manual, copies; and so on. Both backups hold the same data (same key counts, checked).',
  "Manual: the procedure of etcd's recovery guide for a kubeadm static-pod cluster, timed from the first copy to all three endpoints healthy: `cp` of the snapshot into each node's dir, `etcd.yaml` moved out of `manifests/` into a folder beside it and each etcd waited for until it exited (followers in parallel, then the leader, as kbur does; the leader is looked up before the clock starts), `etcdctl snapshot restore <copy> --name --initial-cluster --initial-cluster-token <new> --initial-advertise-peer-urls --data-dir <new dir>` of the three members in parallel (env: PATH and ETCDCTL_API=3 only), old data dirs moved aside and the new ones in place, the manifests moved back, then `etcdctl endpoint health` polled every 200 ms until all three pass.",
  "The manual procedure's `copy` step is a local `cp` (same disk, no network) of the copies backup's snapshot into each node's dir; getting it onto real nodes (an operator's scp) would take longer. kbur with copies on the nodes starts from a snapshot each node already holds, so its ratio (the target's) is to the manual time without the copy step: the manual procedure from the snapshot on each node, as etcd's guide describes it. kbur with the snapshot uploaded moves 3× the snapshot over gRPC with mTLS before it stops anything; its ratio is to the whole manual time, local cp included.",
  "The manual procedure leaves kube-apiserver, kube-controller-manager and kube-scheduler running (the guide's minimum); kbur also moves their manifests out before etcd and back after its checks.",
  "kbur, both modes: `kbur --config <that backup's config> restore <backup-id> --yes`, spawn to exit, exit 0 required; all its checks are included (staging checked on each node, sha256 and etcd hash; a snapshot staged in the same run is not reread by `verify-staged`; quorum and member list, revision and key count).",
  "kbur, copies on the nodes (the target's mode): preflight finds a copy of the backup on every node and stops reading the repository's copy (plan note: every node keeps a copy of this snapshot); each agent rereads its copy (sha256 and etcd hash) and stages it as a hard link: no snapshot bytes cross the network. The run fails unless every node's `stage` line says `staged ... from the copy this node keeps`: a fallback to the upload is never reported as this mode.",
  "kbur, snapshot uploaded (no target, reported beside it): the backup without copies. Preflight checks the repository's copy (sha256 and etcd hash), then the coordinator reads the snapshot once and streams it to the three agents over gRPC with mTLS (3× the snapshot), each writing it and checking its sha256 and etcd hash. The run fails unless every node's `stage` line says `(<n> bytes uploaded`. The sandbox's nodes share one machine: the upload crosses loopback, so here it costs CPU (TLS, hashing) and disk writes, not network time.",
  "kbur downtime: from its first `stop <node>:` line to its `verify:` line on stdout (timestamps taken as lines arrive). The stop step starts before its first line (the followers' stop), right after the last `verify-staged` line; kbur pre-stop is from spawn to that line (preflight, plan, staging and its check). kbur stop→verify: from that line to the `verify:` line, the downtime with the followers' stop. A step's time runs from the previous step's last line to its own last line; `exit` is from the last line to the exit.",
  "After each procedure, untimed: all three endpoints healthy, one new cluster id, the same member list, and on every member (serializable reads) the key count equals the restored backup manifest's etcd.keyCount and the count under /registry/ equals the count taken right after that backup. Then the old data dirs, staged snapshots, the manual procedure's copies and kbur's journals are deleted; the snapshot copies the agents keep (`<stateDir>/snapshots/`) are not (the bench refuses to), so every run's copies mode restores from the copies made by the backup.",
  'Coordinator peak RSS and CPU: /proc polling every 20 ms. Agents CPU: utime+stime deltas of the three agents around each kbur run; their children (etcdctl snapshot restore, du) separately, from cutime+cstime. Agent RSS is the largest VmHWM of the three agents: the peak over their lives.',
];

export const KBUR_MODE_SHORT: Record<KburMode, string> = { copies: 'kbur copies', upload: 'kbur upload' };

export function failedRestoreTargets(r: RestoreSizeResult): string[] {
  if (r.error || !r.median) return [`${r.sizeMiB} MiB: no measurement (${r.error ?? 'no runs'})`];
  const out: string[] = [];
  const mode = RESTORE_TARGETS.kburMode;
  if (!r.pass.ratio)
    out.push(
      `${r.sizeMiB} MiB: median ratio ${KBUR_MODE_TEXT[mode]} / manual ${fmt(r.median.kbur[mode].ratio, 3)} > ${RESTORE_TARGETS.ratioMax}`,
    );
  if (!r.pass.checks) out.push(`${r.sizeMiB} MiB: a restored cluster failed its checks (see runs)`);
  return out;
}

/** The upload mode, beside the target: no verdict. */
export function uploadReference(r: RestoreSizeResult): string | undefined {
  const u = r.median?.kbur.upload;
  if (!u) return undefined;
  return `${r.sizeMiB} MiB: ${KBUR_MODE_TEXT.upload}, median ${fmt(u.seconds)} s, ratio to manual ${fmt(u.ratio, 3)}, pre-stop ${fmt(u.preStopSeconds)} s (no target)`;
}

export function restoreSummaryRows(section: RestoreSection): { headers: string[]; rows: string[][] } {
  const perMode = (label: string): string[] => [
    `${label} s`,
    `${label} ratio`,
    `${label} downtime s`,
    `${label} pre-stop s`,
    `${label} coord RSS`,
    `${label} coord CPU s`,
    `${label} agents CPU s`,
  ];
  const headers = ['size', 'snapshot MiB', 'manual s', 'manual s without copy', ...perMode('copies'), ...perMode('upload'), 'result'];
  const rows = section.results.map((r) => {
    const mode = (m: KburMode): string[] => {
      const k = r.median?.kbur[m];
      return [
        fmt(k?.seconds),
        fmt(k?.ratio, 3),
        fmt(k?.downtimeSeconds),
        fmt(k?.preStopSeconds),
        `${fmt(r.max?.coordinatorPeakRssMiB[m], 1)} MiB`,
        fmt(k?.cpuSeconds.coordinator),
        fmt(k?.cpuSeconds.agents),
      ];
    };
    return [
      `${r.sizeMiB} MiB`,
      fmt(r.backups.copies?.snapshotMiB, 1),
      fmt(r.median?.manual.seconds),
      fmt(r.runs.length ? median(r.runs.map((x) => x.manual.seconds - x.manual.steps.copy)) : undefined),
      ...mode('copies'),
      ...mode('upload'),
      verdict(r.error, { ratio: r.pass.ratio, check: r.pass.checks }),
    ];
  });
  return { headers, rows };
}

/** One row per run and kbur mode, beside the manual procedure of the same run. */
export function restoreRunRows(r: RestoreSizeResult): { headers: string[]; rows: string[][] } {
  const headers = [
    'run',
    'order',
    'manual s (copies: without copy)',
    'kbur',
    'kbur s',
    'ratio',
    'downtime s',
    'pre-stop s',
    'stop→verify s',
    'coord RSS',
    'coord CPU s',
    'agents CPU s',
    "agents' children CPU s",
    'manual etcdctl CPU s',
  ];
  const rows = r.runs.flatMap((x) =>
    KBUR_MODES.map((mode) => {
      const k = x.kbur[mode];
      return [
        String(x.run),
        x.order.join(', '),
        fmt(mode === 'copies' ? x.manual.seconds - x.manual.steps.copy : x.manual.seconds),
        mode,
        fmt(k.seconds),
        fmt(k.ratio, 3),
        fmt(k.downtimeSeconds),
        fmt(k.preStopSeconds),
        fmt(k.stopToVerifySeconds),
        `${fmt(k.coordinatorPeakRssMiB, 1)} MiB`,
        fmt(k.cpuSeconds.coordinator),
        fmt(k.cpuSeconds.agents),
        fmt(k.cpuSeconds.agentChildren),
        fmt(x.manual.cpuSeconds.etcdctl),
      ];
    }),
  );
  return { headers, rows };
}

/** Seconds per step, one column per run and the median: where each procedure's time goes. */
export function restoreStepRows(r: RestoreSizeResult): { headers: string[]; rows: string[][] } {
  const headers = ['step', ...r.runs.map((x) => `run ${x.run}`), 'median'];
  const rows: string[][] = [];
  for (const step of MANUAL_STEPS)
    rows.push([`manual: ${step}`, ...r.runs.map((x) => fmt(x.manual.steps[step])), fmt(r.median?.manual.steps[step])]);
  rows.push(['manual: total', ...r.runs.map((x) => fmt(x.manual.seconds)), fmt(r.median?.manual.seconds)]);
  for (const mode of KBUR_MODES) {
    const label = KBUR_MODE_SHORT[mode];
    for (const step of KBUR_STEPS) {
      if (!r.runs.some((x) => x.kbur[mode].steps[step] !== undefined)) continue;
      rows.push([`${label}: ${step}`, ...r.runs.map((x) => fmt(x.kbur[mode].steps[step])), fmt(r.median?.kbur[mode].steps[step])]);
    }
    rows.push([`${label}: total`, ...r.runs.map((x) => fmt(x.kbur[mode].seconds)), fmt(r.median?.kbur[mode].seconds)]);
  }
  return { headers, rows };
}

/** How a kbur restore staged the snapshot on the nodes, as its stage lines said. */
export function stagedText(k: KburRestoreRunResult): string {
  const how = (from: 'copy' | 'upload'): string => (from === 'copy' ? 'from its copy' : 'by upload');
  const entries = Object.entries(k.stagedFrom);
  const sources = new Set(entries.map(([, from]) => from));
  return sources.size === 1
    ? `every node staged ${how([...sources][0]!)}`
    : entries.map(([node, from]) => `${node} staged ${how(from)}`).join(', ');
}

export function restoreHeadline(r: RestoreSizeResult): string {
  const { copies: c, upload: u } = r.backups;
  const snapshotOf = (b: RestoreBackup): string =>
    `snapshot ${fmt(b.snapshotMiB, 1)} MiB from ${b.node}, revision ${b.revision}, ${b.keyCount} keys (${b.registryKeyCount} under /registry/)`;
  const backups = [
    u ? `backup without copies ${u.id} in ${fmt(u.seconds)} s` : undefined,
    c
      ? `backup with copies ${c.id} in ${fmt(c.seconds)} s (coordinator RSS ${fmt(c.coordinatorPeakRssMiB, 1)} MiB; copies kept on ${c.nodeCopies?.map((x) => x.node).join(', ') ?? '-'})`
      : undefined,
  ].filter(Boolean);
  const sameSnapshot = !c || !u || (c.snapshotBytes === u.snapshotBytes && c.revision === u.revision && c.node === u.node);
  const snapshot = c ?? u;
  return (
    `${r.sizeMiB} MiB: sandbox ${r.sandbox}${r.sandbox === 'fresh' ? ` (start ${r.sandboxStartSeconds} s, fill ${r.fillSeconds} s)` : ''}; ` +
    (backups.length ? `${backups.join(', ')}: ` : '') +
    (snapshot ? `${snapshotOf(snapshot)}${sameSnapshot || !u ? '' : ` (without copies: ${snapshotOf(u)})`}; ` : '') +
    `load average ${r.loadAverage.before.join(' ')} -> ${r.loadAverage.after.join(' ')}`
  );
}

const references = (section: RestoreSection): string[] => section.results.map(uploadReference).filter((x): x is string => x !== undefined);

export function restoreText(section: RestoreSection, afterBackup: boolean): string[] {
  const reference = references(section);
  return sectionText({
    title: `kbur restore (RTO) of the 3-member cluster against the manual procedure of etcd's recovery guide, timed in the same runs: kbur from the snapshot copies the nodes keep (copies, the target's) and kbur uploading the snapshot (upload, no target)`,
    first: !afterBackup,
    summary: restoreSummaryRows(section),
    results: section.results,
    headline: restoreHeadline,
    runs: restoreRunRows,
    afterRuns: (r) => {
      const st = restoreStepRows(r);
      return ['', ...table(st.headers, st.rows).map((l) => `  ${l}`)];
    },
    tail: [
      '',
      'manual: local cp x3 (the snapshot already on each node), etcd.yaml out, etcdctl snapshot restore x3 in parallel, swap data dirs, etcd.yaml back, wait healthy; kube-apiserver & co. untouched (kbur stops and restarts them too).',
      'copies: each node stages the copy it keeps (reread, hard link); upload: the coordinator first streams 3x the snapshot to the agents over mTLS.',
      `target: median restore time ${KBUR_MODE_TEXT[RESTORE_TARGETS.kburMode]} / manual <= ${RESTORE_TARGETS.ratioMax}, every check of the restored cluster passed`,
      missedText(section.results.flatMap(failedRestoreTargets), 'RESTORE TARGETS MISSED:', 'restore target met'),
      ...(reference.length ? [`beside it:\n${reference.map((f) => `  - ${f}`).join('\n')}`] : []),
    ],
  });
}

export function restoreMarkdown(section: RestoreSection, afterBackup: boolean): string[] {
  const reference = references(section);
  return sectionMarkdown({
    head: afterBackup ? ['# kbur restore benchmark (RTO)', ''] : [],
    target: `Target: median restore time (RTO) of kbur restoring a backup whose snapshot every node keeps a copy of (\`backup.copySnapshotToNodes\`; "copies" below) at most ${RESTORE_TARGETS.ratioMax} times the manual procedure of etcd's recovery guide timed in the same run without its copy step, so that both start with the snapshot on each node; every check of kbur included and every restored cluster checked. The same runs time kbur restoring a backup without copies, which first uploads the snapshot to the three nodes ("upload"): reported beside it, without a target. Times are medians; RSS is the maximum over runs.`,
    summary: restoreSummaryRows(section),
    results: section.results,
    label: 'Restore',
    describe: (r) => [`${restoreHeadline(r)}.`],
    runs: restoreRunRows,
    beforeRuns: () => [
      '',
      'Each run, kbur in both modes beside the manual procedure of the same run (ratio = kbur s / manual s; for copies, manual s without its copy step):',
    ],
    afterRuns: (r) => {
      const st = restoreStepRows(r);
      return [
        '',
        'Where the time goes (seconds):',
        '',
        ...markdownTable(st.headers, st.rows),
        '',
        'Checks after each restore:',
        '',
        ...r.runs.map(
          (run) =>
            `- run ${run.run}: manual: ${run.manual.check}; ${KBUR_MODES.map((mode) => `${KBUR_MODE_SHORT[mode]} (${run.kbur[mode].restoreId}; ${stagedText(run.kbur[mode])}): ${run.kbur[mode].check}`).join('; ')}`,
        ),
        '',
        `Agents' peak RSS (VmHWM over their lives): ${fmt(r.max?.agentPeakRssMiB, 1)} MiB; manual \`cp\` CPU ${fmt(r.median?.manual.cpuSeconds.cp)} s.`,
      ];
    },
    result: {
      missed: section.results.flatMap(failedRestoreTargets),
      met: 'Restore target met.',
      after: reference.length ? ['', 'Beside it, without a target:', '', ...reference.map((f) => `- ${f}`)] : [],
    },
    method: section.method,
  });
}
