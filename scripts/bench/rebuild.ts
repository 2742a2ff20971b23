/**
 * The rebuild scenario (issue 11): every node reset as `kubeadm reset` leaves it (test/sandbox's
 * resetNode, as the rebuild integration tests do), then the control plane rebuilt from one backup:
 * `kbur restore ID --with-kubernetes-dir --yes` against the manual procedure (each node's
 * /etc/kubernetes unpacked from its archive, `etcdctl snapshot restore` of each member, the static
 * pod manifests put back), in rotating order; the cluster checked after each. kbur rebuilds twice
 * per run: from the snapshot copies the nodes kept through the reset (a backup taken with
 * backup.copySnapshotToNodes; kubeadm reset does not touch the agent's state dir), and with the
 * snapshot uploaded (a backup without copies: what brand-new machines get).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Manifest } from '../../shared/manifest.js';
import type { Sandbox } from '../../test/sandbox/cluster.js';
import { clusterIdentity, waitHealthy } from './etcd.js';
import { failure, measure } from './proc.js';
import { REBUILD_METHOD, rebuildMarkdown, rebuildText } from './rebuild-report.js';
import { etcdctlRestoreArgs } from './restore-manual.js';
import { assertCopiesKept, checkRestored, removeLeftovers, writeCopiesConfig } from './restore-cluster.js';
import { KBUR_MODES, KBUR_MODE_TEXT, type KburMode, type KburStep, assertStaged, kburRestore } from './restore-kbur.js';
import { type KeptBackup, takeRestoreBackup } from './restore.js';
import { type Context, type Scenario, measureInto } from './scenario.js';
import { ETCDCTL_ENV, log, median, round } from './util.js';

/** The target applies to the rebuild from the copies the reset nodes kept; the upload is reported beside it. */
export const REBUILD_TARGETS = { ratioMax: 1.3, kburMode: 'copies' } as const;

export const REBUILD_MANUAL_STEPS = ['copy', 'unpack', 'restore', 'start'] as const;

export type RebuildManualStep = (typeof REBUILD_MANUAL_STEPS)[number];

/** The procedures of a run; run i starts at the i-th (mod 3) and goes round. */
export const REBUILD_PROCEDURES = ['manual', ...KBUR_MODES] as const;

export type RebuildProcedure = (typeof REBUILD_PROCEDURES)[number];

/** The manual procedure's copies of the snapshot and archive, in each node's dir. */
const MANUAL_DIR = 'bench-rebuild';

export interface RebuildKburRun {
  backupId: string;
  restoreId: string;
  seconds: number;
  /** This kbur rebuild / the whole manual procedure of the same run (its cp included). */
  ratio: number;
  coordinatorPeakRssMiB: number;
  cpuSeconds: { coordinator: number; agents: number; agentChildren: number };
  steps: Partial<Record<KburStep, number>>;
  check: string;
}

export interface RebuildRun {
  run: number;
  order: RebuildProcedure[];
  manualSeconds: number;
  manualSteps: Record<RebuildManualStep, number>;
  kbur: Record<KburMode, RebuildKburRun>;
  checks: { manual: string };
  problems: string[];
}

export interface RebuildModeSummary {
  seconds: number;
  ratio: number;
  cpuSeconds: { coordinator: number; agents: number; agentChildren: number };
  steps: Partial<Record<KburStep, number>>;
}

export interface RebuildSizeResult {
  sizeMiB: number;
  sandbox: 'reused' | 'fresh';
  backups: Partial<Record<KburMode, string>>;
  snapshotMiB: number;
  loadAverage: { before: number[]; after: number[] };
  runs: RebuildRun[];
  median: { manualSeconds: number; manualSteps: Record<RebuildManualStep, number>; kbur: Record<KburMode, RebuildModeSummary> } | undefined;
  max: { coordinatorPeakRssMiB: number } | undefined;
  targets: typeof REBUILD_TARGETS;
  pass: { ratio: boolean; checks: boolean };
  error?: string;
}

export interface RebuildSection {
  targets: typeof REBUILD_TARGETS;
  method: string[];
  results: RebuildSizeResult[];
}

/** Every node as kubeadm reset leaves it (untimed); their agents and the kubelet keep running. */
async function resetAll(sandbox: Sandbox): Promise<void> {
  for (const n of sandbox.nodes) await sandbox.resetNode(n.name);
}

