import { rm, stat } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Manifest } from '../../shared/manifest.js';
import { KBUR_BIN } from '../../test/helpers/kbur.js';
import type { Sandbox, SandboxNode } from '../../test/sandbox/cluster.js';
import { NODE_FLAGS } from '../../shared/node-flags.js';
import type { NodeCopy } from '../../coordinator/backup/copies.js';
import { type EndpointStatus, type Fill, endpointStatus } from './etcd.js';
import { type Measured, failure, findPid, measure, procCpuSeconds, procStatusKiB } from './proc.js';
import type { Context } from './scenario.js';
import { ETCDCTL_ENV, MiB, log, median, round, toMiB, toMiBOrUndefined } from './util.js';

export const TARGETS = { ratioMax: 1.15, rssMaxMiB: 150 } as const;

export const SIZE_TOLERANCE = 0.01;

export interface RunResult {
  run: number;
  order: 'etcdctl-first' | 'kbur-first';
  node: string;
  etcdctlSeconds: number;
  kburSeconds: number;
  ratio: number;
  coordinatorPeakRssMiB: number;
  agentPeakRssMiB: number;
  etcdctlPeakRssMiB: number;
  etcdctlSnapshotBytes: number;
  kburSnapshotBytes: number;
  etcdctlMiBps: number;
  kburMiBps: number;
  cpuSeconds: {
    coordinator: number;
    agent: number;
    etcdDuringKbur: number;
    etcdctl: number;
    etcdDuringEtcdctl: number;
  };
  problems: string[];
}

export type Summary = Record<
  | 'etcdctlSeconds'
  | 'kburSeconds'
  | 'ratio'
  | 'coordinatorPeakRssMiB'
  | 'agentPeakRssMiB'
  | 'etcdctlPeakRssMiB'
  | 'etcdctlMiBps'
  | 'kburMiBps',
  number
> & {
  cpuSeconds: RunResult['cpuSeconds'];
};

export interface SizeResult {
  sizeMiB: number;
  quotaBackendBytes: number;
  dbSizeBytes: number;
  dbSizeMiB: number;
  /** etcd members after the runs; RSS counts bbolt's mmapped file pages too, anonRssMiB is etcd's heap (raft log included). */
  members: (EndpointStatus & { rssMiB: number | undefined; anonRssMiB: number | undefined; peakRssMiB: number | undefined })[];
  snapshotNode: string;
  sandboxStartSeconds: number;
  fillSeconds: number;
  fill: Fill;
  warmUp: { kburSeconds: number; coordinatorPeakRssMiB: number } | undefined;
  loadAverage: { before: number[]; after: number[] };
  runs: RunResult[];
  median: Summary | undefined;
  max: { coordinatorPeakRssMiB: number; agentPeakRssMiB: number } | undefined;
  targets: typeof TARGETS;
  pass: { ratio: boolean; rss: boolean; coordinatorRss: boolean; agentRss: boolean; snapshotsMatch: boolean };
  error?: string;
}

export function summarize(runs: RunResult[]): Summary | undefined {
  if (runs.length === 0) return undefined;
  const m = (f: (r: RunResult) => number, digits = 3): number => round(median(runs.map(f)), digits);
  return {
    etcdctlSeconds: m((r) => r.etcdctlSeconds),
    kburSeconds: m((r) => r.kburSeconds),
    ratio: m((r) => r.ratio),
    coordinatorPeakRssMiB: m((r) => r.coordinatorPeakRssMiB, 1),
    agentPeakRssMiB: m((r) => r.agentPeakRssMiB, 1),
    etcdctlPeakRssMiB: m((r) => r.etcdctlPeakRssMiB, 1),
    etcdctlMiBps: m((r) => r.etcdctlMiBps, 1),
    kburMiBps: m((r) => r.kburMiBps, 1),
    cpuSeconds: {
      coordinator: m((r) => r.cpuSeconds.coordinator, 2),
      agent: m((r) => r.cpuSeconds.agent, 2),
      etcdDuringKbur: m((r) => r.cpuSeconds.etcdDuringKbur, 2),
      etcdctl: m((r) => r.cpuSeconds.etcdctl, 2),
      etcdDuringEtcdctl: m((r) => r.cpuSeconds.etcdDuringEtcdctl, 2),
    },
  };
}

export interface KburOutcome {
  measured: Measured;
  manifest: Manifest;
  snapshotBytes: number;
  /** Where each node keeps its copy of the snapshot: only with backup.copySnapshotToNodes in the config. */
  nodeCopies: NodeCopy[] | undefined;
}

/** How the benchmark runs kbur: today's bundle under this Node, with the shebang's flags. */
export const KBUR_COMMAND = [process.execPath, ...NODE_FLAGS, KBUR_BIN];

