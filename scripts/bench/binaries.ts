/**
 * The binaries scenario (issue 15): `kbur backup` run as the single executable that
 * `npm run package` makes (dist/package/kbur) against today's bundle (node dist/coordinator/kbur.cjs
 * with the shebang's flags), in alternating runs on the same agents: time from spawn to the first
 * snapshot byte in the repository, and to exit; and the files' sizes.
 */
import { constants } from 'node:fs';
import { access, readdir, stat } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { KBUR_BIN } from '../../test/helpers/kbur.js';
import { KBUR_COMMAND, kburBackup } from './backup.js';
import { BINARIES_METHOD, binariesMarkdown, binariesText } from './binaries-report.js';
import { type Context, type Scenario, measureInto } from './scenario.js';
import { log, median, round } from './util.js';

/** What `npm run package` makes (scripts/package.ts), beside the tsc output. */
export const PACKAGE_DIR = join(dirname(dirname(KBUR_BIN)), 'package');

export const KINDS = ['sea', 'bundle'] as const;

export type BinaryKind = (typeof KINDS)[number];

/** How often the repository is looked at for the snapshot's first byte. */
const FIRST_BYTE_POLL_MS = 2;

export interface BinariesRun {
  run: number;
  order: BinaryKind[];
  /** Spawn to the snapshot's file in the repository holding its first byte, seconds. */
  firstByteSeconds: Record<BinaryKind, number>;
  /** Spawn to exit, seconds. */
  seconds: Record<BinaryKind, number>;
  peakRssMiB: Record<BinaryKind, number>;
}

export interface BinariesSizeResult {
  sizeMiB: number;
  sandbox: 'reused' | 'fresh';
  /** What each kind is made of, bytes: the executables alone; the bundle's files, and the Node it needs beside them. */
  files: { sea: Record<string, number>; bundle: Record<string, number>; node: { path: string; bytes: number } };
  loadAverage: { before: number[]; after: number[] };
  runs: BinariesRun[];
  median: { firstByteSeconds: Record<BinaryKind, number>; seconds: Record<BinaryKind, number> } | undefined;
  max: { peakRssMiB: Record<BinaryKind, number> } | undefined;
  error?: string;
}

export interface BinariesSection {
  method: string[];
  results: BinariesSizeResult[];
}

/**
 * Resolves with the seconds from `t0` until a snapshot file under `repoDir`'s backups that is not
 * in `before` holds a byte (its `.part` while it streams); undefined if `stop` comes first.
 */
async function watchFirstByte(repoDir: string, before: Set<string>, t0: number, stop: AbortSignal): Promise<number | undefined> {
  while (!stop.aborted) {
    for (const cluster of await readdir(repoDir).catch(() => [] as string[])) {
      const backups = join(repoDir, cluster, 'backups');
      for (const id of await readdir(backups).catch(() => [] as string[])) {
        if (before.has(id)) continue;
        for (const f of await readdir(join(backups, id, 'etcd')).catch(() => [] as string[])) {
          if (!f.startsWith('snapshot')) continue;
          const size = await stat(join(backups, id, 'etcd', f)).then(
            (s) => s.size,
            () => 0,
          );
          if (size > 0) return (performance.now() - t0) / 1000;
        }
      }
    }
    await sleep(FIRST_BYTE_POLL_MS);
  }
  return undefined;
}

async function backupIds(repoDir: string): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const cluster of await readdir(repoDir).catch(() => [] as string[]))
    for (const id of await readdir(join(repoDir, cluster, 'backups')).catch(() => [] as string[])) ids.add(id);
  return ids;
}

const bytes = async (file: string): Promise<number> => (await stat(file)).size;

