import { KburError } from '../../shared/errors.js';

/**
 * One restore at a time on this node, in this process: the steps that change the node run under
 * this lock, held by one restore id while any of its steps runs. A step of another restore is
 * refused at once; steps of the same restore wait their turn. Between steps, the restore that
 * holds the node is known from disk (restoreInProgress); this closes the gap between that check
 * and the change it guards.
 */
export class RestoreLock {
  private holder: string | undefined;
  private running = '';
  private users = 0;
  private queue: Promise<void> = Promise.resolve();

  /** Runs `step` of restore `restoreId` under the lock; FAILED_PRECONDITION when another restore holds it. */
  run<T>(restoreId: string, stepName: string, step: () => Promise<T>): Promise<T> {
    // Checked and taken in one synchronous block: nothing can run in between.
    if (this.holder !== undefined && this.holder !== restoreId) {
      return Promise.reject(
        new KburError('FAILED_PRECONDITION', `restore ${this.holder} is running ${this.running} on this node right now`, {
          hint: `one restore at a time: let restore ${this.holder} finish or roll it back (kbur restore --rollback ${this.holder}) first; nothing was changed`,
        }),
      );
    }
    if (this.users === 0) this.running = stepName;
    this.holder = restoreId;
    this.users++;
    const result = this.queue.then(() => {
      this.running = stepName;
      return step();
    });
    this.queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result.finally(() => {
      if (--this.users === 0) this.holder = undefined;
    });
  }
}
