import { KburError } from '../../shared/errors.js';
import { newBackupId, type Artifact, type Manifest } from '../../shared/manifest.js';
import type { AgentClient } from '../agent-client.js';
import { mib } from '../backup/progress.js';
import { parseDurationFlag } from '../../shared/duration.js';
import { connectAgents, loadContext, lockRequest, type Context, type GlobalOptions } from '../context.js';
import { withLock } from '../repository/lock.js';
import { ExitCode } from '../exit-codes.js';
import { checkArtifact } from '../repository/check.js';
import type { Repository } from '../repository/repository.js';
import { identityProblem, loadIdentity, openPlain, plainDigest, type AgeIdentity } from '../repository/seal.js';
import { signatureNote } from '../repository/signing.js';
import { confirm } from '../confirm.js';

export interface RestoreDumpOptions extends GlobalOptions {
  id: string;
  node: string;
  profile: string;
  part?: string;
  yes?: boolean;
  dryRun?: boolean;
  /** How long to wait for the repository lock; default: refuse at once. */
  wait?: string;
  /** age identity file for an encrypted backup (else $KBUR_AGE_IDENTITY). */
  identity?: string;
  signal: AbortSignal;
}

const PROCEDURE: Record<string, string> = {
  mariadb: 'mariadb-admin drop, mariadb-admin create, then mariadb < dump',
  postgres: 'pg_restore --clean --if-exists --create (drops, recreates, loads)',
  mongodb: 'mongorestore --archive --drop',
  files: "the archive unpacked over the profile's paths (checked first: nothing outside them, no links leaving them)",
  command: "the profile's restore command with the dump on its stdin",
};

/** kbur restore-dump ID --node N --profile P: check, plan, confirm; the agent saves what is there first. */
export async function run(opts: RestoreDumpOptions): Promise<ExitCode> {
  const waitMs = parseDurationFlag(opts.wait ?? '0', '--wait');
  const ctx = await loadContext(opts);
  const identity = await loadIdentity(opts.identity);
  // Under the lock, so that prune never deletes the backup it reads; a dry run changes nothing.
  if (opts.dryRun) return restoreDump(ctx, opts, identity, opts.signal);
  return withLock(lockRequest(ctx, 'restore-dump', { waitMs, signal: opts.signal }), (signal) => restoreDump(ctx, opts, identity, signal));
}

async function restoreDump(
  ctx: Context,
  opts: RestoreDumpOptions,
  identity: AgeIdentity | undefined,
  signal: AbortSignal,
): Promise<ExitCode> {
  const manifest = await ctx.repository.readManifest(ctx.config.cluster, opts.id);
  const all = manifest.artifacts.filter((a) => a.kind === 'dump' && a.node === opts.node && a.dump?.profile === opts.profile);
  const parts = opts.part ? all.filter((a) => a.dump!.part === opts.part) : all;
  if (parts.length === 0) {
    const have = [
      ...new Set(
        manifest.artifacts
          .filter((a) => a.kind === 'dump')
          .map((a) => `${a.node}/${a.dump!.profile}${opts.part ? `/${a.dump!.part}` : ''}`),
      ),
    ];
    throw new KburError(
      'NOT_FOUND',
      `backup ${manifest.id} has no dump ${opts.node}/${opts.profile}${opts.part ? `/${opts.part}` : ''}${have.length ? ` (it has: ${have.join(', ')})` : ' (it has no dumps)'}`,
      {
        hint: 'kbur describe ID lists the dumps of a backup',
      },
    );
  }
  const problems: string[] = [];
  for (const a of parts) {
    const locked = identityProblem(a, identity);
    if (locked) {
      problems.push(locked);
      continue;
    }
    const { problem } = await checkArtifact(ctx.repository, manifest, a, signal, identity);
    if (problem) problems.push(`${a.path}: ${problem}`);
  }
  const agents = await connectAgents(ctx);
  const agent = agents.find((a) => a.node.name === opts.node);
  try {
    if (!agent)
      throw new KburError('INVALID_ARGUMENT', `no node ${opts.node} in ${ctx.configFile}`, {
        hint: `nodes: ${ctx.config.nodes.map((n) => n.name).join(', ')}`,
      });
    await agent.getNodeInfo({ countKeys: false }).catch((err: unknown) => problems.push((err as Error).message));
    const restoreId = newBackupId();
    const type = parts[0]!.dump!.type;
    const say = (line: string): void => void ctx.out.write(`${line}\n`);
    say(describe(restoreId, manifest.id, opts.node, opts.profile, type, parts));
    say(`  note: ${signatureNote(ctx.signing)}`);
    if (problems.length) {
      throw new KburError('FAILED_PRECONDITION', `nothing was changed:\n  - ${problems.join('\n  - ')}`, {
        hint: 'fix the problems above and run kbur restore-dump again',
      });
    }
    if (opts.dryRun) {
      say('dry run: checks passed; nothing was changed');
      return ExitCode.OK;
    }
    if (!(await confirm(ctx, opts, `replace ${parts.map((p) => p.dump!.part).join(', ')} on ${opts.node} with the backup's dump`)))
      return ExitCode.CANCELLED;
    await sendDumps({ repository: ctx.repository, manifest, agent, parts, restoreId, identity, say, signal });
    say(`restore-dump ${restoreId}: done. The safety dumps are in the agent's state dir on ${opts.node} (restores/${restoreId}/safety/).`);
    return ExitCode.OK;
  } finally {
    for (const a of agents) a.close();
  }
}

/** Restores dump parts on their node, one after the other; the agent makes a safety dump before each. */
export async function sendDumps(o: {
  repository: Repository;
  manifest: Manifest;
  agent: AgentClient;
  parts: Artifact[];
  restoreId: string;
  identity?: AgeIdentity;
  say: (line: string) => void;
  signal: AbortSignal;
}): Promise<void> {
  for (const a of o.parts) {
    // Decrypted here; a dump's compression is its agent's, and stays for the agent to undo.
    const data = await openPlain(o.repository, o.manifest, a, o.identity);
    const d = a.dump!;
    const res = await o.agent.restoreDump(
      { restoreId: o.restoreId, profile: d.profile, part: d.part, compression: a.compression, ...plainDigest(a) },
      data,
      o.signal,
    );
    for (const line of res.done) o.say(`${a.node}/${d.profile}/${d.part}: ${line}`);
  }
}

function describe(restoreId: string, backupId: string, node: string, profile: string, type: string, parts: Artifact[]): string {
  return [
    `Restore-dump ${restoreId}: profile ${profile} (${type}) on ${node} from backup ${backupId}`,
    ...parts.map((p) => `  ${p.dump!.part}: ${p.path}, ${mib(p.size)}, made with ${p.dump!.toolVersion || p.dump!.tool}`),
    '  for each part, on the node:',
    '    1. the dump is sent to the agent and checked there (size, sha256)',
    "    2. a safety dump of what is there now goes to the agent's state dir; if it fails, nothing is dropped",
    `    3. ${PROCEDURE[type] ?? "the tool's restore"}; the tool's exit code and errors are checked`,
  ].join('\n');
}