/** kbur backup --json; its backup folder is removed once its manifest is read, unless `keep`. */
export async function kburBackup(
  sandbox: Sandbox,
  signal: AbortSignal,
  keep = false,
  config = sandbox.coordinatorConfig,
  command = KBUR_COMMAND,
): Promise<KburOutcome> {
  const measured = await measure(command[0]!, [...command.slice(1), '--config', config, 'backup', '--json'], process.env, signal);
  let manifest: Manifest & { nodeCopies?: NodeCopy[] };
  try {
    manifest = JSON.parse(measured.stdout) as Manifest & { nodeCopies?: NodeCopy[] };
  } catch {
    throw failure('kbur backup --json (no manifest on stdout)', measured);
  }
  if (!keep) await rm(join(sandbox.repoDir, manifest.cluster, 'backups', manifest.id), { recursive: true, force: true });
  if (measured.code !== 0 || manifest.phase !== 'Completed') {
    const why = manifest.failures.map((f) => `${f.part}: ${f.message}`).join('; ');
    throw new Error(`kbur backup exited ${measured.code ?? measured.signal} with phase ${manifest.phase}${why ? `: ${why}` : ''}`);
  }
  const snapshot = manifest.artifacts.find((a) => a.kind === 'etcd-snapshot');
  if (!manifest.etcd || !snapshot) throw new Error('kbur backup is Completed but has no etcd snapshot in its manifest');
  return { measured, manifest, snapshotBytes: snapshot.size, nodeCopies: manifest.nodeCopies };
}

export async function etcdctlSnapshot(
  sandbox: Sandbox,
  node: SandboxNode,
  file: string,
  signal: AbortSignal,
): Promise<{ measured: Measured; bytes: number }> {
  const certs = join(sandbox.nodes[0]!.kubernetesDir, 'pki', 'etcd');
  const args = [
    `--endpoints=${node.clientUrl}`,
    `--cacert=${join(certs, 'ca.crt')}`,
    `--cert=${join(certs, 'healthcheck-client.crt')}`,
    `--key=${join(certs, 'healthcheck-client.key')}`,
    'snapshot',
    'save',
    file,
  ];
  try {
    const measured = await measure('etcdctl', args, ETCDCTL_ENV, signal);
    if (measured.code !== 0) throw failure('etcdctl snapshot save', measured);
    return { measured, bytes: (await stat(file)).size };
  } finally {
    await rm(file, { force: true });
    await rm(`${file}.part`, { force: true });
  }
}

