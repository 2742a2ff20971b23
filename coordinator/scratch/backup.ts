import { KburError } from '../../shared/errors.js';
import type { DeepVerification, Manifest } from '../../shared/manifest.js';
import type { FileDigest } from '../../shared/streams.js';
import type { CoordinatorConfig } from '../config.js';
import { checkArtifact } from '../repository/check.js';
import { identityProblem, isSealed, openPlain, type AgeIdentity } from '../repository/seal.js';
import type { Repository } from '../repository/repository.js';
import { ScratchEtcd, cancellable } from './etcd.js';
import { summarizeKeys } from './keys.js';

/**
 * A scratch etcd started from a backup's snapshot, once the snapshot's size, sha256 and own hash
 * match its manifest: a damaged or truncated snapshot fails here, before etcd starts.
 */
export async function openBackupScratch(opts: {
  repository: Repository;
  config: CoordinatorConfig;
  manifest: Manifest;
  /** Opens an encrypted snapshot. */
  identity?: AgeIdentity;
  /** Told what the check of a snapshot stored as it came found (kbur verify records it). */
  onSnapshotChecked?: (result: { digest?: FileDigest; problem?: string }) => void;
  signal: AbortSignal;
}): Promise<ScratchEtcd> {
  const m = opts.manifest;
  const snapshot = m.artifacts.find((a) => a.kind === 'etcd-snapshot');
  if (!snapshot || !m.etcd) {
    throw new KburError('FAILED_PRECONDITION', `backup ${m.id} has no etcd snapshot (${m.phase})`, {
      hint: 'kbur list shows the backups there are',
    });
  }
  const scratch = {
    etcdBinary: opts.config.scratch.etcd,
    restoreTool: opts.config.scratch.restoreTool,
    dir: opts.config.scratch.dir,
    signal: opts.signal,
  };
  const file = opts.repository.localFile(m.cluster, m.id, snapshot.path);
  if (isSealed(snapshot) || !file) {
    // Compressed or encrypted by kbur, or in a repository that is no filesystem (S3): its plain
    // bytes go into the scratch folder first, checked on the way (stored and plain sha256, etcd's
    // hash); a damaged one fails there, before etcd starts.
    const problem = identityProblem(snapshot, opts.identity);
    if (problem) throw new KburError('FAILED_PRECONDITION', problem, { hint: 'kbur describe ID shows how the snapshot is stored' });
    return ScratchEtcd.start({
      ...scratch,
      snapshot: opts.repository.artifactLocation(m.cluster, m.id, snapshot.path),
      plain: () => openPlain(opts.repository, m, snapshot, opts.identity),
    });
  }
  const check = checkArtifact(opts.repository, m, snapshot, opts.signal).then((result) => {
    opts.onSnapshotChecked?.(result);
    if (result.problem) {
      throw new KburError('DATA_LOSS', `snapshot ${snapshot.path} of backup ${m.id} is damaged: ${result.problem}`, {
        hint: `kbur verify ${m.id} records it; use another backup (kbur list)`,
      });
    }
  });
  return ScratchEtcd.start({ ...scratch, snapshot: file, check });
}

/**
 * Reads a backup's snapshot in a scratch etcd: revision, key count, keys by resource and by
 * namespace, a namespace object for every namespace that holds objects; compares with the manifest.
 * A snapshot that cannot be read is a failed verification, not an error.
 */
export async function deepVerify(opts: {
  repository: Repository;
  config: CoordinatorConfig;
  manifest: Manifest;
  identity?: AgeIdentity;
  onSnapshotChecked?: (result: { digest?: FileDigest; problem?: string }) => void;
  signal: AbortSignal;
}): Promise<DeepVerification> {
  const started = Date.now();
  const verifiedAt = new Date().toISOString();
  const m = opts.manifest;
  if (!m.etcd || !m.artifacts.some((a) => a.kind === 'etcd-snapshot')) {
    return { verifiedAt, ok: false, problems: [`backup ${m.id} (${m.phase}) has no etcd snapshot`] };
  }
  let scratch: ScratchEtcd;
  try {
    scratch = await openBackupScratch(opts);
  } catch (err) {
    if (opts.signal.aborted || !KburError.is(err) || err.code !== 'DATA_LOSS') throw err;
    return { verifiedAt, ok: false, problems: [`${err.message}; etcd was not started`], durationMs: Date.now() - started };
  }
  try {
    const s = await cancellable(opts.signal, () => summarizeKeys(scratch.client, opts.signal));
    const problems: string[] = [];
    if (s.revision !== m.etcd!.revision) problems.push(`revision ${s.revision}, manifest says ${m.etcd!.revision}`);
    if (m.etcd!.keyCount >= 0 && s.keyCount !== m.etcd!.keyCount) problems.push(`${s.keyCount} keys, manifest says ${m.etcd!.keyCount}`);
    if (s.namespacesWithoutObject.length)
      problems.push(`objects in namespaces that have no namespace object: ${s.namespacesWithoutObject.join(', ')}`);
    return {
      verifiedAt,
      ok: problems.length === 0,
      problems,
      revision: s.revision,
      keyCount: s.keyCount,
      byResource: s.byResource,
      byNamespace: s.byNamespace,
      namespaces: s.namespaces,
      durationMs: Date.now() - started,
    };
  } finally {
    await scratch.close();
  }
}
