import { rm, stat } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Manifest } from '../../shared/manifest.js';
import type { Sandbox } from '../../test/sandbox/cluster.js';
import type { NodeCopy } from '../../coordinator/backup/copies.js';
import { kburBackup } from './backup.js';
import { clusterIdentity, etcdLeader, keyCounts } from './etcd.js';
import type { Options } from './options.js';
import { findPid } from './proc.js';
import { assertCopiesKept, assertNormal, checkRestored, removeLeftovers, writeCopiesConfig } from './restore-cluster.js';
import {
  KBUR_MODES,
  KBUR_MODE_TEXT,
  KBUR_STEPS,
  type KburMode,
  type KburRestoreOutcome,
  type KburRestoreRunResult,
  type KburStep,
  assertStaged,
  kburRestore,
} from './restore-kbur.js';
import { MANUAL_STEPS, type ManualOutcome, type ManualStep, manualRestore } from './restore-manual.js';
import type { FilledSandbox, State } from './sandbox.js';
import { log, median, round, toMiB } from './util.js';

/** Which kbur restore the target applies to: the backup whose snapshot every node keeps a copy of. */
export const RESTORE_TARGETS = { ratioMax: 1.3, kburMode: 'copies' } as const;

/** The procedures of a run; run i starts at the i-th (mod 3) and goes round. */
export const RESTORE_PROCEDURES = ['manual', ...KBUR_MODES] as const;

export type RestoreProcedure = (typeof RESTORE_PROCEDURES)[number];

/** The coordinator config beside the sandbox's kbur.yaml with backup.copySnapshotToNodes on. */
export const COPIES_CONFIG = 'kbur-copies.yaml';

export interface RestoreRunResult {
  run: number;
  /** The procedures in the order they ran. */
  order: RestoreProcedure[];
  manual: {
    seconds: number;
    steps: Record<ManualStep, number>;
    cpuSeconds: { etcdctl: number; cp: number };
    check: string;
  };
  kbur: Record<KburMode, KburRestoreRunResult>;
  problems: string[];
}

export type KburRestoreSummary = Record<
  'seconds' | 'ratio' | 'downtimeSeconds' | 'preStopSeconds' | 'stopToVerifySeconds' | 'coordinatorPeakRssMiB',
  number
> & {
  cpuSeconds: KburRestoreRunResult['cpuSeconds'];
  steps: Partial<Record<KburStep, number>>;
};

export interface RestoreSummary {
  manual: { seconds: number; steps: Record<ManualStep, number>; cpuSeconds: RestoreRunResult['manual']['cpuSeconds'] };
  kbur: Record<KburMode, KburRestoreSummary>;
}

/** A kept backup that the runs restore. */
export interface RestoreBackup {
  id: string;
  /** The coordinator config of its `kbur backup` and `kbur restore`. */
  config: string;
  seconds: number;
  coordinatorPeakRssMiB: number;
  node: string;
  snapshotBytes: number;
  snapshotMiB: number;
  revision: number;
  keyCount: number;
  registryKeyCount: number;
  /** The backup's `nodeCopies` (copies mode): where each agent keeps its copy. */
  nodeCopies?: NodeCopy[];
}

export interface RestoreSizeResult {
  sizeMiB: number;
  sandbox: 'reused from the backup runs' | 'fresh';
  quotaBackendBytes: number;
  sandboxStartSeconds: number;
  fillSeconds: number;
  /** `upload` is taken first, then `copies` (the copies the agents keep are of the newest backup). */
  backups: Partial<Record<KburMode, RestoreBackup>>;
  loadAverage: { before: number[]; after: number[] };
  runs: RestoreRunResult[];
  median: RestoreSummary | undefined;
  max: { coordinatorPeakRssMiB: Record<KburMode, number>; agentPeakRssMiB: number } | undefined;
  targets: typeof RESTORE_TARGETS;
  /** `ratio` is the target's, on the copies mode. */
  pass: { ratio: boolean; checks: boolean };
  error?: string;
}

