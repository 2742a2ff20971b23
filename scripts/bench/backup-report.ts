import { type SizeResult, TARGETS } from './backup.js';
import type { Report } from './report.js';
import { sectionMarkdown, sectionText, targetsText, verdict } from './render.js';
import { fmt, toMiB } from './util.js';

export const METHOD = [
  'Per size: a fresh 3-member TLS etcd sandbox with fresh agents, filled with 1 MiB values of random bytes up to the size (all members).',
  'A warm-up `kbur backup` (discarded) tells which member kbur snapshots; etcdctl snapshot save is then run against that member only.',
  'Each run times both, alternating which goes first (page cache), 1 s apart; outputs are deleted after each.',
  'Wall time: spawn to exit of the process, startup included. ratio = kbur / etcdctl; the target applies to the median.',
  'Coordinator and etcdctl peak RSS / CPU: VmHWM and utime+stime from /proc, polled every 20 ms until exit.',
  "Agent peak RSS: the agent's VmHWM after the run, i.e. the peak over its whole life (startup, warm-up and runs so far at this size).",
  'Agent and etcd CPU: utime+stime deltas of those processes around each run (etcd: the snapshotted member).',
];

export function failedTargets(r: SizeResult): string[] {
  if (r.error || !r.median || !r.max) return [`${r.sizeMiB} MiB: no measurement (${r.error ?? 'no runs'})`];
  const out: string[] = [];
  if (!r.pass.ratio) out.push(`${r.sizeMiB} MiB: median ratio ${fmt(r.median.ratio, 3)} > ${TARGETS.ratioMax}`);
  if (!r.pass.coordinatorRss)
    out.push(`${r.sizeMiB} MiB: coordinator peak RSS ${fmt(r.max.coordinatorPeakRssMiB, 1)} MiB >= ${TARGETS.rssMaxMiB} MiB`);
  if (!r.pass.agentRss) out.push(`${r.sizeMiB} MiB: agent peak RSS ${fmt(r.max.agentPeakRssMiB, 1)} MiB >= ${TARGETS.rssMaxMiB} MiB`);
  if (!r.pass.snapshotsMatch) out.push(`${r.sizeMiB} MiB: snapshot check failed (see runs)`);
  return out;
}

export function summaryRows(report: Report): { headers: string[]; rows: string[][] } {
  const headers = [
    'size',
    'db MiB',
    'fill s',
    's/GiB',
    'etcdctl s',
    'kbur s',
    'ratio',
    'coord RSS',
    'agent RSS',
    'coord CPU s',
    'agent CPU s',
    'etcdctl CPU s',
    'result',
  ];
  const rows = report.results.map((r) => {
    const m = r.median;
    return [
      `${r.sizeMiB} MiB`,
      fmt(r.dbSizeMiB, 1),
      fmt(r.fillSeconds, 1),
      fmt(r.fill?.secondsPerGiB, 1),
      fmt(m?.etcdctlSeconds),
      fmt(m?.kburSeconds),
      fmt(m?.ratio, 3),
      `${fmt(r.max?.coordinatorPeakRssMiB, 1)} MiB`,
      `${fmt(r.max?.agentPeakRssMiB, 1)} MiB`,
      fmt(m?.cpuSeconds.coordinator),
      fmt(m?.cpuSeconds.agent),
      fmt(m?.cpuSeconds.etcdctl),
      verdict(r.error, { ratio: r.pass.ratio, rss: r.pass.rss, check: r.pass.snapshotsMatch }),
    ];
  });
  return { headers, rows };
}

export function runRows(r: SizeResult): { headers: string[]; rows: string[][] } {
  const headers = [
    'run',
    'order',
    'etcdctl s',
    'kbur s',
    'ratio',
    'etcdctl MiB/s',
    'kbur MiB/s',
    'coord RSS',
    'agent RSS*',
    'coord CPU s',
    'agent CPU s',
    'etcd CPU s (kbur)',
    'etcdctl CPU s',
    'etcd CPU s (etcdctl)',
  ];
  const rows = r.runs.map((x) => [
    String(x.run),
    x.order,
    fmt(x.etcdctlSeconds),
    fmt(x.kburSeconds),
    fmt(x.ratio, 3),
    fmt(x.etcdctlMiBps, 1),
    fmt(x.kburMiBps, 1),
    `${fmt(x.coordinatorPeakRssMiB, 1)} MiB`,
    `${fmt(x.agentPeakRssMiB, 1)} MiB`,
    fmt(x.cpuSeconds.coordinator),
    fmt(x.cpuSeconds.agent),
    fmt(x.cpuSeconds.etcdDuringKbur),
    fmt(x.cpuSeconds.etcdctl),
    fmt(x.cpuSeconds.etcdDuringEtcdctl),
  ]);
  return { headers, rows };
}

/** The backup section runs unless --sizes none left it empty. */
export const hasBackup = (report: Report): boolean => report.results.length > 0;

export function backupText(report: Report): string[] {
  return sectionText({
    summary: summaryRows(report),
    results: report.results,
    headline: (r) =>
      `${r.sizeMiB} MiB: db ${fmt(r.dbSizeMiB, 1)} MiB on ${r.snapshotNode}, fill ${r.fillSeconds} s (${r.fill?.mibPerSecond} MiB/s), load average ${r.loadAverage.before.join(' ')} -> ${r.loadAverage.after.join(' ')}`,
    runs: runRows,
    tail: [
      '',
      '* agent RSS is its VmHWM: the peak over its life, startup included (agents start fresh per size).',
      ...targetsText(
        `targets: median ratio <= ${TARGETS.ratioMax}, every process < ${TARGETS.rssMaxMiB} MiB at every size`,
        report.results.flatMap(failedTargets),
        'TARGETS MISSED:',
        'all targets met',
      ),
    ],
  });
}

export function backupMarkdown(report: Report): string[] {
  return sectionMarkdown({
    // Backup runs first whenever it runs: the report's title is its heading.
    head: [],
    target: `Targets: median wall-time ratio kbur/etcdctl at most ${TARGETS.ratioMax}; coordinator and agent peak RSS under ${TARGETS.rssMaxMiB} MiB at every size. Times are medians; RSS is the maximum over runs.`,
    summary: summaryRows(report),
    results: report.results,
    describe: (r) => [
      `etcd db ${fmt(r.dbSizeMiB, 1)} MiB (snapshotted member ${r.snapshotNode}); fill ${r.fillSeconds} s for ${toMiB(r.fill?.bytesWritten ?? 0)} MiB (${r.fill?.mibPerSecond} MiB/s, ${r.fill?.secondsPerGiB} s per GiB); sandbox start ${r.sandboxStartSeconds} s; warm-up kbur ${fmt(r.warmUp?.kburSeconds)} s; load average ${r.loadAverage.before.join(' ')} before, ${r.loadAverage.after.join(' ')} after.`,
      ...(r.members.length
        ? [
            '',
            `etcd members after the runs: ${r.members.map((x) => `${x.node} db ${toMiB(x.dbSize)} MiB, RSS ${fmt(x.rssMiB, 0)} MiB (anonymous ${fmt(x.anonRssMiB, 0)} MiB, peak ${fmt(x.peakRssMiB, 0)} MiB)${x.isLeader ? ' leader' : ''}`).join('; ')}.`,
          ]
        : []),
    ],
    runs: runRows,
    result: { missed: report.results.flatMap(failedTargets), met: 'All targets met.' },
    method: METHOD,
  });
}
