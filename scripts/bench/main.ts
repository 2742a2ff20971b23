/**
 * kbur's benchmark: scenarios, each in its own module (scenarios.ts lists them), run per size on a
 * sandbox (3-member TLS etcd, real kbur agents) filled to that size. Each size gets one sandbox,
 * started by the first scenario that needs it and reused by the next ones in registry order; a
 * scenario that fails (or resets the nodes, as rebuild does) leaves the next one a fresh sandbox.
 *
 *   backup       `kbur backup` against `etcdctl snapshot save` of the same member (--sizes); target
 *                median ratio at most 1.15, each process under 150 MiB at every size
 *   scrape       the snapshotting agent's /metrics every 50 ms during `kbur backup` (--size): every
 *                scrape under 100 ms, backup time with a scraper within the runs' spread of without
 *   s3           `kbur backup` to S3 with zstd and age against etcdctl, zstd, age -r, s3cmd put (--size):
 *                at most 1.0x, every process under 150 MiB; one kbur backup to S3 at --large-sizes
 *   deep-verify  `kbur verify --deep` against `etcdctl snapshot restore` alone (--size): at most 1.5x
 *   binaries     the single executable (npm run package) against today's bundle: spawn to the
 *                snapshot's first byte, to exit, size (--size); no target
 *   restore      `kbur restore` (RTO) against etcd's manual procedure, from the nodes' snapshot
 *                copies and uploaded (--restore-sizes); at most 1.3x with the copies. See RESTORE_METHOD
 *   rebuild      three nodes reset as kubeadm reset leaves them, `kbur restore --with-kubernetes-dir`
 *                against the manual rebuild from the archives and the snapshot (--size): at most 1.3x
 *
 *   npm run bench                     every scenario whose prerequisites exist, 5 runs each
 *   node dist/scripts/bench/main.js [--scenarios backup,scrape,...] [--sizes 300,1536|none]
 *        [--restore-sizes 300|none] [--size 300] [--large-sizes 1536|none] [--runs 5] [--out bench-results/backup.json]
 *        [--root DIR] [--keep] [--network 127.0.2]
 *   node dist/scripts/bench/main.js --scenarios restore --restore-sizes 300    the restore benchmark alone
 *
 * Without --scenarios, a scenario whose prerequisites are missing (a tool, the packaged executables)
 * is left out and the report says why; named in --scenarios, it is a usage error (exit 2). Missing
 * a target is a result, not an error: the exit code is 0 then, 1 if a measurement could not be
 * taken, 130 on Ctrl-C. Results go to --out (JSON: the backup scenario's `results`, then one
 * section per other scenario) and a Markdown report beside it.
 *
 * How it measures:
 *   - wall time: from spawn to exit of each process (both include their own startup);
 *   - coordinator and etcdctl peak RSS and CPU: /proc/<pid>/status VmHWM and /proc/<pid>/stat
 *     utime+stime, polled every 20 ms until the process exits (growth in the last < 20 ms is missed);
 *   - agent peak RSS: VmHWM of the agent process after the run: the peak over its whole life
 *     (startup, the warm-up backup and every run so far at this size); agents start fresh per size;
 *   - agent and etcd-member CPU: utime+stime deltas of those long-lived processes around each run.
 *
 * Layout: scenario.ts (what a scenario is), scenarios.ts (the registry), one file per scenario
 * (backup.ts, scrape.ts, s3.ts, deep-verify.ts, binaries.ts, restore.ts with restore-manual/-kbur/-cluster.ts, rebuild.ts)
 * with its report beside it (*-report.ts), and what they share: proc.ts (measuring a process),
 * etcd.ts (status, fill), sandbox.ts, util.ts (units, logging, tables), report.ts (the whole report).
 */
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { METHOD } from './backup-report.js';
import { type Options, USAGE, options } from './options.js';
import { running } from './proc.js';
import { type Report, machineInfo, textReport, writeReport } from './report.js';
import type { Context } from './scenario.js';
import { SCENARIOS, scenarioDir, selectScenarios } from './scenarios.js';
import { type FilledSandbox, type State, killLeftovers, startFilledSandbox, stopSandbox } from './sandbox.js';
import { log } from './util.js';