export interface RestoreSection {
  targets: typeof RESTORE_TARGETS;
  method: string[];
  results: RestoreSizeResult[];
}

export function summarizeRestore(runs: RestoreRunResult[]): RestoreSummary | undefined {
  if (runs.length === 0) return undefined;
  const m = (f: (r: RestoreRunResult) => number, digits = 3): number => round(median(runs.map(f)), digits);
  const kbur = (mode: KburMode): KburRestoreSummary => {
    const k = (f: (x: KburRestoreRunResult) => number, digits = 3): number => m((r) => f(r.kbur[mode]), digits);
    const steps: Partial<Record<KburStep, number>> = {};
    for (const step of KBUR_STEPS) {
      const xs = runs.map((r) => r.kbur[mode].steps[step]).filter((x): x is number => x !== undefined);
      if (xs.length) steps[step] = round(median(xs));
    }
    return {
      seconds: k((x) => x.seconds),
      ratio: k((x) => x.ratio),
      downtimeSeconds: k((x) => x.downtimeSeconds),
      preStopSeconds: k((x) => x.preStopSeconds),
      stopToVerifySeconds: k((x) => x.stopToVerifySeconds),
      coordinatorPeakRssMiB: k((x) => x.coordinatorPeakRssMiB, 1),
      cpuSeconds: {
        coordinator: k((x) => x.cpuSeconds.coordinator, 2),
        agents: k((x) => x.cpuSeconds.agents, 2),
        agentChildren: k((x) => x.cpuSeconds.agentChildren, 2),
      },
      steps,
    };
  };
  return {
    manual: {
      seconds: m((r) => r.manual.seconds),
      steps: Object.fromEntries(MANUAL_STEPS.map((s) => [s, m((r) => r.manual.steps[s])])) as Record<ManualStep, number>,
      cpuSeconds: { etcdctl: m((r) => r.manual.cpuSeconds.etcdctl, 2), cp: m((r) => r.manual.cpuSeconds.cp, 2) },
    },
    kbur: { copies: kbur('copies'), upload: kbur('upload') },
  };
}

/** A kept backup, as the runs restore it. */
export interface KeptBackup {
  info: RestoreBackup;
  manifest: Manifest;
  /** The snapshot in the repository. */
  snapshot: string;
}

/**
 * `kbur backup --json` with `config`, kept. For the copies mode, every node must report its copy
 * kept (nodeCopies[].ok) and hold it; for the upload mode, no node may have been sent one.
 */
