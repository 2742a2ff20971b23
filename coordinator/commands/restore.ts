import { KburError } from '../../shared/errors.js';
import { checkId, newBackupId } from '../../shared/manifest.js';
import type { AgentClient } from '../agent-client.js';
import { parseDurationFlag } from '../../shared/duration.js';
import { asideDataDir, restoredDataDir } from '../../shared/restore-names.js';
import { connectAgents, loadContext, lockRequest, type Context, type GlobalOptions } from '../context.js';
import { withLock } from '../repository/lock.js';
import { confirm } from '../confirm.js';
import { sendDumps } from './restore-dump.js';
import * as restoreNamespace from './restore-namespace.js';
import { ExitCode } from '../exit-codes.js';
import { Journal } from '../restore/journal.js';
import { describePlan, preflight } from '../restore/plan.js';
import { executeRestore, executeRollback } from '../restore/run.js';
import { loadTargets } from '../restore/targets.js';
import { loadIdentity, type AgeIdentity } from '../repository/seal.js';
import { signatureNote } from '../repository/signing.js';
import { measured, recordRestore } from '../run-metrics.js';

export interface RestoreOptions extends GlobalOptions {
  id?: string;
  resume?: string;
  rollback?: string;
  yes?: boolean;
  dryRun?: boolean;
  withKubernetesDir?: boolean;
  /** After etcd, also restore every application dump of the backup (safety dump first, on each node). */
  dumps?: boolean;
  /** How long to wait for the repository lock ("90s", "10m"); default: refuse at once. */
  wait?: string;
  /** --nodes a,b: a cluster of just these nodes of kbur.yaml; the others join it later. */
  nodes?: string;
  /** --to FILE: the backup's nodes come back at new addresses, on the agents the file names. */
  to?: string;
  /** Only this namespace's missing keys, into the running cluster. */
  namespace?: string;
  resource?: string;
  /** age identity file for an encrypted backup (else $KBUR_AGE_IDENTITY). */
  identity?: string;
  signal: AbortSignal;
}

/**
 * kbur restore ID: preflight (changes nothing), the plan, a confirmation, then the journaled steps.
 * kbur restore --resume RID continues; kbur restore --rollback RID puts the previous data back.
 */
export async function run(opts: RestoreOptions): Promise<ExitCode> {
  if (opts.resource !== undefined && opts.namespace === undefined) {
    throw new KburError('INVALID_ARGUMENT', '--resource goes with --namespace', {
      hint: 'kbur restore ID --namespace NS --resource configmaps,secrets',
    });
  }
  if (opts.namespace !== undefined) {
    if (!opts.id || opts.resume || opts.rollback || opts.withKubernetesDir || opts.dumps) {
      throw new KburError(
        'INVALID_ARGUMENT',
        '--namespace takes a backup id and no --resume, --rollback, --with-kubernetes-dir or --dumps',
        {
          hint: 'kbur restore ID --namespace NS [--resource configmaps,secrets] [--dry-run]',
        },
      );
    }
    return restoreNamespace.run({ ...opts, id: opts.id, namespace: opts.namespace });
  }
  const modes = [opts.id, opts.resume, opts.rollback].filter(Boolean).length;
  if (modes !== 1) {
    throw new KburError('INVALID_ARGUMENT', 'give exactly one of: a backup id, --resume RESTORE_ID, --rollback RESTORE_ID', {
      hint: 'kbur restore --help',
    });
  }
  if (opts.nodes !== undefined && opts.to !== undefined) {
    throw new KburError('INVALID_ARGUMENT', '--nodes and --to do not go together: the --to file names the nodes to restore', {
      hint: 'list only the nodes to restore in the --to file',
    });
  }
  if ((opts.nodes !== undefined || opts.to !== undefined) && !opts.id) {
    throw new KburError(
      'INVALID_ARGUMENT',
      '--nodes and --to go with a backup id: a resumed or rolled back restore keeps the nodes it started with',
      { hint: 'kbur restore ID --nodes node-1[,node-2], or kbur restore ID --to FILE' },
    );
  }
  const waitMs = parseDurationFlag(opts.wait ?? '0', '--wait');
  const ctx = await loadContext(opts);
  const identity = await loadIdentity(opts.identity);
  const restoreId = opts.id
    ? newBackupId()
    : checkId((opts.resume ?? opts.rollback)!, 'restore', 'the restore id was printed when it started');
  // A dry run changes nothing and needs no lock; anything else is the cluster's one operation.
  if (opts.dryRun && opts.id) return restore(ctx, opts, restoreId, identity, opts.signal);
  return withLock(lockRequest(ctx, 'restore', { waitMs, signal: opts.signal, restoreId }), (signal) =>
    restore(ctx, opts, restoreId, identity, signal),
  );
}

