import { mib } from '../backup/progress.js';
import { loadContext, type GlobalOptions } from '../context.js';
import { ExitCode } from '../exit-codes.js';

/** kbur list: the backups of this cluster, oldest first. */
export async function run(opts: GlobalOptions): Promise<ExitCode> {
  const ctx = await loadContext(opts);
  const backups = await ctx.repository.listBackups(ctx.config.cluster);
  if (ctx.json) {
    const rows = backups.map((b) => ({
      id: b.id,
      phase: b.manifest?.phase ?? 'Incomplete',
      startedAt: b.manifest?.startedAt,
      finishedAt: b.manifest?.finishedAt,
      size: b.manifest?.artifacts.reduce((n, a) => n + a.size, 0),
      revision: b.manifest?.etcd?.revision,
      problem: b.problem,
    }));
    ctx.out.write(JSON.stringify(rows, null, 2) + '\n');
    return ExitCode.OK;
  }
  if (backups.length === 0) {
    ctx.out.write(`no backups of cluster ${ctx.config.cluster} in ${ctx.repository.location}\nnext: kbur backup\n`);
    return ExitCode.OK;
  }
  const rows = [['ID', 'PHASE', 'STARTED', 'DURATION', 'SIZE', 'REVISION']];
  for (const b of backups) {
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
          ]
        : [b.id, 'Incomplete', '-', '-', '-', '-'],
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
  return ExitCode.OK;
}