export async function takeRestoreBackup(
  sizeMiB: number,
  sandbox: Sandbox,
  mode: KburMode,
  config: string,
  signal: AbortSignal,
  scenario = 'restore',
): Promise<KeptBackup> {
  log(
    `${sizeMiB} MiB ${scenario}: taking the backup for "${KBUR_MODE_TEXT[mode]}" (kbur --config ${basename(config)} backup --json, kept${mode === 'copies' ? '; backup.copySnapshotToNodes: true' : ''})`,
  );
  const backup = await kburBackup(sandbox, signal, true, config);
  const manifest = backup.manifest;
  const etcd = manifest.etcd!;
  const artifact = manifest.artifacts.find((a) => a.kind === 'etcd-snapshot')!;
  const snapshot = join(sandbox.repoDir, manifest.cluster, 'backups', manifest.id, artifact.path);
  if ((await stat(snapshot)).size !== artifact.size) throw new Error(`${snapshot} is not ${artifact.size} bytes as its manifest says`);
  const after = await Promise.all(sandbox.nodes.map((n) => keyCounts(sandbox, n)));
  if (after.some((c) => c.total !== etcd.keyCount || c.registry !== after[0]!.registry))
    throw new Error(
      `right after the backup the members hold ${after.map((c) => `${c.total} keys (/registry/ ${c.registry})`).join(', ')}; the backup says ${etcd.keyCount}: something writes to etcd`,
    );
  const info: RestoreBackup = {
    id: manifest.id,
    config,
    seconds: round(backup.measured.seconds),
    coordinatorPeakRssMiB: round(backup.measured.peakRssKiB / 1024, 1),
    node: etcd.node,
    snapshotBytes: artifact.size,
    snapshotMiB: toMiB(artifact.size),
    revision: etcd.revision,
    keyCount: etcd.keyCount,
    registryKeyCount: after[0]!.registry,
  };
  const copies = backup.nodeCopies;
  if (mode === 'copies') {
    if (!copies) throw new Error(`kbur --config ${config} backup --json (backup.copySnapshotToNodes: true) printed no nodeCopies`);
    info.nodeCopies = copies;
    const bad = [
      ...copies.filter((c) => !c.ok).map((c) => `${c.node}: ${c.detail}`),
      ...sandbox.nodes.filter((n) => !copies.some((c) => c.node === n.name)).map((n) => `${n.name}: not in nodeCopies`),
    ];
    if (bad.length) throw new Error(`backup ${manifest.id}: not every node keeps a copy of its snapshot: ${bad.join('; ')}`);
    await assertCopiesKept(sandbox, info);
  } else if (copies?.length) {
    throw new Error(`backup ${manifest.id} with ${config} sent snapshot copies to the nodes: the upload mode needs a backup without`);
  }
  log(
    `${sizeMiB} MiB ${scenario}: backup ${manifest.id} in ${info.seconds.toFixed(2)} s: snapshot ${toMiB(artifact.size)} MiB from ${etcd.node}, revision ${etcd.revision}, ${etcd.keyCount} keys (${after[0]!.registry} under /registry/)` +
      (copies ? `; copies kept on ${copies.map((c) => c.node).join(', ')}` : ''),
  );
  return { info, manifest, snapshot };
}

/**
 * The restore benchmark of one size: on the sandbox the scenarios before it at this size left
 * (the backup benchmark's, after its runs), else on a fresh one filled the same way. Two kept backups, the first without snapshot copies on
 * the nodes and the second with; every run restores by hand (from the second's snapshot), with kbur
 * from the nodes' copies (the second) and with kbur uploading the snapshot (the first), the three in
 * rotation; the cluster is checked and tidied after each.
 */
