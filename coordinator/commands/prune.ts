import { KburError } from '../../shared/errors.js';
import { parseDurationFlag } from '../../shared/duration.js';
import { loadContext, lockRequest, type GlobalOptions } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { describePolicy } from '../prune/retention.js';
import { prune } from '../prune/run.js';
import { withLock } from '../repository/lock.js';
import { recordPrune } from '../run-metrics.js';

/** kbur prune [--dry-run]: applies kbur.yaml's retention, under the repository lock, saying what it kept and why. */
export async function run(opts: GlobalOptions & { dryRun?: boolean; wait?: string; signal: AbortSignal }): Promise<ExitCode> {
  const waitMs = parseDurationFlag(opts.wait ?? '0', '--wait');
  const ctx = await loadContext(opts);
  const policy = ctx.config.retention;
  if (!policy) {
    throw new KburError('INVALID_CONFIG', `${ctx.configFile}: no retention policy, so prune does not know what to keep`, {
      hint: 'add e.g. "retention: {keepLast: 3, daily: 7, weekly: 4, monthly: 6}" to kbur.yaml',
    });
  }
  const dryRun = Boolean(opts.dryRun);
  const startedAt = Date.now();
  const result = await withLock(lockRequest(ctx, 'prune', { waitMs, signal: opts.signal }), (signal) =>
    prune({ repository: ctx.repository, cluster: ctx.config.cluster, policy, dryRun, lockedAt: new Date(), log: ctx.log, signal }),
  ).catch(async (err: unknown) => {
    if (!dryRun) await recordPrune(ctx, { ok: false, deleted: 0, startedAt, endedAt: Date.now() });
    throw err;
  });
  if (!dryRun) {
    await recordPrune(ctx, { ok: true, deleted: result.deleted.length + result.leftovers.length, startedAt, endedAt: Date.now() });
  }
  if (ctx.json) {
    ctx.out.write(JSON.stringify({ cluster: ctx.config.cluster, policy, ...result }, null, 2) + '\n');
    return ExitCode.OK;
  }
  const del = dryRun ? 'would delete' : 'deleted';
  const rows = [
    ...result.kept.map((d) => ['kept', d.id, d.phase, d.reasons.join('; ')]),
    ...result.deleted.map((d) => [del, d.id, d.phase, d.reasons.join('; ')]),
    ...result.leftovers.map((l) => [dryRun ? 'would remove' : 'removed', l.id, 'Incomplete', l.reason]),
    ...result.untouched.map((u) => ['kept', u.id, 'Unreadable', u.reason]),
  ].sort((a, b) => (a[1]! < b[1]! ? 1 : -1));
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = [`prune of cluster ${ctx.config.cluster}, policy: ${describePolicy(policy)}`];
  for (const r of rows)
    lines.push(
      `  ${r
        .slice(0, 3)
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')}  ${r[3]}`,
    );
  lines.push(
    `kept ${result.kept.length + result.untouched.length}, ${del} ${result.deleted.length}, ${dryRun ? 'would remove' : 'removed'} ${result.leftovers.length} left by interrupted backups` +
      (dryRun ? '; dry run: nothing was deleted' : ''),
  );
  ctx.out.write(lines.join('\n') + '\n');
  return ExitCode.OK;
}
