import { errorMessage } from '../../shared/errors.js';
import type { Artifact, Manifest } from '../../shared/manifest.js';
import type { FileDigest } from '../../shared/streams.js';
import type { Repository } from './repository.js';
import { isSealed, readSealed, type AgeIdentity } from './seal.js';

/**
 * Rereads an artifact and compares it with its manifest entry: size, sha256, and for the etcd
 * snapshot its own integrity hash. A sealed one (compressed or encrypted by kbur): its stored bytes,
 * and, when it can be opened (not encrypted, or `identity` is one of its recipients), its plaintext
 * too (unless `payload: false`: then only that `identity` opens its age header). `problem` says what is wrong; `digest` is what was read, when the file could be read whole.
 */
export async function checkArtifact(
  repository: Repository,
  manifest: Manifest,
  a: Artifact,
  signal: AbortSignal,
  identity?: AgeIdentity,
  opts: { payload?: boolean } = {},
): Promise<{ digest?: FileDigest; plain?: FileDigest; problem?: string }> {
  if (isSealed(a)) {
    const { stored, plain, problem } = await readSealed(repository, manifest, a, identity, signal, opts);
    return { digest: stored, plain, problem };
  }
  let digest: FileDigest;
  try {
    digest = await repository.digestArtifact(manifest.cluster, manifest.id, a.path, { snapshot: a.kind === 'etcd-snapshot', signal });
  } catch (err) {
    return { problem: errorMessage(err) };
  }
  const problems = [
    ...(digest.size !== a.size ? [`size ${digest.size}, manifest says ${a.size}`] : []),
    ...(digest.sha256 !== a.sha256 ? [`sha256 ${digest.sha256}, manifest says ${a.sha256}`] : []),
  ];
  return problems.length ? { digest, problem: problems.join('; ') } : { digest };
}