/** The backup benchmark of one size, on a fresh filled sandbox (ctx.filled()), left running for the next scenario. */
export async function benchSize(ctx: Context, loadBefore: number[]): Promise<SizeResult> {
  const { sizeMiB, opts, dir } = ctx;
  const signal = ctx.state.abort.signal;
  const { filled } = await ctx.filled();
  const { sandbox, quota, sandboxStartSeconds, fill } = filled;

  log(`${sizeMiB} MiB: warm-up kbur backup (discarded) to learn which member kbur snapshots`);
  const warm = await kburBackup(sandbox, signal);
  const snapshotNode = warm.manifest.etcd!.node;
  const node = sandbox.nodes.find((n) => n.name === snapshotNode);
  if (!node) throw new Error(`kbur snapshotted ${snapshotNode}, which is not a sandbox node`);
  const agentPid = findPid(
    `kbur-agent of ${node.name}`,
    (argv) => argv.includes(node.agentConfig) && argv.some((a) => a.endsWith('agent/bin.js')),
  );
  const etcdPid = findPid(
    `etcd of ${node.name}`,
    (argv) => argv[0]?.endsWith('etcd') === true && argv.includes(`--data-dir=${node.dataDir}`),
  );
  log(
    `${sizeMiB} MiB: kbur snapshots ${node.name} (${node.clientUrl}); agent pid ${agentPid}, etcd pid ${etcdPid}; warm-up took ${warm.measured.seconds.toFixed(2)} s`,
  );

  const runs: RunResult[] = [];
  const problems: string[] = [];
  for (let i = 0; i < opts.runs; i++) {
    const order = i % 2 === 0 ? 'etcdctl-first' : 'kbur-first';
    let e: { bytes: number; measured: Measured; etcdCpu: number } | undefined;
    let k: (KburOutcome & { etcdCpu: number; agentCpu: number; agentHwmKiB: number }) | undefined;
    const doEtcdctl = async (): Promise<void> => {
      const etcd0 = procCpuSeconds(etcdPid) ?? NaN;
      const got = await etcdctlSnapshot(sandbox, node, join(dir, `etcdctl-run${i + 1}.db`), signal);
      e = { ...got, etcdCpu: (procCpuSeconds(etcdPid) ?? NaN) - etcd0 };
    };
    const doKbur = async (): Promise<void> => {
      const etcd0 = procCpuSeconds(etcdPid) ?? NaN;
      const agent0 = procCpuSeconds(agentPid) ?? NaN;
      const got = await kburBackup(sandbox, signal);
      k = {
        ...got,
        etcdCpu: (procCpuSeconds(etcdPid) ?? NaN) - etcd0,
        agentCpu: (procCpuSeconds(agentPid) ?? NaN) - agent0,
        agentHwmKiB: procStatusKiB(agentPid, 'VmHWM') ?? NaN,
      };
    };
    for (const step of order === 'etcdctl-first' ? [doEtcdctl, doKbur] : [doKbur, doEtcdctl]) {
      await sleep(1_000, undefined, { signal });
      await step();
    }
    if (!e || !k) throw new Error(`run ${i + 1} did not measure both tools`);
    const runProblems: string[] = [];
    if (k.manifest.etcd!.node !== node.name)
      runProblems.push(
        `kbur snapshotted ${k.manifest.etcd!.node}, not ${node.name} as in the warm-up: etcdctl and kbur read different members`,
      );
    const diff = Math.abs(k.snapshotBytes - e.bytes) / e.bytes;
    if (diff > SIZE_TOLERANCE)
      runProblems.push(
        `kbur's snapshot is ${k.snapshotBytes} bytes, etcdctl's ${e.bytes}: ${(diff * 100).toFixed(2)}% apart (more than ${SIZE_TOLERANCE * 100}%)`,
      );
    problems.push(...runProblems.map((p) => `run ${i + 1}: ${p}`));
    const r: RunResult = {
      run: i + 1,
      order,
      node: k.manifest.etcd!.node,
      etcdctlSeconds: round(e.measured.seconds),
      kburSeconds: round(k.measured.seconds),
      ratio: round(k.measured.seconds / e.measured.seconds),
      coordinatorPeakRssMiB: round(k.measured.peakRssKiB / 1024, 1),
      agentPeakRssMiB: round(k.agentHwmKiB / 1024, 1),
      etcdctlPeakRssMiB: round(e.measured.peakRssKiB / 1024, 1),
      etcdctlSnapshotBytes: e.bytes,
      kburSnapshotBytes: k.snapshotBytes,
      etcdctlMiBps: round(e.bytes / MiB / e.measured.seconds, 1),
      kburMiBps: round(k.snapshotBytes / MiB / k.measured.seconds, 1),
      cpuSeconds: {
        coordinator: round(k.measured.cpuSeconds, 2),
        agent: round(k.agentCpu, 2),
        etcdDuringKbur: round(k.etcdCpu, 2),
        etcdctl: round(e.measured.cpuSeconds, 2),
        etcdDuringEtcdctl: round(e.etcdCpu, 2),
      },
      problems: runProblems,
    };
    runs.push(r);
    log(
      `${sizeMiB} MiB run ${i + 1}/${opts.runs} (${order}): etcdctl ${r.etcdctlSeconds.toFixed(2)} s, kbur ${r.kburSeconds.toFixed(2)} s, ratio ${r.ratio.toFixed(3)}; ` +
        `RSS coordinator ${r.coordinatorPeakRssMiB} MiB, agent ${r.agentPeakRssMiB} MiB; CPU coordinator ${r.cpuSeconds.coordinator} s, agent ${r.cpuSeconds.agent} s, etcdctl ${r.cpuSeconds.etcdctl} s` +
        (runProblems.length ? `; PROBLEM: ${runProblems.join('; ')}` : ''),
    );
  }

  const statuses = await endpointStatus(sandbox);
  const members = statuses.map((s) => {
    const n = sandbox.nodes.find((x) => x.name === s.node)!;
    let pid: number | undefined;
    try {
      pid = findPid(`etcd of ${n.name}`, (argv) => argv[0]?.endsWith('etcd') === true && argv.includes(`--data-dir=${n.dataDir}`));
    } catch {
      pid = undefined;
    }
    const kib = (f: 'VmRSS' | 'VmHWM' | 'RssAnon'): number | undefined => (pid === undefined ? undefined : procStatusKiB(pid, f));
    return {
      ...s,
      rssMiB: toMiBOrUndefined(kib('VmRSS')),
      anonRssMiB: toMiBOrUndefined(kib('RssAnon')),
      peakRssMiB: toMiBOrUndefined(kib('VmHWM')),
    };
  });
  const dbSizeBytes = statuses.find((s) => s.node === node.name)!.dbSize;
  const med = summarize(runs);
  const max = {
    coordinatorPeakRssMiB: Math.max(...runs.map((r) => r.coordinatorPeakRssMiB)),
    agentPeakRssMiB: Math.max(...runs.map((r) => r.agentPeakRssMiB)),
  };
  const coordinatorRss = max.coordinatorPeakRssMiB < TARGETS.rssMaxMiB;
  const agentRss = max.agentPeakRssMiB < TARGETS.rssMaxMiB;
  return {
    sizeMiB,
    quotaBackendBytes: quota,
    dbSizeBytes,
    dbSizeMiB: toMiB(dbSizeBytes),
    members,
    snapshotNode: node.name,
    sandboxStartSeconds,
    fillSeconds: fill.seconds,
    fill,
    warmUp: { kburSeconds: round(warm.measured.seconds), coordinatorPeakRssMiB: round(warm.measured.peakRssKiB / 1024, 1) },
    loadAverage: { before: loadBefore, after: loadavg().map((x) => round(x, 2)) },
    runs,
    median: med,
    max,
    targets: TARGETS,
    pass: {
      ratio: med !== undefined && med.ratio <= TARGETS.ratioMax,
      rss: coordinatorRss && agentRss,
      coordinatorRss,
      agentRss,
      snapshotsMatch: problems.length === 0,
    },
  };
}
