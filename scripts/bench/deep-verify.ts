/**
 * The deep-verify scenario (issue 16): `kbur verify --deep ID` of a kept backup (its snapshot
 * restored into a scratch etcd, started, its keys counted and compared with the manifest) against
 * `etcdctl snapshot restore` alone of the same snapshot file, in alternating runs.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse, stringify } from 'yaml';
import { NODE_FLAGS } from '../../shared/node-flags.js';
import { KBUR_BIN } from '../../test/helpers/kbur.js';
import type { Manifest } from '../../shared/manifest.js';
import { kburBackup } from './backup.js';
import { DEEP_VERIFY_METHOD, deepVerifyMarkdown, deepVerifyText } from './deep-verify-report.js';
import { kubernetesShapedSnapshot } from './kubernetes-snapshot.js';
import { failure, measure } from './proc.js';
import type { FilledSandbox } from './sandbox.js';
import { type Context, type Scenario, measureInto } from './scenario.js';
import { ETCDCTL_ENV, log, median, round, toMiB } from './util.js';

export const DEEP_VERIFY_TARGETS = { ratioMax: 1.5, rssMaxMiB: 150 } as const;

export interface DeepVerifyRun {
  run: number;
  order: 'etcdctl-first' | 'kbur-first';
  kburSeconds: number;
  etcdctlSeconds: number;
  ratio: number;
  coordinatorPeakRssMiB: number;
  etcdctlPeakRssMiB: number;
  /** CPU (utime+stime) of the kbur process alone (not its scratch etcd and restore tool), and of etcdctl. */
  cpuSeconds: { kbur: number; etcdctl: number };
}

export interface DeepVerifySizeResult {
  sizeMiB: number;
  /** The sandbox's fill (1 MiB values outside /registry/), or a snapshot of Kubernetes objects of about the same size, imported. */
  shape?: 'kubernetes';
  sandbox: 'reused' | 'fresh';
  backupId: string;
  snapshotMiB: number;
  loadAverage: { before: number[]; after: number[] };
  runs: DeepVerifyRun[];
  median: { kburSeconds: number; etcdctlSeconds: number; ratio: number } | undefined;
  max: { coordinatorPeakRssMiB: number } | undefined;
  targets: typeof DEEP_VERIFY_TARGETS;
  pass: { ratio: boolean; rss: boolean };
  error?: string;
}

export interface DeepVerifySection {
  targets: typeof DEEP_VERIFY_TARGETS;
  method: string[];
  results: DeepVerifySizeResult[];
}

function finish(r: DeepVerifySizeResult): void {
  r.loadAverage.after = loadavg().map((x) => round(x, 2));
  if (r.runs.length) {
    const m = (f: (x: DeepVerifyRun) => number): number => round(median(r.runs.map(f)));
    r.median = { kburSeconds: m((x) => x.kburSeconds), etcdctlSeconds: m((x) => x.etcdctlSeconds), ratio: m((x) => x.ratio) };
    r.max = { coordinatorPeakRssMiB: Math.max(...r.runs.map((x) => x.coordinatorPeakRssMiB)) };
  }
  r.pass = {
    ratio: r.error === undefined && r.median !== undefined && r.median.ratio <= DEEP_VERIFY_TARGETS.ratioMax,
    rss: r.error === undefined && r.max !== undefined && r.max.coordinatorPeakRssMiB < DEEP_VERIFY_TARGETS.rssMaxMiB,
  };
}

/** The sandbox's kbur.yaml with the scratch etcd's folder inside the bench's own, not the system's temp dir. */
async function deepConfig(ctx: Context, sandbox: FilledSandbox['sandbox']): Promise<string> {
  const config = join(ctx.dir, 'kbur-deep.yaml');
  const base = parse(await readFile(sandbox.coordinatorConfig, 'utf8')) as Record<string, unknown>;
  await writeFile(config, stringify({ ...base, scratch: { dir: ctx.dir } }), { mode: 0o600 });
  return config;
}

async function benchDeepVerify(ctx: Context, r: DeepVerifySizeResult): Promise<void> {
  const signal = ctx.state.abort.signal;
  const { filled, reused } = await ctx.filled();
  r.sandbox = reused ? 'reused' : 'fresh';
  const { sandbox } = filled;
  const config = await deepConfig(ctx, sandbox);
  log(`${ctx.sizeMiB} MiB deep-verify: taking the backup to verify (kbur backup --json, kept)`);
  const m = (await kburBackup(sandbox, signal, true, config)).manifest;
  try {
    await measureRuns(ctx, r, config, m);
  } finally {
    await rm(join(sandbox.repoDir, m.cluster, 'backups', m.id), { recursive: true, force: true });
  }
}

