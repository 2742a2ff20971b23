import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { KburError } from '../../shared/errors.js';
import type { Manifest, Verification } from '../../shared/manifest.js';
import { KBUR_VERSION } from '../../shared/version.js';
import { loadContext, type GlobalOptions } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { checkArtifact } from '../repository/check.js';
import { loadIdentity, openPlain } from '../repository/seal.js';
import { signatureNote } from '../repository/signing.js';
import { recordVerify } from '../run-metrics.js';

/**
 * kbur verify ID: rereads every artifact, rechecks its size and sha256 against the manifest and the
 * snapshot's own integrity hash; records the result in verify.json beside the manifest. An encrypted
 * artifact: its stored bytes, and with --identity also its plaintext and the snapshot's own hash.
 * With signing set, a manifest whose signature does not check fails it (recorded too).
 */
export async function run(opts: GlobalOptions & { id: string; identity?: string; signal: AbortSignal }): Promise<ExitCode> {
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
  const startedAt = Date.now();
  const results: Verification['artifacts'] = [];
  let locked = 0;
  for (const a of m.artifacts) {
    const { digest, plain, problem } = await checkArtifact(ctx.repository, m, a, opts.signal, identity);
    if (a.encryption === 'age' && !plain) locked++;
    const problems = problem ? [problem] : [];
    const canOpen = a.encryption === 'none' || plain;
    if (!problems.length && canOpen && a.dump?.type === 'postgres' && a.dump.part !== '_globals') {
      const readable = await pgRestoreReads(await openPlain(ctx.repository, m, a, identity));
      if (readable) problems.push(readable);
    }
    results.push({
      path: a.path,
      ok: problems.length === 0,
      ...digest,
      ...(plain ? { plaintext: plain } : {}),
      ...(problems.length ? { error: problems.join('; ') } : {}),
    });
  }
  const verification: Verification = {
    verifiedAt: new Date().toISOString(),
    kburVersion: KBUR_VERSION,
    ok: results.every((r) => r.ok),
    artifacts: results,
    signature: ctx.signing ? `good (key ${ctx.signing.keyId})` : 'unsigned',
  };
  await ctx.repository.writeVerification(m.cluster, m.id, verification);
  await recordVerify(ctx, { ok: verification.ok, startedAt, endedAt: Date.now() });
  if (ctx.json) {
    ctx.out.write(JSON.stringify(verification, null, 2) + '\n');
  } else {
    const lines = results.map(
      (r) =>
        `  ${r.ok ? 'ok      ' : 'MISMATCH'} ${r.path}${r.error ? `: ${r.error}` : r.plaintext ? ' (and its plaintext, decrypted)' : ''}`,
    );
    lines.unshift(
      `backup ${m.id} (${m.phase}): ${verification.ok ? 'every artifact matches its manifest' : 'DAMAGED: do not restore from this backup'}`,
      `  ${signatureNote(ctx.signing)}`,
    );
    if (locked)
      lines.push(
        `note: ${locked} encrypted artifact(s) checked as stored only (sha256 of the encrypted bytes); --identity FILE also checks their plaintext and the snapshot's own hash`,
      );
    if (m.phase !== 'Completed') lines.push(`note: this backup is ${m.phase}; see kbur describe ${m.id}`);
    ctx.out.write(lines.join('\n') + '\n');
  }
  return verification.ok ? ExitCode.OK : ExitCode.VERIFY_FAILED;
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
