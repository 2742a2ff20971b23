/**
 * The rebuild scenario (issue 11): every node reset as `kubeadm reset` leaves it (test/sandbox's
 * resetNode, as the rebuild integration tests do), then the control plane rebuilt from one backup:
 * `kbur restore ID --with-kubernetes-dir --yes` against the manual procedure (each node's
 * /etc/kubernetes unpacked from its archive, `etcdctl snapshot restore` of each member, the static
 * pod manifests put back), in rotating order; the cluster checked after each.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Manifest } from '../../shared/manifest.js';
import { NODE_FLAGS } from '../../shared/node-flags.js';
import { KBUR_BIN } from '../../test/helpers/kbur.js';
import type { Sandbox } from '../../test/sandbox/cluster.js';
import { kburBackup } from './backup.js';
import { clusterIdentity, keyCounts, waitHealthy } from './etcd.js';
import { failure, measure } from './proc.js';
import { REBUILD_METHOD, rebuildMarkdown, rebuildText } from './rebuild-report.js';
import { checkRestored, removeLeftovers } from './restore-cluster.js';
import { type Context, type Scenario, measureInto } from './scenario.js';
import { ETCDCTL_ENV, log, median, round, toMiB } from './util.js';

export const REBUILD_TARGETS = { ratioMax: 1.3 } as const;

export const REBUILD_MANUAL_STEPS = ['copy', 'unpack', 'restore', 'start'] as const;

export type RebuildManualStep = (typeof REBUILD_MANUAL_STEPS)[number];

/** The manual procedure's copies of the snapshot and archive, in each node's dir. */
const MANUAL_DIR = 'bench-rebuild';

export interface RebuildRun {
  run: number;
  order: ('manual' | 'kbur')[];
  manualSeconds: number;
  manualSteps: Record<RebuildManualStep, number>;
  kburSeconds: number;
  ratio: number;
  coordinatorPeakRssMiB: number;
  restoreId: string;
  checks: { manual: string; kbur: string };
  problems: string[];
}

