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
import { kburBackup } from './backup.js';
import { DEEP_VERIFY_METHOD, deepVerifyMarkdown, deepVerifyText } from './deep-verify-report.js';
import { failure, measure } from './proc.js';
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

async function benchDeepVerify(ctx: Context, r: DeepVerifySizeResult): Promise<void> {
  const { sizeMiB, opts, dir } = ctx;
  const signal = ctx.state.abort.signal;
  const { filled, reused } = await ctx.filled();
  r.sandbox = reused ? 'reused' : 'fresh';
  const { sandbox } = filled;
  // The scratch etcd's folder inside the bench's own, not the system's temp dir.
  const config = join(dir, 'kbur-deep.yaml');
  const base = parse(await readFile(sandbox.coordinatorConfig, 'utf8')) as Record<string, unknown>;
  await writeFile(config, stringify({ ...base, scratch: { dir } }), { mode: 0o600 });
  log(`${sizeMiB} MiB deep-verify: taking the backup to verify (kbur backup --json, kept)`);
  const backup = await kburBackup(sandbox, signal, true, config);
  const m = backup.manifest;
  const artifact = m.artifacts.find((a) => a.kind === 'etcd-snapshot')!;
  const snapshot = join(sandbox.repoDir, m.cluster, 'backups', m.id, artifact.path);
  r.backupId = m.id;
  r.snapshotMiB = toMiB(artifact.size);
  const dataDir = join(dir, 'etcdctl-restore.etcd');
  try {
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
        `${sizeMiB} MiB deep-verify run ${i + 1}/${opts.runs} (${order}): kbur verify --deep ${x.kburSeconds.toFixed(2)} s, etcdctl snapshot restore ${x.etcdctlSeconds.toFixed(2)} s, ratio ${x.ratio.toFixed(3)}; coordinator RSS ${x.coordinatorPeakRssMiB} MiB`,
      );
    }
  } finally {
    await rm(join(sandbox.repoDir, m.cluster, 'backups', m.id), { recursive: true, force: true });
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
  },
  text: (report) => (report.deepVerify ? deepVerifyText(report) : []),
  markdown: (report) => (report.deepVerify ? deepVerifyMarkdown(report) : []),
};
