import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { KburError } from '../../shared/errors.js';
import type { DeepVerification, Manifest, Verification } from '../../shared/manifest.js';
import { KBUR_VERSION } from '../../shared/version.js';
import { loadContext, type Context, type GlobalOptions } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { checkArtifact } from '../repository/check.js';
import { loadIdentity, openPlain, type AgeIdentity } from '../repository/seal.js';
import { signatureNote } from '../repository/signing.js';
import { recordVerify } from '../run-metrics.js';
import { deepVerify } from '../scratch/backup.js';

/**
 * kbur verify ID: rereads every artifact, rechecks its size and sha256 against the manifest and the
 * snapshot's own integrity hash; records the result in verify.json beside the manifest. An encrypted
 * artifact: its stored bytes, and with --identity also its plaintext and the snapshot's own hash.
 * With signing set, a manifest whose signature does not check fails it (recorded too).
 * --deep also starts a scratch etcd from the snapshot and compares what it holds with the manifest.
 */
export async function run(opts: GlobalOptions & { id: string; deep?: boolean; identity?: string; signal: AbortSignal }): Promise<ExitCode> {
  const ctx = await loadContext(opts);
  const identity = await loadIdentity(opts.identity);
  let m: Manifest;
  try {
    m = await ctx.repository.readManifest(ctx.config.cluster, opts.id);
  } catch (err) {
    if (ctx.signing && KburError.is(err) && err.code === 'DATA_LOSS') {
      await ctx.repository.writeVerification(ctx.config.cluster, opts.id, {
        verifiedAt: new Date().toISOString(),
        kburVersion: KBUR_VERSION,
        ok: false,
        artifacts: [],
        signature: err.message,
      });
      await recordVerify(ctx, { ok: false, startedAt: Date.now(), endedAt: Date.now() });
    }
    throw err;
  }
  const verification = await verifyBackup(ctx, m, { deep: Boolean(opts.deep), identity, signal: opts.signal });
  if (ctx.json) {
    ctx.out.write(JSON.stringify(verification, null, 2) + '\n');
  } else {
    ctx.out.write(describeVerification(m, verification, { deep: Boolean(opts.deep), signature: signatureNote(ctx.signing) }) + '\n');
  }
  return verification.ok ? ExitCode.OK : ExitCode.VERIFY_FAILED;
}

/** Checks a backup (deeply when asked) and records the result in verify.json; a deep result of an earlier run is kept. */
export async function verifyBackup(
  ctx: Context,
  m: Manifest,
  opts: { deep: boolean; identity: AgeIdentity | undefined; signal: AbortSignal },
): Promise<Verification> {
  const startedAt = Date.now();
  type Result = Verification['artifacts'][number];
  const check = async (a: Manifest['artifacts'][number], known?: Awaited<ReturnType<typeof checkArtifact>>): Promise<Result> => {
    const { digest, plain, problem } = known ?? (await checkArtifact(ctx.repository, m, a, opts.signal, opts.identity));
    const problems = problem ? [problem] : [];
    const canOpen = a.encryption === 'none' || plain;
    if (!problems.length && canOpen && a.dump?.type === 'postgres' && a.dump.part !== '_globals') {
      const readable = await pgRestoreReads(await openPlain(ctx.repository, m, a, opts.identity));
      if (readable) problems.push(readable);
    }
    return {
      path: a.path,
      ok: problems.length === 0,
      ...digest,
      ...(plain ? { plaintext: plain } : {}),
      ...(problems.length ? { error: problems.join('; ') } : {}),
    };
  };
  // Deep: the other artifacts are checked while the scratch etcd works, and a snapshot stored as it
  // came is checked against the manifest beside its restore into it.
  const others = opts.deep ? m.artifacts.map((a) => (a.kind === 'etcd-snapshot' ? undefined : check(a))) : [];
  // A failure is reported where its result is awaited, in the manifest's order.
  for (const p of others) p?.catch(() => undefined);
  let snapshotCheck: Awaited<ReturnType<typeof checkArtifact>> | undefined;
  let deep: DeepVerification | undefined;
  try {
    deep = opts.deep
      ? await deepVerify({
          repository: ctx.repository,
          config: ctx.config,
          manifest: m,
          identity: opts.identity,
          onSnapshotChecked: (r) => (snapshotCheck = r),
          signal: opts.signal,
        })
      : (await ctx.repository.readVerification(m.cluster, m.id))?.deep;
  } catch (err) {
    // What it throws is the error to report; the checks run beside it only end.
    await Promise.allSettled(others);
    throw err;
  }
  const results: Result[] = [];
  for (const [i, a] of m.artifacts.entries()) {
    results.push(await (others[i] ?? check(a, a.kind === 'etcd-snapshot' ? snapshotCheck : undefined)));
  }
  const verification: Verification = {
    verifiedAt: new Date().toISOString(),
    kburVersion: KBUR_VERSION,
    ok: results.every((r) => r.ok) && (!opts.deep || deep!.ok),
    artifacts: results,
    signature: ctx.signing ? `good (key ${ctx.signing.keyId})` : 'unsigned',
    ...(deep ? { deep } : {}),
  };
  await ctx.repository.writeVerification(m.cluster, m.id, verification);
  await recordVerify(ctx, { ok: verification.ok, startedAt, endedAt: Date.now() });
  return verification;
}

/** The verification as an operator reads it; `signature`: the line saying how the manifest is signed, when wanted. */
export function describeVerification(m: Manifest, v: Verification, opts: { deep: boolean; signature?: string }): string {
  const lines = v.artifacts.map(
    (r) =>
      `  ${r.ok ? 'ok      ' : 'MISMATCH'} ${r.path}${r.error ? `: ${r.error}` : r.plaintext ? ' (and its plaintext, decrypted)' : ''}`,
  );
  const artifactsOk = v.artifacts.every((r) => r.ok);
  lines.unshift(
    `backup ${m.id} (${m.phase}): ${artifactsOk ? 'every artifact matches its manifest' : 'DAMAGED: do not restore from this backup'}`,
    ...(opts.signature ? [`  ${opts.signature}`] : []),
  );
  const locked = v.artifacts.filter((r) => m.artifacts.find((a) => a.path === r.path)?.encryption === 'age' && !r.plaintext).length;
  if (locked)
    lines.push(
      `note: ${locked} encrypted artifact(s) checked as stored only (sha256 of the encrypted bytes); --identity FILE also checks their plaintext and the snapshot's own hash`,
    );
  if (opts.deep && v.deep) {
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

/** Whether pg_restore --list reads a custom-format dump from `data` (decrypted if it was): a problem, or undefined when it does. */
async function pgRestoreReads(data: Readable): Promise<string | undefined> {
  const child = spawn('pg_restore', ['--list'], { stdio: ['pipe', 'pipe', 'pipe'], timeout: 120_000 });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => void (stdout.length < 1 << 20 && (stdout += d.toString())));
  child.stderr.on('data', (d: Buffer) => void (stderr.length < 64 << 10 && (stderr += d.toString())));
  // pg_restore may stop reading once it has the table of contents: the rest is not needed.
  child.stdin.on('error', () => undefined);
  data.on('error', () => undefined);
  data.pipe(child.stdin);
  try {
    const [code] = (await once(child, 'close')) as [number | null];
    if (code !== 0) return `pg_restore --list cannot read it: ${stderr.trim().split('\n')[0] ?? `exit ${code}`}`;
    return stdout.includes('; Archive created at') ? undefined : 'pg_restore --list printed no table of contents';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  } finally {
    data.destroy();
  }
}
