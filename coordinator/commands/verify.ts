import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { Verification } from '../../shared/manifest.js';
import { KBUR_VERSION } from '../../shared/version.js';
import { loadContext, type GlobalOptions } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { checkArtifact } from '../repository/check.js';

/**
 * kbur verify ID: rereads every artifact, rechecks its size and sha256 against the manifest and the
 * snapshot's own integrity hash; records the result in verify.json beside the manifest.
 */
export async function run(opts: GlobalOptions & { id: string; signal: AbortSignal }): Promise<ExitCode> {
  const ctx = await loadContext(opts);
  const m = await ctx.repository.readManifest(ctx.config.cluster, opts.id);
  const results: Verification['artifacts'] = [];
  for (const a of m.artifacts) {
    const { digest, problem } = await checkArtifact(ctx.repository, m, a, opts.signal);
    const problems = problem ? [problem] : [];
    if (!problems.length && a.dump?.type === 'postgres' && a.dump.part !== '_globals') {
      const readable = await pgRestoreReads(await ctx.repository.openArtifact(m.cluster, m.id, a.path));
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

/**
 * Whether pg_restore --list reads a custom-format dump, fed on its stdin (the repository may not be
 * a filesystem): a problem, or undefined when it does.
 */
async function pgRestoreReads(dump: Readable): Promise<string | undefined> {
  const child = spawn('pg_restore', ['--list'], { stdio: ['pipe', 'pipe', 'pipe'], timeout: 120_000 });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout = (stdout + d).slice(-(64 << 20))));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4096)));
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, sig) => resolve([c, sig])));
  const spawned = once(child, 'spawn').then(
    () => true,
    (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? false : Promise.reject(err)),
  );
  if (!(await spawned)) {
    dump.destroy();
    return undefined;
  }
  // pg_restore stops reading once it has the table of contents: a closed stdin is not a failure.
  await pipeline(dump, child.stdin).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_PREMATURE_CLOSE') throw err;
  });
  const [code, signal] = await exited;
  if (code !== 0) return `pg_restore --list cannot read it: ${(stderr.trim().split('\n')[0] ?? '') || `exit ${code ?? signal}`}`;
  return stdout.includes('; Archive created at') ? undefined : 'pg_restore --list printed no table of contents';
}