/**
 * By hand, on nodes that kubeadm reset emptied: each node's snapshot and archive copied onto it,
 * /etc/kubernetes unpacked but for manifests/ (else the kubelet would start etcd on an empty
 * data dir), every member restored by etcdctl into its data dir, then manifests/ unpacked too,
 * until every member answers. The nodes in parallel, as an operator with a shell on each would.
 */
async function manualRebuild(
  sandbox: Sandbox,
  manifest: Manifest,
  signal: AbortSignal,
): Promise<{ seconds: number; steps: Record<RebuildManualStep, number> }> {
  const backupDir = join(sandbox.repoDir, manifest.cluster, 'backups', manifest.id);
  const snapshot = join(backupDir, manifest.artifacts.find((a) => a.kind === 'etcd-snapshot')!.path);
  const archiveOf = (node: string): string => {
    const a = manifest.artifacts.find((x) => x.kind === 'kubernetes-dir' && x.node === node);
    if (!a) throw new Error(`backup ${manifest.id} has no kubernetes dir archive of ${node}`);
    return join(backupDir, a.path);
  };
  const token = `bench-rebuild-${randomBytes(4).toString('hex')}`;
  const steps = {} as Record<RebuildManualStep, number>;
  const t0 = performance.now();
  let mark = t0;
  const lap = (step: RebuildManualStep): void => {
    const now = performance.now();
    steps[step] = round((now - mark) / 1000);
    mark = now;
  };
  const run = async (what: string, cmd: string, args: string[]): Promise<void> => {
    const m = await measure(cmd, args, ETCDCTL_ENV, signal);
    if (m.code !== 0) throw failure(what, m);
  };
  const local = sandbox.nodes.map((n) => ({ n, dir: join(n.dir, MANUAL_DIR) }));
  await Promise.all(
    local.map(async ({ n, dir }) => {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await run(`cp of the snapshot to ${n.name}`, 'cp', [snapshot, join(dir, 'snapshot.db')]);
      await run(`cp of ${n.name}'s archive`, 'cp', [archiveOf(n.name), join(dir, 'kubernetes.tar')]);
    }),
  );
  lap('copy');
  await Promise.all(
    local.map(({ n, dir }) =>
      run(`tar -x of ${n.name}'s /etc/kubernetes`, 'tar', [
        '-xpf',
        join(dir, 'kubernetes.tar'),
        '-C',
        n.kubernetesDir,
        '--exclude=./manifests',
      ]),
    ),
  );
  lap('unpack');
  await Promise.all(
    local.map(async ({ n, dir }) => {
      // kubeadm reset leaves the data dir empty; etcdctl restores only into a dir that does not exist.
      await rm(n.dataDir, { recursive: true, force: true });
      await run(
        `etcdctl snapshot restore on ${n.name}`,
        'etcdctl',
        etcdctlRestoreArgs(join(dir, 'snapshot.db'), n, sandbox.nodes, token, n.dataDir),
      );
    }),
  );
  lap('restore');
  await Promise.all(
    local.map(({ n, dir }) =>
      run(`tar -x of ${n.name}'s manifests`, 'tar', ['-xpf', join(dir, 'kubernetes.tar'), '-C', n.kubernetesDir, './manifests']),
    ),
  );
  await waitHealthy(sandbox, signal);
  lap('start');
  for (const { dir } of local) await rm(dir, { recursive: true, force: true });
  return { seconds: (performance.now() - t0) / 1000, steps };
}

/** What kbur moved aside inside /etc/kubernetes for the restore `id` (kbur-*-<id>): removed between runs. */
async function removeMovedAside(sandbox: Sandbox, id: string): Promise<void> {
  for (const n of sandbox.nodes)
    for (const e of await readdir(n.kubernetesDir).catch(() => [] as string[]))
      if (e.startsWith('kbur-') && e.endsWith(`-${id}`)) await rm(join(n.kubernetesDir, e), { recursive: true, force: true });
}