export async function benchRestore(
  sizeMiB: number,
  opts: Options,
  state: State,
  filled: FilledSandbox,
  reused: boolean,
  result: RestoreSizeResult,
): Promise<void> {
  const signal = state.abort.signal;
  const { sandbox } = filled;
  Object.assign(result, {
    sandbox: reused ? 'reused from the backup runs' : 'fresh',
    quotaBackendBytes: filled.quota,
    sandboxStartSeconds: filled.sandboxStartSeconds,
    fillSeconds: filled.fill.seconds,
  });
  await assertNormal(sandbox, signal);

  // The upload's backup first: the agents keep copies of the newest backups only (localSnapshots.keep, 1 by default).
  const copiesConfig = await writeCopiesConfig(sandbox);
  const upload = await takeRestoreBackup(sizeMiB, sandbox, 'upload', sandbox.coordinatorConfig, signal);
  result.backups.upload = upload.info;
  const copies = await takeRestoreBackup(sizeMiB, sandbox, 'copies', copiesConfig, signal);
  result.backups.copies = copies.info;
  const kept: Record<KburMode, KeptBackup> = { copies, upload };
  if (copies.info.keyCount !== upload.info.keyCount || copies.info.registryKeyCount !== upload.info.registryKeyCount)
    throw new Error(
      `backup ${upload.info.id} has ${upload.info.keyCount} keys (/registry/ ${upload.info.registryKeyCount}), ${copies.info.id} ${copies.info.keyCount} (/registry/ ${copies.info.registryKeyCount}): something writes to etcd`,
    );
  const members = (await clusterIdentity(sandbox)).members;
  const agentPids = sandbox.nodes.map((n) =>
    findPid(`kbur-agent of ${n.name}`, (argv) => argv.includes(n.agentConfig) && argv.some((a) => a.endsWith('agent/bin.js'))),
  );
  const want = (b: RestoreBackup): { members: string[]; keyCount: number; registryKeyCount: number } => ({
    members,
    keyCount: b.keyCount,
    registryKeyCount: b.registryKeyCount,
  });
  type Check = { check: { problems: string[]; summary: string } };

  for (let i = 0; i < opts.runs; i++) {
    const order = RESTORE_PROCEDURES.map((_, j) => RESTORE_PROCEDURES[(i + j) % RESTORE_PROCEDURES.length]!);
    let manual: (ManualOutcome & Check) | undefined;
    const kbur: Partial<Record<KburMode, KburRestoreOutcome & Check>> = {};
    const clusterId = async (): Promise<string> => (await clusterIdentity(sandbox)).clusterIds[0] ?? '';
    const doManual = async (): Promise<void> => {
      const before = await clusterId();
      const leader = await etcdLeader(sandbox);
      // The copies mode's snapshot: the manual procedure starts, like it, with the snapshot at hand.
      const got = await manualRestore(sandbox, copies.snapshot, leader, signal);
      manual = { ...got, check: await checkRestored(sandbox, { ...want(copies.info), clusterIdBefore: before }, signal) };
      log(
        `${sizeMiB} MiB restore run ${i + 1}: manual ${got.seconds.toFixed(2)} s (${MANUAL_STEPS.map((s) => `${s} ${got.steps[s].toFixed(2)}`).join(', ')})`,
      );
    };
    const doKbur = async (mode: KburMode): Promise<void> => {
      const b = kept[mode].info;
      const before = await clusterId();
      const got = await kburRestore(sandbox, b.config, b.id, agentPids, signal);
      assertStaged(mode, got, sandbox.nodes);
      kbur[mode] = { ...got, check: await checkRestored(sandbox, { ...want(b), clusterIdBefore: before }, signal) };
      log(
        `${sizeMiB} MiB restore run ${i + 1}: ${KBUR_MODE_TEXT[mode]} ${got.measured.seconds.toFixed(2)} s (${Object.entries(got.steps)
          .map(([s, x]) => `${s} ${x.toFixed(2)}`)
          .join(', ')})`,
      );
    };
    for (const procedure of order) {
      await assertNormal(sandbox, signal);
      await assertCopiesKept(sandbox, copies.info);
      await sleep(1_000, undefined, { signal });
      await (procedure === 'manual' ? doManual() : doKbur(procedure));
      // Each leaves a healthy cluster on the restored data; what it left beside it goes (the nodes' snapshot copies stay).
      await removeLeftovers(sandbox, copies.manifest.cluster);
    }
    if (!manual || !kbur.copies || !kbur.upload) throw new Error(`restore run ${i + 1} did not measure all three procedures`);
    const manualSeconds = manual.seconds;
    const manualCopySeconds = manual.steps.copy;
    const kburResult = (mode: KburMode, k: KburRestoreOutcome & Check): KburRestoreRunResult => ({
      backupId: kept[mode].info.id,
      restoreId: k.restoreId,
      seconds: round(k.measured.seconds),
      // With copies on the nodes, kbur starts from a snapshot each node holds: so does the manual procedure without its copy step.
      ratio: round(k.measured.seconds / (mode === 'copies' ? manualSeconds - manualCopySeconds : manualSeconds)),
      downtimeSeconds: round(k.downtimeSeconds),
      preStopSeconds: round(k.preStopSeconds),
      stopToVerifySeconds: round(k.stopToVerifySeconds),
      coordinatorPeakRssMiB: round(k.measured.peakRssKiB / 1024, 1),
      agentPeakRssMiB: round(k.agentHwmKiB / 1024, 1),
      cpuSeconds: {
        coordinator: round(k.measured.cpuSeconds, 2),
        agents: round(k.agentCpu, 2),
        agentChildren: round(k.agentChildrenCpu, 2),
      },
      steps: k.steps,
      stagedFrom: k.stagedFrom,
      lines: k.lines,
      check: k.check.summary,
    });
    const problems = [
      ...manual.check.problems.map((p) => `manual: ${p}`),
      ...KBUR_MODES.flatMap((mode) => kbur[mode]!.check.problems.map((p) => `${KBUR_MODE_TEXT[mode]}: ${p}`)),
    ];
    const r: RestoreRunResult = {
      run: i + 1,
      order,
      manual: {
        seconds: round(manual.seconds),
        steps: manual.steps,
        cpuSeconds: { etcdctl: round(manual.etcdctlCpuSeconds, 2), cp: round(manual.cpCpuSeconds, 2) },
        check: manual.check.summary,
      },
      kbur: { copies: kburResult('copies', kbur.copies), upload: kburResult('upload', kbur.upload) },
      problems,
    };
    result.runs.push(r);
    const c = r.kbur.copies;
    const u = r.kbur.upload;
    log(
      `${sizeMiB} MiB restore run ${i + 1}/${opts.runs} (${order.join(', ')}): manual ${r.manual.seconds.toFixed(2)} s; ` +
        `copies ${c.seconds.toFixed(2)} s, ratio ${c.ratio.toFixed(3)}, downtime ${c.downtimeSeconds.toFixed(2)} s, before the stop ${c.preStopSeconds.toFixed(2)} s; ` +
        `upload ${u.seconds.toFixed(2)} s, ratio ${u.ratio.toFixed(3)}, downtime ${u.downtimeSeconds.toFixed(2)} s, before the stop ${u.preStopSeconds.toFixed(2)} s; ` +
        `coordinator RSS ${c.coordinatorPeakRssMiB} / ${u.coordinatorPeakRssMiB} MiB, CPU ${c.cpuSeconds.coordinator} / ${u.cpuSeconds.coordinator} s; ` +
        `agents CPU ${c.cpuSeconds.agents} / ${u.cpuSeconds.agents} s (copies / upload)` +
        (problems.length ? `; PROBLEM: ${problems.join('; ')}` : ''),
    );
  }
  for (const b of [upload, copies])
    await rm(join(sandbox.repoDir, b.manifest.cluster, 'backups', b.manifest.id), { recursive: true, force: true });
}

