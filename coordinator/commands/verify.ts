import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Verification } from '../../shared/manifest.js';
import { KBUR_VERSION } from '../../shared/version.js';
import { loadContext, type GlobalOptions } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { checkArtifact } from '../repository/check.js';
import { recordVerify } from '../run-metrics.js';

const exec = promisify(execFile);

/**
 * kbur verify ID: rereads every artifact, rechecks its size and sha256 against the manifest and the
 * snapshot's own integrity hash; records the result in verify.json beside the manifest.
 */
export async function run(opts: GlobalOptions & { id: string; signal: AbortSignal }): Promise<ExitCode> {
  const ctx = await loadContext(opts);
  const m = await ctx.repository.readManifest(ctx.config.cluster, opts.id);
  const startedAt = Date.now();
  const results: Verification['artifacts'] = [];
  for (const a of m.artifacts) {
    const { digest, problem } = await checkArtifact(ctx.repository, m, a, opts.signal);
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
    ok: results.every((r) => r.ok),
    artifacts: results,
  };
  await ctx.repository.writeVerification(m.cluster, m.id, verification);
  await recordVerify(ctx, { ok: verification.ok, startedAt, endedAt: Date.now() });
  if (ctx.json) {
    ctx.out.write(JSON.stringify(verification, null, 2) + '\n');
  } else {
    const lines = results.map((r) => `  ${r.ok ? 'ok      ' : 'MISMATCH'} ${r.path}${r.error ? `: ${r.error}` : ''}`);
    lines.unshift(
      `backup ${m.id} (${m.phase}): ${verification.ok ? 'every artifact matches its manifest' : 'DAMAGED: do not restore from this backup'}`,
    );
    if (m.phase !== 'Completed') lines.push(`note: this backup is ${m.phase}; see kbur describe ${m.id}`);
    ctx.out.write(lines.join('\n') + '\n');
  }
  return verification.ok ? ExitCode.OK : ExitCode.VERIFY_FAILED;
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