function finish(r: RebuildSizeResult): void {
  r.loadAverage.after = loadavg().map((x) => round(x, 2));
  if (r.runs.length) {
    const m = (f: (x: RebuildRun) => number, digits = 3): number => round(median(r.runs.map(f)), digits);
    const mode = (k: KburMode): RebuildModeSummary => {
      const steps: Partial<Record<KburStep, number>> = {};
      for (const step of Object.keys(r.runs[0]!.kbur[k].steps) as KburStep[]) {
        const xs = r.runs.map((x) => x.kbur[k].steps[step]).filter((x): x is number => x !== undefined);
        if (xs.length) steps[step] = round(median(xs));
      }
      return {
        seconds: m((x) => x.kbur[k].seconds),
        ratio: m((x) => x.kbur[k].ratio),
        cpuSeconds: {
          coordinator: m((x) => x.kbur[k].cpuSeconds.coordinator, 2),
          agents: m((x) => x.kbur[k].cpuSeconds.agents, 2),
          agentChildren: m((x) => x.kbur[k].cpuSeconds.agentChildren, 2),
        },
        steps,
      };
    };
    r.median = {
      manualSeconds: m((x) => x.manualSeconds),
      manualSteps: Object.fromEntries(REBUILD_MANUAL_STEPS.map((s) => [s, m((x) => x.manualSteps[s])])) as Record<
        RebuildManualStep,
        number
      >,
      kbur: { copies: mode('copies'), upload: mode('upload') },
    };
    r.max = { coordinatorPeakRssMiB: Math.max(...r.runs.flatMap((x) => KBUR_MODES.map((k) => x.kbur[k].coordinatorPeakRssMiB))) };
  }
  r.pass = {
    ratio: r.error === undefined && r.median !== undefined && r.median.kbur[REBUILD_TARGETS.kburMode].ratio <= REBUILD_TARGETS.ratioMax,
    checks: r.error === undefined && r.runs.length > 0 && r.runs.every((x) => x.problems.length === 0),
  };
}

