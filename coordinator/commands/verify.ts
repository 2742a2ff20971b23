import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { DeepVerification, Manifest, Verification } from '../../shared/manifest.js';
import { KBUR_VERSION } from '../../shared/version.js';
import { loadContext, type Context, type GlobalOptions } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { checkArtifact } from '../repository/check.js';
import { deepVerify } from '../scratch/backup.js';

const exec = promisify(execFile);

/**
 * kbur verify ID: rereads every artifact, rechecks its size and sha256 against the manifest and the
 * snapshot's own integrity hash; records the result in verify.json beside the manifest.
 * --deep also starts a scratch etcd from the snapshot and compares what it holds with the manifest.
 */
export async function run(opts: GlobalOptions & { id: string; deep?: boolean; signal: AbortSignal }): Promise<ExitCode> {
  const ctx = await loadContext(opts);
  const m = await ctx.repository.readManifest(ctx.config.cluster, opts.id);
  const verification = await verifyBackup(ctx, m, { deep: Boolean(opts.deep), signal: opts.signal });
  if (ctx.json) {
    ctx.out.write(JSON.stringify(verification, null, 2) + '\n');
  } else {
    ctx.out.write(describeVerification(m, verification, Boolean(opts.deep)) + '\n');
  }
  return verification.ok ? ExitCode.OK : ExitCode.VERIFY_FAILED;
}

/** Checks a backup (deeply when asked) and records the result in verify.json; a deep result of an earlier run is kept. */
export async function verifyBackup(ctx: Context, m: Manifest, opts: { deep: boolean; signal: AbortSignal }): Promise<Verification> {
  // Deep: the snapshot is checked against the manifest beside its restore into the scratch etcd.
  let snapshotCheck: Awaited<ReturnType<typeof checkArtifact>> | undefined;
  const deep: DeepVerification | undefined = opts.deep
    ? await deepVerify({
        repository: ctx.repository,
        config: ctx.config,
        manifest: m,
        onSnapshotChecked: (r) => (snapshotCheck = r),
        signal: opts.signal,
      })
    : (await ctx.repository.readVerification(m.cluster, m.id))?.deep;
  const results: Verification['artifacts'] = [];
  for (const a of m.artifacts) {
    const { digest, problem } =
      a.kind === 'etcd-snapshot' && snapshotCheck ? snapshotCheck : await checkArtifact(ctx.repository, m, a, opts.signal);
    const problems = problem ? [problem] : [];
    if (!problems.length && a.dump?.type === 'postgres' && a.dump.part !== '_globals') {
      const readable = await pgRestoreReads(ctx.repository.artifactLocation(m.cluster, m.id, a.path));
      if (readable) problems.push(readable);
    }
    results.push({ path: a.path, ok: problems.length === 0, ...digest, ...(problems.length ? { error: problems.join('; ') } : {}) });
  }
  const verification: Verification = {
    verifiedAt: new Date().toISOString(),
    kburVersion: KBUR_VERSION,
    ok: results.every((r) => r.ok) && (!opts.deep || deep!.ok),
    artifacts: results,
    ...(deep ? { deep } : {}),
  };
  await ctx.repository.writeVerification(m.cluster, m.id, verification);
  return verification;
}

export function describeVerification(m: Manifest, v: Verification, deep: boolean): string {
  const lines = v.artifacts.map((r) => `  ${r.ok ? 'ok      ' : 'MISMATCH'} ${r.path}${r.error ? `: ${r.error}` : ''}`);
  const artifactsOk = v.artifacts.every((r) => r.ok);
  lines.unshift(
    `backup ${m.id} (${m.phase}): ${artifactsOk ? 'every artifact matches its manifest' : 'DAMAGED: do not restore from this backup'}`,
  );
  if (deep && v.deep) {
    const d = v.deep;
    lines.push(
      d.ok
        ? `deep: the snapshot restores and starts: revision ${d.revision}, ${d.keyCount} keys, ${d.namespaces} namespaces, as the manifest says (${((d.durationMs ?? 0) / 1000).toFixed(1)} s)`
        : `deep: FAILED: ${d.problems.join('; ')}`,
    );
    if (d.byResource) lines.push(`  keys by resource: ${largest(d.byResource)}`);
    if (d.byNamespace) lines.push(`  keys by namespace: ${largest(d.byNamespace)}`);
  }
  if (m.phase !== 'Completed') lines.push(`note: this backup is ${m.phase}; see kbur describe ${m.id}`);
  return lines.join('\n');
}

/** Whether pg_restore --list reads a custom-format dump: a problem, or undefined when it does. */
async function pgRestoreReads(file: string): Promise<string | undefined> {
  try {
    const { stdout } = await exec('pg_restore', ['--list', file], { timeout: 120_000, maxBuffer: 64 << 20 });
    return stdout.includes('; Archive created at') ? undefined : 'pg_restore --list printed no table of contents';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return `pg_restore --list cannot read it: ${
      String((err as { stderr?: string }).stderr ?? (err as Error).message)
        .trim()
        .split('\n')[0]
    }`;
  }
}

/** The largest counts first, the rest summed up: a line stays readable on a cluster of thousands of namespaces. */
function largest(counts: Record<string, number>, n = 10): string {
  const all = Object.entries(counts).sort(([, a], [, b]) => b - a);
  const rest = all.slice(n).reduce((sum, [, c]) => sum + c, 0);
  return all
    .slice(0, n)
    .map(([k, c]) => `${k} ${c}`)
    .concat(all.length > n ? [`${all.length - n} more ${rest}`] : [])
    .join(', ');
}
