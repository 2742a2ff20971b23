import { KburError } from '../../shared/errors.js';
import { loadContext, type GlobalOptions } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { describeHolder, hostProbe, staleReason, type LockHolder } from '../repository/lock.js';

/**
 * kbur unlock: shows who holds the repository lock. With --force, breaks it if it is stale (its
 * holder's process gone from this host, or its lease expired) or unreadable; a live holder is
 * never broken.
 */
export async function run(opts: GlobalOptions & { force?: boolean }): Promise<ExitCode> {
  const ctx = await loadContext(opts);
  const cluster = ctx.config.cluster;
  let holder: LockHolder | undefined;
  let unreadable: KburError | undefined;
  try {
    holder = await ctx.repository.readLock(cluster);
  } catch (err) {
    if (!KburError.hasCode(err, 'LOCK_STALE')) throw err;
    unreadable = err;
  }
  const stale = holder ? staleReason(holder, new Date(), hostProbe()) : unreadable?.message;
  const report = (state: string, extra: Record<string, unknown> = {}): ExitCode => {
    if (ctx.json) ctx.out.write(JSON.stringify({ cluster, state, holder, stale, ...extra }, null, 2) + '\n');
    return ExitCode.OK;
  };
  const say = (line: string): void => void (ctx.json || ctx.out.write(line + '\n'));

  if (!holder && !unreadable) {
    say(`the repository of cluster ${cluster} is not locked`);
    return report('free');
  }
  const who = holder ? describeHolder(holder) : 'an unreadable lock record';
  if (!stale) {
    throw new KburError(
      'LOCKED',
      `the repository of cluster ${cluster} is locked by ${who}, which is still running${opts.force ? '; not broken' : ''}`,
      {
        hint: 'wait for it to finish; kbur unlock --force only breaks a lock whose holder is gone (its process, or its lease expired)',
      },
    );
  }
  if (!opts.force) {
    say(`the repository of cluster ${cluster} is locked by ${who}, which is stale: ${stale}`);
    say('kbur unlock --force breaks it (make sure that operation is not running anywhere first)');
    return report('stale');
  }
  if (!(await ctx.repository.removeLock(cluster, holder?.token))) {
    throw new KburError('LOCKED', `the lock of cluster ${cluster} changed while it was being broken; nothing was broken`, {
      hint: 'run kbur unlock again to see who holds it now',
    });
  }
  ctx.log.warn('stale repository lock broken', { holder, why: stale });
  say(`broke the stale lock of ${who} (${stale})`);
  if (holder?.operation === 'restore' && holder.restoreId) say(`next: kbur restore --resume ${holder.restoreId} (or --rollback)`);
  else if (holder?.operation === 'backup') say('next: kbur backup (it removes what the interrupted backup left)');
  return report('broken');
}