async function benchRebuild(ctx: Context, r: RebuildSizeResult): Promise<void> {
  const { sizeMiB, opts } = ctx;
  const signal = ctx.state.abort.signal;
  const { filled, reused } = await ctx.filled();
  r.sandbox = reused ? 'reused' : 'fresh';
  const { sandbox } = filled;
  await waitHealthy(sandbox, signal);
  // The upload's backup first: the agents keep copies of the newest backups only (localSnapshots.keep, 1 by default).
  const copiesConfig = await writeCopiesConfig(sandbox);
  const upload = await takeRestoreBackup(sizeMiB, sandbox, 'upload', sandbox.coordinatorConfig, signal, 'rebuild');
  const copies = await takeRestoreBackup(sizeMiB, sandbox, 'copies', copiesConfig, signal, 'rebuild');
  const kept: Record<KburMode, KeptBackup> = { copies, upload };
  r.backups = { copies: copies.info.id, upload: upload.info.id };
  r.snapshotMiB = copies.info.snapshotMiB;
  const members = (await clusterIdentity(sandbox)).members;
  const want = (k: KeptBackup): { members: string[]; keyCount: number; registryKeyCount: number } => ({
    members,
    keyCount: k.info.keyCount,
    registryKeyCount: k.info.registryKeyCount,
  });
  const agentPids = sandbox.nodes.map((n) => {
    const pid = sandbox.agentPid(n.name);
    if (pid === undefined) throw new Error(`the agent of ${n.name} does not run`);
    return pid;
  });
  for (let i = 0; i < opts.runs; i++) {
    const order = REBUILD_PROCEDURES.map((_, j) => REBUILD_PROCEDURES[(i + j) % REBUILD_PROCEDURES.length]!);
    let manual: { seconds: number; steps: Record<RebuildManualStep, number>; check: Awaited<ReturnType<typeof checkRestored>> } | undefined;
    const kbur: Partial<Record<KburMode, RebuildKburRun & { problems: string[] }>> = {};
    for (const procedure of order) {
      const before = (await clusterIdentity(sandbox)).clusterIds[0] ?? '';
      log(`${sizeMiB} MiB rebuild run ${i + 1}: resetting every node (untimed)`);
      await resetAll(sandbox);
      // What the copies mode stands on: the copies the agents keep are still there after the reset.
      await assertCopiesKept(sandbox, copies.info);
      await sleep(1_000, undefined, { signal });
      if (procedure === 'manual') {
        const got = await manualRebuild(sandbox, copies.manifest, signal);
        manual = { ...got, check: await checkRestored(sandbox, { ...want(copies), clusterIdBefore: before }, signal) };
      } else {
        const b = kept[procedure].info;
        const got = await kburRestore(sandbox, b.config, b.id, agentPids, signal, ['--with-kubernetes-dir']);
        assertStaged(procedure, got, sandbox.nodes);
        const check = await checkRestored(sandbox, { ...want(kept[procedure]), clusterIdBefore: before }, signal);
        kbur[procedure] = {
          backupId: b.id,
          restoreId: got.restoreId,
          seconds: round(got.measured.seconds),
          ratio: 0,
          coordinatorPeakRssMiB: round(got.measured.peakRssKiB / 1024, 1),
          cpuSeconds: {
            coordinator: round(got.measured.cpuSeconds, 2),
            agents: round(got.agentCpu, 2),
            agentChildren: round(got.agentChildrenCpu, 2),
          },
          steps: got.steps,
          check: check.summary,
          problems: check.problems,
        };
        await removeMovedAside(sandbox, got.restoreId);
      }
      await removeLeftovers(sandbox, copies.manifest.cluster);
    }
    if (!manual || !kbur.copies || !kbur.upload) throw new Error(`rebuild run ${i + 1} did not measure all three procedures`);
    const runOf = (mode: KburMode): RebuildKburRun => {
      const k = kbur[mode]!;
      return {
        backupId: k.backupId,
        restoreId: k.restoreId,
        seconds: k.seconds,
        ratio: round(k.seconds / manual.seconds),
        coordinatorPeakRssMiB: k.coordinatorPeakRssMiB,
        cpuSeconds: k.cpuSeconds,
        steps: k.steps,
        check: k.check,
      };
    };
    const x: RebuildRun = {
      run: i + 1,
      order,
      manualSeconds: round(manual.seconds),
      manualSteps: manual.steps,
      kbur: { copies: runOf('copies'), upload: runOf('upload') },
      checks: { manual: manual.check.summary },
      problems: [
        ...manual.check.problems.map((p) => `manual: ${p}`),
        ...KBUR_MODES.flatMap((mode) => kbur[mode]!.problems.map((p) => `${KBUR_MODE_TEXT[mode]}: ${p}`)),
      ],
    };
    r.runs.push(x);
    log(
      `${sizeMiB} MiB rebuild run ${i + 1}/${opts.runs} (${order.join(', ')}): manual ${x.manualSeconds.toFixed(2)} s (${REBUILD_MANUAL_STEPS.map((s) => `${s} ${x.manualSteps[s].toFixed(2)}`).join(', ')}), ` +
        KBUR_MODES.map(
          (mode) =>
            `${KBUR_MODE_TEXT[mode]} ${x.kbur[mode].seconds.toFixed(2)} s, ratio ${x.kbur[mode].ratio.toFixed(3)} (${Object.entries(
              x.kbur[mode].steps,
            )
              .map(([s, t]) => `${s} ${t.toFixed(2)}`)
              .join(', ')})`,
        ).join('; ') +
        (x.problems.length ? `; PROBLEM: ${x.problems.join('; ')}` : ''),
    );
  }
  for (const k of [copies, upload])
    await rm(join(sandbox.repoDir, k.manifest.cluster, 'backups', k.manifest.id), { recursive: true, force: true });
}

export const rebuildScenario: Scenario = {
  name: 'rebuild',
  title: '`kbur restore --with-kubernetes-dir` onto reset nodes (from the copies they kept, and uploaded) against the manual rebuild',
  missing: async () => undefined,
  sizes: (opts) => [opts.size],
  // Its last run leaves a healthy cluster, but a rebuilt one: later scenarios get a fresh sandbox.
  consumesSandbox: true,
  async run(ctx) {
    const section = (ctx.report.rebuild ??= { targets: REBUILD_TARGETS, method: REBUILD_METHOD, results: [] });
    const r: RebuildSizeResult = {
      sizeMiB: ctx.sizeMiB,
      sandbox: 'fresh',
      backups: {},
      snapshotMiB: 0,
      loadAverage: { before: loadavg().map((x) => round(x, 2)), after: [] },
      runs: [],
      median: undefined,
      max: undefined,
      targets: REBUILD_TARGETS,
      pass: { ratio: false, checks: false },
    };
    section.results.push(r);
    await measureInto(r, () => benchRebuild(ctx, r), finish);
  },
  text: (report) => (report.rebuild ? rebuildText(report) : []),
  markdown: (report) => (report.rebuild ? rebuildMarkdown(report) : []),
};