export interface RebuildSizeResult {
  sizeMiB: number;
  sandbox: 'reused' | 'fresh';
  backupId: string;
  snapshotMiB: number;
  loadAverage: { before: number[]; after: number[] };
  runs: RebuildRun[];
  median: { manualSeconds: number; kburSeconds: number; ratio: number; manualSteps: Record<RebuildManualStep, number> } | undefined;
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
  const initialCluster = sandbox.nodes.map((n) => `${n.name}=${n.peerUrl}`).join(',');
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
      await run(`etcdctl snapshot restore on ${n.name}`, 'etcdctl', [
        'snapshot',
        'restore',
        join(dir, 'snapshot.db'),
        '--name',
        n.name,
        '--initial-cluster',
        initialCluster,
        '--initial-cluster-token',
        token,
        '--initial-advertise-peer-urls',
        n.peerUrl,
        '--data-dir',
        n.dataDir,
      ]);
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
    const m = (f: (x: RebuildRun) => number): number => round(median(r.runs.map(f)));
    r.median = {
      manualSeconds: m((x) => x.manualSeconds),
      kburSeconds: m((x) => x.kburSeconds),
      ratio: m((x) => x.ratio),
      manualSteps: Object.fromEntries(REBUILD_MANUAL_STEPS.map((s) => [s, m((x) => x.manualSteps[s])])) as Record<
        RebuildManualStep,
        number
      >,
    };
    r.max = { coordinatorPeakRssMiB: Math.max(...r.runs.map((x) => x.coordinatorPeakRssMiB)) };
  }
  r.pass = {
    ratio: r.error === undefined && r.median !== undefined && r.median.ratio <= REBUILD_TARGETS.ratioMax,
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
  log(`${sizeMiB} MiB rebuild: taking the backup to rebuild from (kbur backup --json, kept)`);
  const backup = await kburBackup(sandbox, signal, true);
  const m = backup.manifest;
  r.backupId = m.id;
  r.snapshotMiB = toMiB(backup.snapshotBytes);
  const registry = (await keyCounts(sandbox, sandbox.nodes[0]!)).registry;
  const want = { members: (await clusterIdentity(sandbox)).members, keyCount: m.etcd!.keyCount, registryKeyCount: registry };
  for (let i = 0; i < opts.runs; i++) {
    const order: RebuildRun['order'] = i % 2 === 0 ? ['manual', 'kbur'] : ['kbur', 'manual'];
    let manual: { seconds: number; steps: Record<RebuildManualStep, number>; check: Awaited<ReturnType<typeof checkRestored>> } | undefined;
    let kbur:
      { measured: Awaited<ReturnType<typeof measure>>; restoreId: string; check: Awaited<ReturnType<typeof checkRestored>> } | undefined;
    for (const procedure of order) {
      const before = (await clusterIdentity(sandbox)).clusterIds[0] ?? '';
      log(`${sizeMiB} MiB rebuild run ${i + 1}: resetting every node (untimed)`);
      await resetAll(sandbox);
      await sleep(1_000, undefined, { signal });
      if (procedure === 'manual') {
        const got = await manualRebuild(sandbox, m, signal);
        manual = { ...got, check: await checkRestored(sandbox, { ...want, clusterIdBefore: before }, signal) };
      } else {
        const measured = await measure(
          process.execPath,
          [...NODE_FLAGS, KBUR_BIN, '--config', sandbox.coordinatorConfig, 'restore', m.id, '--with-kubernetes-dir', '--yes'],
          process.env,
          signal,
        );
        if (measured.code !== 0) throw failure(`kbur restore ${m.id} --with-kubernetes-dir --yes`, measured);
        const restoreId = /^restore (\S+) started;/m.exec(measured.stdout)?.[1];
        if (!restoreId) throw new Error('kbur restore exited 0 but never printed "restore <id> started;"');
        kbur = { measured, restoreId, check: await checkRestored(sandbox, { ...want, clusterIdBefore: before }, signal) };
        await removeMovedAside(sandbox, restoreId);
      }
      await removeLeftovers(sandbox, m.cluster);
    }
    if (!manual || !kbur) throw new Error(`rebuild run ${i + 1} did not measure both`);
    const x: RebuildRun = {
      run: i + 1,
      order,
      manualSeconds: round(manual.seconds),
      manualSteps: manual.steps,
      kburSeconds: round(kbur.measured.seconds),
      ratio: round(kbur.measured.seconds / manual.seconds),
      coordinatorPeakRssMiB: round(kbur.measured.peakRssKiB / 1024, 1),
      restoreId: kbur.restoreId,
      checks: { manual: manual.check.summary, kbur: kbur.check.summary },
      problems: [...manual.check.problems.map((p) => `manual: ${p}`), ...kbur.check.problems.map((p) => `kbur: ${p}`)],
    };
    r.runs.push(x);
    log(
      `${sizeMiB} MiB rebuild run ${i + 1}/${opts.runs} (${order.join(', ')}): manual ${x.manualSeconds.toFixed(2)} s (${REBUILD_MANUAL_STEPS.map((s) => `${s} ${x.manualSteps[s].toFixed(2)}`).join(', ')}), kbur ${x.kburSeconds.toFixed(2)} s, ratio ${x.ratio.toFixed(3)}` +
        (x.problems.length ? `; PROBLEM: ${x.problems.join('; ')}` : ''),
    );
  }
  await rm(join(sandbox.repoDir, m.cluster, 'backups', m.id), { recursive: true, force: true });
}

export const rebuildScenario: Scenario = {
  name: 'rebuild',
  title: '`kbur restore --with-kubernetes-dir` onto reset nodes against the manual rebuild',
  missing: async () => undefined,
  sizes: (opts) => [opts.size],
  // Its last run leaves a healthy cluster, but a rebuilt one: later scenarios get a fresh sandbox.
  consumesSandbox: true,
  async run(ctx) {
    const section = (ctx.report.rebuild ??= { targets: REBUILD_TARGETS, method: REBUILD_METHOD, results: [] });
    const r: RebuildSizeResult = {
      sizeMiB: ctx.sizeMiB,
      sandbox: 'fresh',
      backupId: '',
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
