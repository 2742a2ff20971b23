import { resolve } from 'node:path';
import { KburError } from '../../shared/errors.js';
import { importSnapshot } from '../backup/import.js';
import { mib } from '../backup/progress.js';
import { loadContext, lockRequest, type GlobalOptions } from '../context.js';
import { withLock } from '../repository/lock.js';
import { ExitCode } from '../exit-codes.js';

const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/**
 * kbur import FILE [--kubernetes-dir-archive NODE=TAR ...]: a snapshot taken by etcdctl (a cron
 * script, another tool) becomes a backup set that verify, diff and restore work on.
 */
export async function run(opts: GlobalOptions & { file: string; kubernetesDirArchive?: string[]; signal: AbortSignal }): Promise<ExitCode> {
  const archives = (opts.kubernetesDirArchive ?? []).map(parseArchiveFlag);
  const dup = archives.find((a, i) => archives.findIndex((b) => b.node === a.node) !== i);
  if (dup)
    throw new KburError('INVALID_ARGUMENT', `--kubernetes-dir-archive: node ${dup.node} is given twice`, { hint: 'one archive per node' });
  const ctx = await loadContext(opts);
  // It writes a backup set: under the lock, so that a backup never takes it for an interrupted one's leftovers.
  const m = await withLock(lockRequest(ctx, 'import', { waitMs: 0, signal: opts.signal }), (signal) =>
    importSnapshot({
      repository: ctx.repository,
      config: ctx.config,
      file: resolve(opts.file),
      archives,
      seal: ctx.seal,
      signal,
    }),
  );
  if (ctx.json) {
    ctx.out.write(JSON.stringify(m, null, 2) + '\n');
    return ExitCode.OK;
  }
  const e = m.etcd!;
  const lines = [
    `backup ${m.id}: Completed (imported from ${opts.file})`,
    `  etcd: revision ${e.revision}, ${e.keyCount} keys, ${mib(m.artifacts[0]!.size)}, storage version ${e.version || 'unknown'}`,
    `  members: ${e.members.map((x) => `${x.name || '(unstarted)'} ${x.peerUrls.join(',')}`).join('; ') || 'none recorded in the snapshot'}`,
    `  kubernetes dirs: ${archives.map((a) => a.node).join(', ') || 'none'}`,
    `next: kbur verify --deep ${m.id}`,
  ];
  ctx.out.write(lines.join('\n') + '\n');
  return ExitCode.OK;
}

function parseArchiveFlag(value: string): { node: string; file: string } {
  const at = value.indexOf('=');
  const node = value.slice(0, at);
  const file = value.slice(at + 1);
  if (at < 1 || !NODE_NAME.test(node) || !file) {
    throw new KburError(
      'INVALID_ARGUMENT',
      `--kubernetes-dir-archive "${value}": expected NODE=TAR, e.g. node-1=/backups/node-1-etc-kubernetes.tar`,
      {
        hint: 'NODE is the node name as kbur.yaml has it; TAR a tar of its /etc/kubernetes (paths relative to it)',
      },
    );
  }
  return { node, file: resolve(file) };
}
