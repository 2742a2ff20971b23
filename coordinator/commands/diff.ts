import type { Etcd3 } from 'etcd3';
import { z } from 'zod';
import { KburError } from '../../shared/errors.js';
import { loadContext, type GlobalOptions } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { connectLiveEtcd } from '../live-etcd.js';
import { loadIdentity } from '../repository/seal.js';
import { openBackupScratch } from '../scratch/backup.js';
import { diffKeyspaces, type Change, type DiffResult } from '../scratch/diff.js';
import { cancellable, type ScratchEtcd } from '../scratch/etcd.js';

const namespaceName = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);

/**
 * kbur diff ID [--against ID2] [--namespace NS]: keys added, removed and changed from a backup to
 * the running cluster (or to another backup), by resource and by namespace.
 */
export async function run(
  opts: GlobalOptions & { id: string; against?: string; namespace?: string; identity?: string; signal: AbortSignal },
): Promise<ExitCode> {
  if (opts.namespace !== undefined && !namespaceName.safeParse(opts.namespace).success) {
    throw new KburError('INVALID_ARGUMENT', `--namespace "${opts.namespace}": expected a namespace name (a DNS label)`, {
      hint: 'kbur diff --help',
    });
  }
  const ctx = await loadContext(opts);
  const identity = await loadIdentity(opts.identity);
  const from = await ctx.repository.readManifest(ctx.config.cluster, opts.id);
  const to = opts.against ? await ctx.repository.readManifest(ctx.config.cluster, opts.against) : undefined;
  const scratches: ScratchEtcd[] = [];
  let live: Etcd3 | undefined;
  try {
    const open = async (m: typeof from): Promise<Etcd3> => {
      const s = await openBackupScratch({ repository: ctx.repository, config: ctx.config, manifest: m, identity, signal: opts.signal });
      scratches.push(s);
      return s.client;
    };
    const fromClient = await open(from);
    const toClient = to ? await open(to) : (live = await connectLiveEtcd(ctx.config, 'kbur diff'));
    const result = await cancellable(opts.signal, () =>
      diffKeyspaces({ from: fromClient, to: toClient, namespace: opts.namespace, signal: opts.signal }),
    );
    const target = to ? `backup ${to.id}` : 'the running cluster';
    if (ctx.json) {
      ctx.out.write(JSON.stringify({ from: from.id, to: to?.id ?? 'live', namespace: opts.namespace ?? null, ...result }, null, 2) + '\n');
    } else {
      ctx.out.write(describeDiff(result, `backup ${from.id}`, target, opts.namespace) + '\n');
    }
    return ExitCode.OK;
  } finally {
    live?.close();
    await Promise.all(scratches.map((s) => s.close()));
  }
}

const SIGN: Record<Change, string> = { added: '+', removed: '-', changed: '~' };

function describeDiff(r: DiffResult, from: string, to: string, namespace: string | undefined): string {
  const scope = namespace ? ` in namespace ${namespace}` : '';
  const total = (c: Change): number => r.changes.filter((x) => x.change === c).length;
  const lines = [
    `From ${from} to ${to}${scope}: ${total('added')} added, ${total('removed')} removed, ${total('changed')} changed, ${r.unchanged} unchanged`,
  ];
  if (r.changes.length === 0) return lines.join('\n');
  const table = (title: string, t: DiffResult['byResource']): void => {
    lines.push(`${title}:`);
    for (const [name, c] of Object.entries(t).sort(([a], [b]) => a.localeCompare(b)))
      lines.push(
        `  ${name}: ${[c.added && `+${c.added}`, c.removed && `-${c.removed}`, c.changed && `~${c.changed}`].filter(Boolean).join(' ')}`,
      );
  };
  table('by resource', r.byResource);
  if (Object.keys(r.byNamespace).length) table('by namespace', r.byNamespace);
  lines.push('keys (+ added, - removed, ~ changed):', ...r.changes.map((c) => `  ${SIGN[c.change]} ${c.key}`));
  return lines.join('\n');
}
