import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { Parser, type ReadEntry } from 'tar';
import { errorMessage } from '../../shared/errors.js';
import type { Artifact, Manifest } from '../../shared/manifest.js';
import type { Repository } from '../repository/repository.js';

/** Where kubeadm keeps etcd's static pod manifest, relative to /etc/kubernetes. */
export const ARCHIVED_ETCD_MANIFEST = 'manifests/etcd.yaml';
/** A manifest is a few KiB; anything far larger is not one. */
const MAX_MANIFEST_BYTES = 1 << 20;

export interface NodeArchiveRead {
  /** What is wrong with the archive (size, sha256, not a tar); absent when it is whole. */
  problem?: string;
  /** The text of manifests/etcd.yaml in it, when it has one. */
  etcdManifest?: string;
  /** Entries in the archive. */
  entries: number;
}

/**
 * Reads a node's archive once from the repository: checks its size and sha256 against the
 * manifest and, on the way, keeps the etcd static pod manifest it holds (the member's settings of
 * a node that has lost its own). Streamed: only that one small file is kept.
 */
export async function readNodeArchive(
  repository: Repository,
  manifest: Manifest,
  a: Artifact,
  signal: AbortSignal,
): Promise<NodeArchiveRead> {
  const hash = createHash('sha256');
  let size = 0;
  let entries = 0;
  let etcdManifest: string | undefined;
  const parser = new Parser({
    onReadEntry: (entry: ReadEntry) => {
      entries++;
      if (entry.path.replace(/^\.\//, '') !== ARCHIVED_ETCD_MANIFEST || entry.type !== 'File' || entry.size > MAX_MANIFEST_BYTES) {
        entry.resume();
        return;
      }
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => (etcdManifest = Buffer.concat(chunks).toString('utf8')));
    },
  });
  let tarProblem: string | undefined;
  parser.on('warn', (_code: string, message: string | Error) => (tarProblem ??= `not a whole tar archive: ${errorMessage(message)}`));
  try {
    const stream = await repository.openArtifact(manifest.cluster, manifest.id, a.path);
    const ended = once(parser, 'end');
    for await (const chunk of stream) {
      signal.throwIfAborted();
      const buf = chunk as Buffer;
      hash.update(buf);
      size += buf.length;
      if (!parser.write(buf)) await once(parser, 'drain');
    }
    parser.end();
    await ended;
  } catch (err) {
    return { problem: errorMessage(err), entries };
  }
  const sha256 = hash.digest('hex');
  const problems = [
    ...(size !== a.size ? [`size ${size}, manifest says ${a.size}`] : []),
    ...(sha256 !== a.sha256 ? [`sha256 ${sha256}, manifest says ${a.sha256}`] : []),
    ...(tarProblem ? [tarProblem] : []),
  ];
  return { ...(problems.length ? { problem: problems.join('; ') } : {}), etcdManifest, entries };
}
