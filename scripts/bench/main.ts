/**
 * The backup benchmark (issue acceptance): for each etcd size, a fresh sandbox (3-member TLS etcd,
 * real kbur agents) filled to that size, then, from the member kbur snapshots, `etcdctl snapshot
 * save` and `kbur backup` timed in alternating order. Reports the wall-time ratio kbur/etcdctl and
 * the peak RSS of the coordinator (kbur CLI) and of the agent that streamed the snapshot.
 *
 * Then the restore benchmark (RTO) for each --restore-sizes, on the backup benchmark's sandbox of
 * that size (else a fresh one filled the same way): two kept `kbur backup`s, the first without and
 * the second with backup.copySnapshotToNodes, restored in each run by etcd's documented manual
 * procedure, by `kbur restore --yes` of the second (staged from the copies on the nodes) and of the
 * first (snapshot uploaded), the three in rotation, each restored cluster checked. Target: median
 * kbur/manual at most 1.3 with the copies on the nodes; the upload is reported beside it. See RESTORE_METHOD.
 *
 *   npm run bench                                  backup 300 MiB and 1536 MiB, restore 300 MiB, 5 runs each
 *   node dist/scripts/bench/main.js [--sizes 300,1536|none] [--restore-sizes 300|none] [--runs 5]
 *                              [--out bench-results/backup.json] [--root DIR] [--keep] [--network 127.0.2]
 *   node dist/scripts/bench/main.js --sizes none --restore-sizes 300      the restore benchmark alone
 *
 * Targets: median ratio at most 1.15, each process under 150 MiB at every size. Missing a target is
 * a result, not an error: the exit code is 0 then, 1 if a measurement could not be taken, 130 on
 * Ctrl-C. Results go to --out (JSON) and a Markdown table beside it.
 *
 * How it measures:
 *   - wall time: from spawn to exit of each process (both include their own startup);
 *   - coordinator and etcdctl peak RSS and CPU: /proc/<pid>/status VmHWM and /proc/<pid>/stat
 *     utime+stime, polled every 20 ms until the process exits (growth in the last < 20 ms is missed);
 *   - agent peak RSS: VmHWM of the agent process after the run: the peak over its whole life
 *     (startup, the warm-up backup and every run so far at this size); agents start fresh per size;
 *   - agent and etcd-member CPU: utime+stime deltas of those long-lived processes around each run.
 *
 * Layout: one file per scenario (backup.ts, restore.ts with restore-manual/-kbur/-cluster.ts), its
 * report beside it (*-report.ts), and what they share: proc.ts (measuring a process), etcd.ts
 * (status, fill), sandbox.ts, util.ts (units, logging, tables), report.ts (the whole report).
 */
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { TARGETS, benchSize } from './backup.js';
import { METHOD } from './backup-report.js';
import { type Options, USAGE, options } from './options.js';
import { running } from './proc.js';
import { type Report, machineInfo, textReport, writeReport } from './report.js';
import { RESTORE_TARGETS, benchRestore, emptyRestoreResult, finishRestoreResult } from './restore.js';
import { RESTORE_METHOD } from './restore-report.js';
import { type FilledSandbox, type State, killLeftovers, stopSandbox } from './sandbox.js';
import { log, round } from './util.js';

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = options(process.argv.slice(2));
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
    method: METHOD,
    results: [],
    ...(opts.restoreSizes.length ? { restore: { targets: RESTORE_TARGETS, method: RESTORE_METHOD, results: [] } } : {}),
  };
  log(
    `sizes ${opts.sizes.join(', ') || 'none'} MiB, restore sizes ${opts.restoreSizes.join(', ') || 'none'} MiB, ${opts.runs} runs each; root ${root}; results ${opts.out}`,
  );
  let failed = false;
  try {
    const backupSizes = new Set(opts.sizes);
    for (const sizeMiB of [...opts.sizes, ...opts.restoreSizes.filter((s) => !backupSizes.has(s))]) {
      const dir = join(root, `size-${sizeMiB}MiB`);
      const restoreDir = `${dir}-restore`;
      /** The backup benchmark's sandbox, when its runs went well: the restore benchmark reuses it. */
      let filled: FilledSandbox | undefined;
      try {
        if (backupSizes.has(sizeMiB)) {
          try {
            report.results.push(await benchSize(sizeMiB, opts, dir, state, (f) => (filled = f)));
          } catch (err) {
            filled = undefined;
            if (state.abort.signal.aborted) throw state.abort.signal.reason;
            failed = true;
            const message = (err as Error).message;
            log(`${sizeMiB} MiB: FAILED: ${message}`);
            if (!opts.keep) log(`${sizeMiB} MiB: rerun with --keep to keep the sandbox's logs (${join(dir, 'logs')})`);
            report.results.push({
              sizeMiB,
              quotaBackendBytes: 0,
              dbSizeBytes: 0,
              dbSizeMiB: 0,
              members: [],
              snapshotNode: '',
              sandboxStartSeconds: 0,
              fillSeconds: 0,
              fill: undefined!,
              warmUp: undefined,
              loadAverage: { before: [], after: loadavg().map((x) => round(x, 2)) },
              runs: [],
              median: undefined,
              max: undefined,
              targets: TARGETS,
              pass: { ratio: false, rss: false, coordinatorRss: false, agentRss: false, snapshotsMatch: false },
              error: message,
            });
          }
        }
        if (report.restore && opts.restoreSizes.includes(sizeMiB)) {
          // A sandbox whose backup runs failed is not reused: the restore gets a fresh one.
          if (!filled && state.sandbox) {
            log(`${sizeMiB} MiB: stopping the sandbox`);
            await stopSandbox(state);
          }
          const result = emptyRestoreResult(sizeMiB);
          report.restore.results.push(result);
          try {
            await benchRestore(sizeMiB, opts, filled ? dir : restoreDir, state, filled, result);
          } catch (err) {
            if (state.abort.signal.aborted) throw state.abort.signal.reason;
            failed = true;
            result.error = (err as Error).message;
            log(`${sizeMiB} MiB restore: FAILED: ${result.error}`);
            if (!opts.keep)
              log(`${sizeMiB} MiB restore: rerun with --keep to keep the sandbox's logs (${join(filled ? dir : restoreDir, 'logs')})`);
          } finally {
            finishRestoreResult(result);
          }
        }
      } finally {
        if (state.sandbox) log(`${sizeMiB} MiB: stopping the sandbox`);
        await stopSandbox(state);
        if (!opts.keep) {
          await rm(dir, { recursive: true, force: true });
          await rm(restoreDir, { recursive: true, force: true });
        }
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
