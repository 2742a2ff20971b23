import { z } from 'zod';
import { KburError } from '../../shared/errors.js';
import { loadContext, type GlobalOptions } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { connectLiveEtcd } from '../live-etcd.js';
import { executeNamespaceRestore, planNamespaceRestore, type NamespaceItem } from '../restore/namespace.js';
import { loadIdentity } from '../repository/seal.js';
import { openBackupScratch } from '../scratch/backup.js';
import { cancellable, type ScratchEtcd } from '../scratch/etcd.js';

const namespaceName = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, { message: 'expected a namespace name (a DNS label)' });
const resourceList = z
  .string()
  .transform((s) => s.split(',').map((r) => r.trim()))
  .pipe(z.array(z.string().regex(/^[a-z0-9][a-z0-9.\-/]*$/, { message: 'expected resource names such as configmaps,secrets' })).min(1));

/**
 * kbur restore ID --namespace NS: while the cluster runs, creates the keys of one namespace that
 * the backup has and the cluster lacks; never overwrites. The backup is read in a scratch etcd.
 */
export async function run(
  opts: GlobalOptions & { id: string; namespace: string; resource?: string; dryRun?: boolean; identity?: string; signal: AbortSignal },
): Promise<ExitCode> {
  const ns = parseFlag('--namespace', namespaceName, opts.namespace);
  const resources = opts.resource === undefined ? undefined : parseFlag('--resource', resourceList, opts.resource);
  const ctx = await loadContext(opts);
  const identity = await loadIdentity(opts.identity);
  const manifest = await ctx.repository.readManifest(ctx.config.cluster, opts.id);
  const live = await connectLiveEtcd(ctx.config, 'kbur restore --namespace');
  let scratch: ScratchEtcd | undefined;
  const say = (line: string): void => void ctx.out.write(`${line}\n`);
  try {
    scratch = await openBackupScratch({ repository: ctx.repository, config: ctx.config, manifest, identity, signal: opts.signal });
    const backup = scratch.client;
    const items = await cancellable(opts.signal, () =>
      planNamespaceRestore({ backup, live, namespace: ns, resources, signal: opts.signal }),
    );
    if (items.length === 0) {
      throw new KburError('NOT_FOUND', `backup ${manifest.id} has no namespace ${ns} and no object in it`, {
        hint: `kbur verify --deep ${manifest.id} lists the namespaces it holds`,
      });
    }
    const plan = items.map(planLine);
    if (!ctx.json) {
      say(
        `Restore of namespace ${ns} from backup ${manifest.id} (taken ${manifest.startedAt}) into the running cluster; nothing is overwritten:`,
      );
      for (const l of plan) say(l);
      say(summary(items));
    }
    if (opts.dryRun) {
      if (ctx.json)
        ctx.out.write(JSON.stringify({ namespace: ns, backup: manifest.id, dryRun: true, plan: items.map(jsonItem) }, null, 2) + '\n');
      else say('dry run: nothing was changed');
      return ExitCode.OK;
    }
    const result = await executeNamespaceRestore({
      backup: scratch.client,
      live,
      items,
      signal: opts.signal,
      onItem: ctx.json ? undefined : (item, outcome) => say(`  ${outcome}: ${item.resource}/${item.name}`),
    });
    if (ctx.json) {
      ctx.out.write(
        JSON.stringify(
          {
            namespace: ns,
            backup: manifest.id,
            created: result.created.map(jsonItem),
            skipped: result.skipped.map(jsonItem),
            failed: result.failed.map((f) => ({ ...jsonItem(f.item), error: f.error })),
          },
          null,
          2,
        ) + '\n',
      );
    } else {
      say(`namespace ${ns}: ${result.created.length} created, ${result.skipped.length} skipped, ${result.failed.length} failed`);
      if (result.failed.length)
        say(`some keys were not created; run the same command again to retry them (it creates only what is missing)`);
    }
    return result.failed.length ? ExitCode.FAILED_PRECONDITION : ExitCode.OK;
  } finally {
    await scratch?.close();
    live.close();
  }
}

function planLine(i: NamespaceItem): string {
  const what = `${i.resource}/${i.name}`;
  if (i.action === 'create') return `  create    ${what}`;
  if (i.action === 'exists') return `  exists    ${what} (left alone)`;
  return `  left out  ${what}: ${i.reason}`;
}

function summary(items: NamespaceItem[]): string {
  const n = (a: NamespaceItem['action']): number => items.filter((i) => i.action === a).length;
  return `${n('create')} to create, ${n('exists')} exist now and are left alone, ${n('left-out')} left out`;
}

function jsonItem(i: NamespaceItem): Record<string, string> {
  return { key: i.key.toString('latin1'), resource: i.resource, name: i.name, action: i.action, ...(i.reason ? { reason: i.reason } : {}) };
}

function parseFlag<T>(flag: string, schema: z.ZodType<T, string>, value: string): T {
  const r = schema.safeParse(value);
  if (!r.success)
    throw new KburError('INVALID_ARGUMENT', `${flag} "${value}": ${r.error.issues[0]?.message}`, { hint: 'kbur restore --help' });
  return r.data;
}