async function restore(
  ctx: Context,
  opts: RestoreOptions,
  restoreId: string,
  identity: AgeIdentity | undefined,
  signal: AbortSignal,
): Promise<ExitCode> {
  const known = ctx.config.nodes.map((n) => n.name);
  const only = opts.nodes === undefined ? undefined : nodeList(opts.nodes, known);
  const targets = opts.to === undefined ? undefined : await loadTargets(opts.to);
  // A resumed or rolled back restore talks to the agents its plan names (new ones, after --to).
  const journal =
    opts.resume || opts.rollback ? await Journal.load(ctx.repository, ctx.config.cluster, (opts.resume ?? opts.rollback)!) : undefined;
  const agents = await connectAgents(
    ctx,
    journal ? journal.plan.nodes.map((n) => ({ name: n.node, agent: n.agent })) : targets?.map((t) => ({ name: t.name, agent: t.agent })),
  );
  const say = (line: string): void => void ctx.out.write(`${line}\n`);
  try {
    const base = { agents, repository: ctx.repository, identity, log: ctx.log, signal, say };
    if (journal) {
      say(describePlan(journal.plan));
      say(`journal: ${journal.data.status}, ${journal.data.entries.filter((e) => e.state === 'done').length} steps done`);
      if (!(await confirm(ctx, opts, opts.resume ? 'resume this restore' : 'roll this restore back'))) return ExitCode.CANCELLED;
      if (opts.resume) {
        await measured(
          (r) => recordRestore(ctx, r),
          () => executeRestore({ ...base, journal }),
        );
        say(
          `restore ${journal.plan.restoreId}: completed. The old data dirs are kept as ${asideDataDir('<dataDir>', journal.plan.restoreId)}.`,
        );
      } else {
        await executeRollback({ ...base, journal });
        say(
          `restore ${journal.plan.restoreId}: rolled back; the restored data dirs are kept as ${restoredDataDir('<dataDir>', journal.plan.restoreId)}.`,
        );
      }
      return ExitCode.OK;
    }

    const check = await preflight({
      repository: ctx.repository,
      cluster: ctx.config.cluster,
      backupId: opts.id!,
      restoreId,
      agents: only ? agents.filter((a) => only.includes(a.node.name)) : agents,
      withKubernetesDir: Boolean(opts.withKubernetesDir),
      withDumps: Boolean(opts.dumps),
      identity,
      dryRun: Boolean(opts.dryRun),
      targets,
      signal,
    });
    check.plan?.notes.push(signatureNote(ctx.signing));
    if (check.plan) say(describePlan(check.plan));
    if (check.problems.length) {
      throw new KburError(
        'FAILED_PRECONDITION',
        `preflight found ${check.problems.length} problem(s); nothing was changed:\n  - ${check.problems.join('\n  - ')}`,
        {
          hint: 'fix them and run kbur restore again',
        },
      );
    }
    const plan = check.plan!;
    if (opts.dryRun) {
      say('dry run: preflight passed; nothing was changed');
      return ExitCode.OK;
    }
    if (!(await confirm(ctx, opts, `restore ${plan.nodes.length} members from backup ${plan.backupId}; this stops the control plane`)))
      return ExitCode.CANCELLED;
    const created = await Journal.create(ctx.repository, plan);
    say(`restore ${restoreId} started; if it is interrupted: kbur restore --resume ${restoreId} (or --rollback ${restoreId})`);
    await measured(
      (r) => recordRestore(ctx, r),
      () => executeRestore({ ...base, journal: created }),
    );
    if (opts.dumps) await restoreAllDumps(ctx, agents, plan.backupId, restoreId, identity, say, signal);
    say(
      `restore ${restoreId}: completed and verified. The old data dirs are kept as ${asideDataDir('<dataDir>', restoreId)}; kbur restore --rollback ${restoreId} puts them back.`,
    );
    return ExitCode.OK;
  } finally {
    for (const a of agents) a.close();
  }
}

/** The names --nodes gives, each a node of kbur.yaml. */
function nodeList(value: string, known: string[]): string[] {
  const names = value.split(',').map((n) => n.trim());
  for (const name of names) {
    if (!known.includes(name)) {
      throw new KburError('INVALID_ARGUMENT', `--nodes: "${name}" is not a node of kbur.yaml (${known.join(', ')})`, {
        hint: 'name nodes as kbur.yaml does, separated by commas: --nodes node-1,node-2',
      });
    }
  }
  return [...new Set(names)];
}

/** --dumps: every dump of the backup back on its node, once etcd is restored and verified. */
async function restoreAllDumps(
  ctx: Context,
  agents: AgentClient[],
  backupId: string,
  restoreId: string,
  identity: AgeIdentity | undefined,
  say: (l: string) => void,
  signal: AbortSignal,
): Promise<void> {
  const manifest = await ctx.repository.readManifest(ctx.config.cluster, backupId);
  const dumps = manifest.artifacts.filter((a) => a.kind === 'dump');
  if (dumps.length === 0) return say('dumps: the backup has none');
  for (const node of [...new Set(dumps.map((a) => a.node))]) {
    const agent = agents.find((a) => a.node.name === node);
    if (!agent) {
      throw new KburError('INVALID_CONFIG', `the backup has dumps of node ${node}, which is not in kbur.yaml`, {
        hint: 'restore them with kbur restore-dump once the node is back in kbur.yaml',
      });
    }
    await sendDumps({
      repository: ctx.repository,
      manifest,
      agent,
      parts: dumps.filter((a) => a.node === node),
      restoreId,
      identity,
      say,
      signal,
    });
  }
}