/** The same at the fill's snapshot size, on a snapshot of Kubernetes objects imported with `kbur import` (untimed). */
async function benchKubernetesShaped(ctx: Context, r: DeepVerifySizeResult, snapshotMiB: number): Promise<void> {
  const signal = ctx.state.abort.signal;
  const { filled } = await ctx.filled();
  r.sandbox = 'reused';
  const { sandbox } = filled;
  const config = await deepConfig(ctx, sandbox);
  const file = join(ctx.dir, 'kubernetes-shaped.db');
  log(`${ctx.sizeMiB} MiB deep-verify: a ${snapshotMiB} MiB snapshot of Kubernetes objects (1 MiB configmaps), imported`);
  await kubernetesShapedSnapshot({ dir: ctx.dir, network: ctx.opts.network, snapshotMiB, file, signal });
  const imported = await measure(
    process.execPath,
    [...NODE_FLAGS, KBUR_BIN, '--config', config, 'import', file, '--json'],
    process.env,
    signal,
  );
  await rm(file, { force: true });
  if (imported.code !== 0) throw failure('kbur import of the Kubernetes-shaped snapshot', imported);
  const m = JSON.parse(imported.stdout) as Manifest;
  try {
    await measureRuns(ctx, r, config, m);
  } finally {
    await rm(join(sandbox.repoDir, m.cluster, 'backups', m.id), { recursive: true, force: true });
  }
}

/** `kbur verify --deep` of backup `m` against `etcdctl snapshot restore` of its snapshot file, alternating, into `r.runs`. */
async function measureRuns(ctx: Context, r: DeepVerifySizeResult, config: string, m: Manifest): Promise<void> {
  const { sizeMiB, opts, dir } = ctx;
  const signal = ctx.state.abort.signal;
  const { sandbox } = (await ctx.filled()).filled;
  const artifact = m.artifacts.find((a) => a.kind === 'etcd-snapshot')!;
  const snapshot = join(sandbox.repoDir, m.cluster, 'backups', m.id, artifact.path);
  r.backupId = m.id;
  r.snapshotMiB = toMiB(artifact.size);
  const what = `${sizeMiB} MiB deep-verify${r.shape ? ` (${r.shape}-shaped)` : ''}`;
  const dataDir = join(dir, 'etcdctl-restore.etcd');
  for (let i = 0; i < opts.runs; i++) {
    const order = i % 2 === 0 ? 'etcdctl-first' : 'kbur-first';
    let k: Awaited<ReturnType<typeof measure>> | undefined;
    let e: Awaited<ReturnType<typeof measure>> | undefined;
    const doKbur = async (): Promise<void> => {
      k = await measure(process.execPath, [...NODE_FLAGS, KBUR_BIN, '--config', config, 'verify', '--deep', m.id], process.env, signal);
      if (k.code !== 0) throw failure(`kbur verify --deep ${m.id}`, k);
    };
    const doEtcdctl = async (): Promise<void> => {
      try {
        e = await measure('etcdctl', ['snapshot', 'restore', snapshot, `--data-dir=${dataDir}`], ETCDCTL_ENV, signal);
        if (e.code !== 0) throw failure('etcdctl snapshot restore', e);
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    };
    for (const step of order === 'etcdctl-first' ? [doEtcdctl, doKbur] : [doKbur, doEtcdctl]) {
      await sleep(1_000, undefined, { signal });
      await step();
    }
    if (!k || !e) throw new Error(`deep-verify run ${i + 1} did not measure both`);
    const x: DeepVerifyRun = {
      run: i + 1,
      order,
      kburSeconds: round(k.seconds),
      etcdctlSeconds: round(e.seconds),
      ratio: round(k.seconds / e.seconds),
      coordinatorPeakRssMiB: round(k.peakRssKiB / 1024, 1),
      etcdctlPeakRssMiB: round(e.peakRssKiB / 1024, 1),
      cpuSeconds: { kbur: round(k.cpuSeconds, 2), etcdctl: round(e.cpuSeconds, 2) },
    };
    r.runs.push(x);
    log(
      `${what} run ${i + 1}/${opts.runs} (${order}): kbur verify --deep ${x.kburSeconds.toFixed(2)} s, etcdctl snapshot restore ${x.etcdctlSeconds.toFixed(2)} s, ratio ${x.ratio.toFixed(3)}; coordinator RSS ${x.coordinatorPeakRssMiB} MiB`,
    );
  }
}

export const deepVerifyScenario: Scenario = {
  name: 'deep-verify',
  title: '`kbur verify --deep` against `etcdctl snapshot restore` of the same snapshot',
  missing: async () => undefined,
  sizes: (opts) => [opts.size],
  async run(ctx) {
    const section = (ctx.report.deepVerify ??= { targets: DEEP_VERIFY_TARGETS, method: DEEP_VERIFY_METHOD, results: [] });
    const r: DeepVerifySizeResult = {
      sizeMiB: ctx.sizeMiB,
      sandbox: 'fresh',
      backupId: '',
      snapshotMiB: 0,
      loadAverage: { before: loadavg().map((x) => round(x, 2)), after: [] },
      runs: [],
      median: undefined,
      max: undefined,
      targets: DEEP_VERIFY_TARGETS,
      pass: { ratio: false, rss: false },
    };
    section.results.push(r);
    await measureInto(r, () => benchDeepVerify(ctx, r), finish);
    const shaped: DeepVerifySizeResult = { ...structuredClone(r), shape: 'kubernetes', runs: [], median: undefined, max: undefined };
    shaped.loadAverage = { before: loadavg().map((x) => round(x, 2)), after: [] };
    section.results.push(shaped);
    await measureInto(shaped, () => benchKubernetesShaped(ctx, shaped, r.snapshotMiB), finish);
  },
  text: (report) => (report.deepVerify ? deepVerifyText(report) : []),
  markdown: (report) => (report.deepVerify ? deepVerifyMarkdown(report) : []),
};
