import type { Verification } from '../../shared/manifest.js';
import { mib } from '../backup/progress.js';
import { loadContext, type GlobalOptions } from '../context.js';
import { ExitCode } from '../exit-codes.js';

/** kbur list: the backups of this cluster, oldest first. */
export async function run(opts: GlobalOptions): Promise<ExitCode> {
  const ctx = await loadContext(opts);
  const backups = await ctx.repository.listBackups(ctx.config.cluster);
  const verifications = await Promise.all(backups.map((b) => ctx.repository.readVerification(ctx.config.cluster, b.id)));
  if (ctx.json) {
    const rows = backups.map((b, i) => ({
      id: b.id,
      phase: b.manifest?.phase ?? 'Incomplete',
      startedAt: b.manifest?.startedAt,
      finishedAt: b.manifest?.finishedAt,
      size: b.manifest?.artifacts.reduce((n, a) => n + a.size, 0),
      revision: b.manifest?.etcd?.revision,
      problem: b.problem,
      verified: verifiedState(verifications[i]),
    }));
    ctx.out.write(JSON.stringify(rows, null, 2) + '\n');
    return ExitCode.OK;
  }
  if (backups.length === 0) {
    ctx.out.write(`no backups of cluster ${ctx.config.cluster} in ${ctx.repository.location}\nnext: kbur backup\n`);
    return ExitCode.OK;
  }
  const rows = [['ID', 'PHASE', 'STARTED', 'DURATION', 'SIZE', 'REVISION', 'VERIFIED']];
  for (const [i, b] of backups.entries()) {
    const m = b.manifest;
    rows.push(
      m
        ? [
            b.id,
            m.phase,
            m.startedAt,
            `${((Date.parse(m.finishedAt) - Date.parse(m.startedAt)) / 1000).toFixed(1)}s`,
            mib(m.artifacts.reduce((n, a) => n + a.size, 0)),
            String(m.etcd?.revision ?? '-'),
            verifiedState(verifications[i]) ?? 'never',
          ]
        : [b.id, 'Incomplete', '-', '-', '-', '-', '-'],
    );
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  ctx.out.write(
    rows
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n',
  );
  if (backups.some((b) => !b.manifest)) {
    ctx.out.write('Incomplete: no manifest: a backup still running, or one interrupted (the next kbur backup or kbur prune removes it)\n');
  }
  return ExitCode.OK;
}

/** "verified (deep) at T", "verified at T", or "FAILED at T", from verify.json. */
export function verifiedState(v: Verification | undefined): string | undefined {
  if (!v) return undefined;
  if (!v.ok) return `FAILED at ${v.verifiedAt}`;
  if (v.deep?.ok) return `verified (deep) at ${v.deep.verifiedAt}`;
  return `verified at ${v.verifiedAt}`;
}