export function emptyRestoreResult(sizeMiB: number): RestoreSizeResult {
  return {
    sizeMiB,
    sandbox: 'fresh',
    quotaBackendBytes: 0,
    sandboxStartSeconds: 0,
    fillSeconds: 0,
    backups: {},
    loadAverage: { before: loadavg().map((x) => round(x, 2)), after: [] },
    runs: [],
    median: undefined,
    max: undefined,
    targets: RESTORE_TARGETS,
    pass: { ratio: false, checks: false },
  };
}

/** Fills in the medians and verdicts of a restore result (also after an error: the runs measured so far). */
export function finishRestoreResult(r: RestoreSizeResult): RestoreSizeResult {
  r.loadAverage.after = loadavg().map((x) => round(x, 2));
  r.median = summarizeRestore(r.runs);
  const maxOf = (mode: KburMode, f: (x: KburRestoreRunResult) => number): number => Math.max(...r.runs.map((x) => f(x.kbur[mode])));
  r.max = r.runs.length
    ? {
        coordinatorPeakRssMiB: {
          copies: maxOf('copies', (x) => x.coordinatorPeakRssMiB),
          upload: maxOf('upload', (x) => x.coordinatorPeakRssMiB),
        },
        agentPeakRssMiB: Math.max(...KBUR_MODES.map((mode) => maxOf(mode, (x) => x.agentPeakRssMiB))),
      }
    : undefined;
  r.pass = {
    ratio: r.error === undefined && r.median !== undefined && r.median.kbur[RESTORE_TARGETS.kburMode].ratio <= RESTORE_TARGETS.ratioMax,
    checks: r.error === undefined && r.runs.length > 0 && r.runs.every((x) => x.problems.length === 0),
  };
  return r;
}
