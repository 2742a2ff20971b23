import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KburError } from '../../shared/errors.js';

/**
 * One restore at a time on this node: the steps that change the node run under this lock, held by
 * one restore id while any of its steps runs. A step of another restore is refused at once; steps
 * of the same restore wait their turn. Between steps, the restore that holds the node is known
 * from disk (restoreInProgress); this closes the gap between that check and the change it guards.
 * In this process by the lock itself; across processes sharing the state dir (a second agent
 * started by hand) by <stateDir>/restore.lock, held as long as the lock is.
 */
export class RestoreLock {
  private holder: string | undefined;
  private running = '';
  private users = 0;
  private queue: Promise<void> = Promise.resolve();
  private file: Promise<() => Promise<void>> | undefined;
  private released: Promise<void> = Promise.resolve();

  /** Runs `step` of restore `restoreId` under the lock; FAILED_PRECONDITION when another restore holds it. */
  run<T>(restoreId: string, stepName: string, step: () => Promise<T>, stateDir?: string): Promise<T> {
    // Checked and taken in one synchronous block: nothing can run in between.
    if (this.holder !== undefined && this.holder !== restoreId) return Promise.reject(busy(this.holder, this.running));
    if (this.users === 0) {
      this.running = stepName;
      // After the last holder's file is gone: its removal must not remove this one's.
      this.file = stateDir ? this.released.then(() => takeLockFile(stateDir, restoreId, stepName)) : undefined;
    }
    this.holder = restoreId;
    this.users++;
    const file = this.file;
    const result = this.queue.then(async () => {
      await file;
      this.running = stepName;
      return step();
    });
    this.queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result.finally(() => {
      if (--this.users > 0) return;
      this.holder = undefined;
      this.file = undefined;
      this.released = file ? file.then((release) => release()).catch(() => undefined) : Promise.resolve();
    });
  }
}

function busy(restoreId: string, step: string, pid?: number): KburError {
  return new KburError(
    'FAILED_PRECONDITION',
    `restore ${restoreId} is running ${step} on this node right now${pid ? ` (agent process ${pid})` : ''}`,
    {
      hint: `one restore at a time: let restore ${restoreId} finish or roll it back (kbur restore --rollback ${restoreId}) first; nothing was changed`,
    },
  );
}

/** Creates <stateDir>/restore.lock, or refuses when a live process holds it; a dead holder's file is taken over. */
async function takeLockFile(stateDir: string, restoreId: string, step: string): Promise<() => Promise<void>> {
  const path = join(stateDir, 'restore.lock');
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  for (;;) {
    try {
      await writeFile(path, JSON.stringify({ pid: process.pid, restoreId, step }) + '\n', { flag: 'wx', mode: 0o600 });
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = await readFile(path, 'utf8').then(
      (text) => JSON.parse(text) as { pid?: number; restoreId?: string; step?: string },
      () => ({}) as { pid?: number; restoreId?: string; step?: string },
    );
    // This process holds no file here now (its own was released first): one with its pid is stale too.
    if (typeof holder.pid === 'number' && holder.pid !== process.pid && isAlive(holder.pid))
      throw busy(holder.restoreId ?? 'unknown', holder.step ?? 'a step', holder.pid);
    await rm(path, { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
