import { copySnapshotToNodes } from '../backup/copies.js';
import { runBackup } from '../backup/run.js';
import { Progress, mib } from '../backup/progress.js';
import { parseDurationFlag } from '../../shared/duration.js';
import { connectAgents, loadContext, lockRequest, type Context, type GlobalOptions } from '../context.js';
import { removeLeftovers } from '../prune/leftovers.js';
import { withLock } from '../repository/lock.js';
import { asKburError, type KburError } from '../../shared/errors.js';
import type { Verification } from '../../shared/manifest.js';
import { ExitCode, exitCodeFor } from '../exit-codes.js';
import { checkRecipients, loadIdentity, sealNote, type AgeIdentity } from '../repository/seal.js';
import { signatureNote } from '../repository/signing.js';
import { describeVerification, verifyBackup } from './verify.js';
import { recordBackup } from '../run-metrics.js';

/** kbur backup: one backup set of the whole control plane. */
type BackupOptions = GlobalOptions & { verify?: 'hashes' | 'deep'; wait?: string; signal: AbortSignal };

export async function run(opts: BackupOptions): Promise<ExitCode> {
  const waitMs = parseDurationFlag(opts.wait ?? '0', '--wait');
  const ctx = await loadContext(opts);
  await checkRecipients(ctx.seal.recipients);
  // For the snapshot copies sent to the nodes, and a verify that reads an encrypted snapshot ($KBUR_AGE_IDENTITY).
  const identity = ctx.config.backup.copySnapshotToNodes || opts.verify ? await loadIdentity(undefined) : undefined;
  return withLock(lockRequest(ctx, 'backup', { waitMs, signal: opts.signal }), (signal) => backUp(ctx, opts, identity, signal));
}

async function backUp(ctx: Context, opts: BackupOptions, identity: AgeIdentity | undefined, signal: AbortSignal): Promise<ExitCode> {
  // Under the lock: an earlier backup without a manifest is dead, and what it left goes.
  const leftovers = await removeLeftovers(ctx.repository, ctx.config.cluster, new Date());
  for (const l of leftovers) ctx.log.warn('removed what an interrupted backup left', { backup: l.id, reason: l.reason });
  const agents = await connectAgents(ctx);
  const progress = ctx.json ? undefined : new Progress(process.stderr);
  const startedAt = Date.now();
  try {
    const m = await runBackup({
      cluster: ctx.config.cluster,
      agents,
      dumps: ctx.config.dumps,
      repository: ctx.repository,
      seal: ctx.seal,
      log: ctx.log,
      progress,
      stallMs: ctx.config.stallTimeout * 1000,
      signal,
    }).catch(async (err: unknown) => {
      await recordBackup(ctx, { startedAt, endedAt: Date.now() });
      throw err;
    });
    await recordBackup(ctx, { manifest: m, startedAt, endedAt: Date.now() });
    const copies = ctx.config.backup.copySnapshotToNodes
      ? await copySnapshotToNodes({ manifest: m, agents, repository: ctx.repository, identity, signal })
      : undefined;
    // A set without a snapshot has nothing to verify beyond what the backup itself just checked.
    let verification: Verification | undefined;
    let verifyError: KburError | undefined;
    try {
      if (opts.verify && m.etcd) verification = await verifyBackup(ctx, m, { deep: opts.verify === 'deep', identity, signal });
    } catch (err) {
      // The backup is whole and its id must reach the operator (or the script): the verify's failure is reported beside it.
      if (signal.aborted) throw err;
      verifyError = asKburError(err);
    }
    if (ctx.json) {
      const signature = ctx.signing ? { signedWith: ctx.signing.keyId } : { unsigned: true };
      ctx.out.write(
        JSON.stringify(
          {
            ...m,
            ...signature,
            ...(copies ? { nodeCopies: copies } : {}),
            ...(leftovers.length ? { leftoversRemoved: leftovers } : {}),
            ...(verification ? { verification } : {}),
            ...(verifyError ? { verificationError: { code: verifyError.code, message: verifyError.message, hint: verifyError.hint } } : {}),
          },
          null,
          2,
        ) + '\n',
      );
    } else {
      const size = m.artifacts.reduce((n, a) => n + a.size, 0);
      const lines = [
        ...leftovers.map((l) => `removed ${l.id}: ${l.reason}`),
        `backup ${m.id}: ${m.phase}`,
        `  location: ${ctx.repository.artifactLocation(m.cluster, m.id, 'manifest.json').replace(/\/manifest\.json$/, '')}`,
      ];
      if (m.etcd)
        lines.push(
          `  etcd: snapshot of ${m.etcd.memberName} on ${m.etcd.node}, revision ${m.etcd.revision}, ${m.etcd.keyCount} keys, ${mib(m.artifacts[0]!.size)} as stored`,
        );
      lines.push(
        `  kubernetes dirs: ${
          m.artifacts
            .filter((a) => a.kind === 'kubernetes-dir')
            .map((a) => a.node)
            .join(', ') || 'none'
        }`,
      );
      const dumps = m.artifacts.filter((a) => a.kind === 'dump');
      if (dumps.length) lines.push(`  dumps: ${dumps.map((a) => `${a.node}/${a.dump!.profile}/${a.dump!.part}`).join(', ')}`);
      lines.push(`  total: ${mib(size)} in ${m.artifacts.length} artifacts`, `  ${sealNote(ctx.seal)}`, `  ${signatureNote(ctx.signing)}`);
      if (copies?.length) {
        const ok = copies.filter((c) => c.ok).map((c) => c.node);
        lines.push(`  snapshot copies kept on: ${ok.join(', ') || 'no node'}`);
        for (const c of copies.filter((x) => !x.ok))
          lines.push(`  WARNING no snapshot copy on ${c.node}: ${c.detail} (a restore uploads it to that node instead)`);
      }
      for (const f of m.failures) lines.push(`  FAILED ${f.part}: ${f.message}`);
      if (verification) lines.push(...describeVerification(m, verification, { deep: opts.verify === 'deep' }).split('\n'));
      if (verifyError)
        lines.push(`verify: could not run: ${verifyError.message}`, ...(verifyError.hint ? [`  what to do: ${verifyError.hint}`] : []));
      if (m.phase === 'Completed') {
        if (!verification) lines.push(`next: kbur verify ${m.id}`);
      } else if (m.phase === 'PartiallyFailed')
        lines.push('next: fix what failed above and run kbur backup again; this set has a good etcd snapshot but is missing parts');
      else lines.push('next: fix what failed above and run kbur backup again; this set cannot be restored from');
      ctx.out.write(lines.join('\n') + '\n');
    }
    if (verifyError) return exitCodeFor(verifyError);
    if (verification && !verification.ok) return ExitCode.VERIFY_FAILED;
    return m.phase === 'Completed'
      ? ExitCode.OK
      : m.phase === 'PartiallyFailed'
        ? ExitCode.BACKUP_PARTIALLY_FAILED
        : ExitCode.BACKUP_FAILED;
  } finally {
    progress?.stop();
    for (const a of agents) a.close();
  }
}