async function benchBinaries(ctx: Context, r: BinariesSizeResult): Promise<void> {
  const { sizeMiB, opts } = ctx;
  const signal = ctx.state.abort.signal;
  const sea = join(PACKAGE_DIR, 'kbur');
  const bundleDir = dirname(KBUR_BIN);
  r.files = {
    sea: { kbur: await bytes(sea), 'kbur-agent': await bytes(join(PACKAGE_DIR, 'kbur-agent')) },
    bundle: Object.fromEntries(
      await Promise.all(['kbur.cjs', 'kbur-bundle.cjs', 'kbur-bundle.cjs.cache'].map(async (f) => [f, await bytes(join(bundleDir, f))])),
    ) as Record<string, number>,
    node: { path: process.execPath, bytes: await bytes(process.execPath) },
  };
  const { filled, reused } = await ctx.filled();
  r.sandbox = reused ? 'reused' : 'fresh';
  const { sandbox } = filled;
  const commands: Record<BinaryKind, string[]> = { sea: [sea], bundle: KBUR_COMMAND };
  log(`${sizeMiB} MiB binaries: warm-up backups (discarded), one of each`);
  for (const kind of KINDS) await kburBackup(sandbox, signal, false, sandbox.coordinatorConfig, commands[kind]);
  for (let i = 0; i < opts.runs; i++) {
    const order: BinaryKind[] = i % 2 === 0 ? ['sea', 'bundle'] : ['bundle', 'sea'];
    const got: Partial<Record<BinaryKind, { firstByte: number; seconds: number; rssKiB: number }>> = {};
    for (const kind of order) {
      await sleep(1_000, undefined, { signal });
      const before = await backupIds(sandbox.repoDir);
      const stop = new AbortController();
      const t0 = performance.now();
      const firstByte = watchFirstByte(sandbox.repoDir, before, t0, stop.signal);
      try {
        const b = await kburBackup(sandbox, signal, false, sandbox.coordinatorConfig, commands[kind]);
        stop.abort();
        const fb = await firstByte;
        if (fb === undefined) throw new Error(`${kind}: the backup ended before its snapshot was seen in ${sandbox.repoDir}`);
        got[kind] = { firstByte: fb, seconds: b.measured.seconds, rssKiB: b.measured.peakRssKiB };
      } finally {
        stop.abort();
        await firstByte;
      }
    }
    const per = (f: (x: { firstByte: number; seconds: number; rssKiB: number }) => number, digits = 3): Record<BinaryKind, number> =>
      Object.fromEntries(KINDS.map((k) => [k, round(f(got[k]!), digits)])) as Record<BinaryKind, number>;
    const x: BinariesRun = {
      run: i + 1,
      order,
      firstByteSeconds: per((g) => g.firstByte),
      seconds: per((g) => g.seconds),
      peakRssMiB: per((g) => g.rssKiB / 1024, 1),
    };
    r.runs.push(x);
    log(
      `${sizeMiB} MiB binaries run ${i + 1}/${opts.runs} (${order.join(', ')}): first byte sea ${x.firstByteSeconds.sea.toFixed(3)} s, bundle ${x.firstByteSeconds.bundle.toFixed(3)} s; ` +
        `backup sea ${x.seconds.sea.toFixed(2)} s, bundle ${x.seconds.bundle.toFixed(2)} s; RSS sea ${x.peakRssMiB.sea} MiB, bundle ${x.peakRssMiB.bundle} MiB`,
    );
  }
}

function finish(r: BinariesSizeResult): void {
  r.loadAverage.after = loadavg().map((x) => round(x, 2));
  if (!r.runs.length) return;
  const med = (f: (x: BinariesRun) => Record<BinaryKind, number>): Record<BinaryKind, number> =>
    Object.fromEntries(KINDS.map((k) => [k, round(median(r.runs.map((x) => f(x)[k])))])) as Record<BinaryKind, number>;
  r.median = { firstByteSeconds: med((x) => x.firstByteSeconds), seconds: med((x) => x.seconds) };
  r.max = {
    peakRssMiB: Object.fromEntries(KINDS.map((k) => [k, Math.max(...r.runs.map((x) => x.peakRssMiB[k]))])) as Record<BinaryKind, number>,
  };
}

export const binariesScenario: Scenario = {
  name: 'binaries',
  title: "`kbur backup` as the single executable against today's bundle: start to first byte, size",
  missing: async () => {
    const missing: string[] = [];
    for (const f of ['kbur', 'kbur-agent'])
      await access(join(PACKAGE_DIR, f), constants.X_OK).catch(() => missing.push(join(PACKAGE_DIR, f)));
    return missing.length ? `${missing.join(' and ')} not built: run npm run package first (npm run build removes them)` : undefined;
  },
  sizes: (opts) => [opts.size],
  async run(ctx) {
    const section = (ctx.report.binaries ??= { method: BINARIES_METHOD, results: [] });
    const r: BinariesSizeResult = {
      sizeMiB: ctx.sizeMiB,
      sandbox: 'fresh',
      files: { sea: {}, bundle: {}, node: { path: '', bytes: 0 } },
      loadAverage: { before: loadavg().map((x) => round(x, 2)), after: [] },
      runs: [],
      median: undefined,
      max: undefined,
    };
    section.results.push(r);
    await measureInto(r, () => benchBinaries(ctx, r), finish);
  },
  text: (report) => (report.binaries ? binariesText(report) : []),
  markdown: (report) => (report.binaries ? binariesMarkdown(report) : []),
};