async function main(): Promise<number> {
  let opts: Options;
  let selected: Awaited<ReturnType<typeof selectScenarios>>;
  try {
    opts = options(process.argv.slice(2));
    selected = await selectScenarios(opts);
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const state: State = { abort: new AbortController(), sandbox: undefined };
  let signals = 0;
  /** The temporary root, to remove even on a forced exit. */
  let ownTemp: string | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) {
      log(`${sig}: stopping the benchmark, the sandbox and every process it started (${sig} again to exit at once)`);
      state.abort.abort(new Error(`interrupted by ${sig}`));
      for (const child of running) child.kill('SIGTERM');
    } else {
      killLeftovers();
      if (ownTemp) rmSync(ownTemp, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);

  const ownRoot = opts.root === undefined;
  const root = opts.root ?? (await mkdtemp(join(tmpdir(), 'kbur-bench-')));
  await mkdir(root, { recursive: true });
  if (ownRoot && !opts.keep) ownTemp = root;
  const report: Report = {
    date: new Date().toISOString(),
    command: ['node', 'dist/scripts/bench/main.js', ...process.argv.slice(2)].join(' '),
    machine: await machineInfo(),
    scenarios: selected.selected.map((s) => s.name),
    skipped: selected.skipped,
    method: METHOD,
    results: [],
  };
  // Sizes in the order the scenarios name them (backup's first): each size gets one sandbox, shared by its scenarios.
  const sizes = [...new Set(selected.selected.flatMap((s) => s.sizes(opts)))];
  log(
    `scenarios ${report.scenarios.join(', ')}${report.skipped.length ? ` (not run: ${report.skipped.map((s) => s.name).join(', ')})` : ''}; ` +
      `${SCENARIOS.filter((s) => report.scenarios.includes(s.name))
        .map((s) => `${s.name} at ${s.sizes(opts).join(', ')} MiB`)
        .join('; ')}; ${opts.runs} runs each; root ${root}; results ${opts.out}`,
  );
  let failed = false;
  try {
    for (const sizeMiB of sizes) {
      const dir = scenarioDir(root, sizeMiB);
      /** The sandbox of this size while the scenarios before left it fit for reuse. */
      let filled: FilledSandbox | undefined;
      /** Folders of this size's sandboxes: the first in `dir`, one after a failure or a consumed sandbox in `dir-<scenario>`. */
      const dirs: string[] = [];
      try {
        for (const s of selected.selected.filter((x) => x.sizes(opts).includes(sizeMiB))) {
          const own = dirs.length === 0 ? dir : `${dir}-${s.name}`;
          const ctx: Context = {
            sizeMiB,
            opts,
            state,
            report,
            dir: own,
            filled: async () => {
              if (filled) return { filled, reused: true };
              if (state.sandbox) {
                log(`${sizeMiB} MiB: stopping the sandbox`);
                await stopSandbox(state);
              }
              dirs.push(own);
              filled = await startFilledSandbox(sizeMiB, opts, own, state);
              return { filled, reused: false };
            },
          };
          const label = s.name === 'backup' ? `${sizeMiB} MiB` : `${sizeMiB} MiB ${s.name}`;
          try {
            await mkdir(own, { recursive: true });
            await s.run(ctx);
          } catch (err) {
            // A sandbox whose scenario failed is not reused: the next scenario gets a fresh one.
            filled = undefined;
            if (state.abort.signal.aborted) throw state.abort.signal.reason;
            failed = true;
            log(`${label}: FAILED: ${(err as Error).message}`);
            if (!opts.keep) log(`${label}: rerun with --keep to keep the sandbox's logs (${join(dirs.at(-1) ?? own, 'logs')})`);
          }
          if (s.consumesSandbox) filled = undefined;
          // A scenario that reused the sandbox kept its own files in `own`: gone unless --keep.
          if (!opts.keep && !dirs.includes(own) && own !== dir) await rm(own, { recursive: true, force: true });
        }
      } finally {
        if (state.sandbox) log(`${sizeMiB} MiB: stopping the sandbox`);
        await stopSandbox(state);
        if (!opts.keep) for (const d of new Set([dir, ...dirs])) await rm(d, { recursive: true, force: true });
      }
      await writeReport(report, opts.out);
    }
  } catch (err) {
    log(`stopped: ${(err as Error).message}`);
    return 130;
  } finally {
    await stopSandbox(state);
    killLeftovers();
    if (ownRoot && !opts.keep) await rm(root, { recursive: true, force: true });
    else if (opts.keep) log(`kept ${root}`);
  }
  process.stdout.write(textReport(report));
  log(`wrote ${opts.out} and ${opts.out.replace(/\.json$/, '')}.md`);
  return failed ? 1 : 0;
}

process.exitCode = await main();
