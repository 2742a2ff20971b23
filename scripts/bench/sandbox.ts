import { mkdir } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { createSandbox, type Sandbox } from '../../test/sandbox/cluster.js';
import { FILL_IN_FLIGHT, type Fill, fillEtcd } from './etcd.js';
import type { Options } from './options.js';
import { descendants, procArgv } from './proc.js';
import { GiB, MiB, log, round, toMiB } from './util.js';

export const ETCD_MAX_QUOTA = 8 * GiB;

/** A sandbox of one size, as both benchmarks use it: started, agents up, filled. */
export interface FilledSandbox {
  sandbox: Sandbox;
  sizeMiB: number;
  quota: number;
  sandboxStartSeconds: number;
  fill: Fill;
}

/** A fresh sandbox with its agents, filled to `sizeMiB` (every member); it is `state.sandbox` from its start. */
export async function startFilledSandbox(sizeMiB: number, opts: Options, dir: string, state: State): Promise<FilledSandbox> {
  const signal = state.abort.signal;
  const targetBytes = sizeMiB * MiB;
  const quota = Math.min(ETCD_MAX_QUOTA, 2 * targetBytes + GiB);
  log(`${sizeMiB} MiB: starting a sandbox in ${dir} on ${opts.network}.1x (quota ${toMiB(quota)} MiB)`);
  await mkdir(dir, { recursive: true });
  const t0 = performance.now();
  const sandbox = await createSandbox({ root: dir, quotaBackendBytes: quota, seed: true, network: opts.network });
  state.sandbox = sandbox;
  signal.throwIfAborted();
  await sandbox.startAgents();
  const sandboxStartSeconds = round((performance.now() - t0) / 1000, 1);

  log(`${sizeMiB} MiB: filling etcd (1 MiB values, ${FILL_IN_FLIGHT} in flight)`);
  const fill = await fillEtcd(sandbox, targetBytes, signal);
  log(
    `${sizeMiB} MiB: filled ${toMiB(fill.bytesWritten)} MiB in ${fill.seconds} s (${fill.mibPerSecond} MiB/s, ${fill.secondsPerGiB} s per GiB)`,
  );
  return { sandbox, sizeMiB, quota, sandboxStartSeconds, fill };
}

export interface State {
  abort: AbortController;
  sandbox: Sandbox | undefined;
}

export async function stopSandbox(state: State): Promise<void> {
  const sandbox = state.sandbox;
  state.sandbox = undefined;
  if (!sandbox) return;
  try {
    await sandbox.stop();
  } catch (err) {
    log(`stopping the sandbox failed: ${(err as Error).message}`);
  }
}

/** Anything the bench started and that outlived the sandbox's stop (should be nothing). */
export function killLeftovers(): void {
  const left = descendants(process.pid).filter((pid) => procArgv(pid).length > 0);
  for (const pid of left) {
    log(`killing leftover process ${pid}: ${procArgv(pid).join(' ').slice(0, 200)}`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}
