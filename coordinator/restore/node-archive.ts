import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { Parser, type ReadEntry } from 'tar';
import { replaceAddresses } from '../../shared/addresses.js';
import { errorMessage } from '../../shared/errors.js';
import { byCodeUnits } from '../../shared/order.js';
import type { Artifact, Manifest } from '../../shared/manifest.js';
import type { Repository } from '../repository/repository.js';
import { openPlain, plainDigest, type AgeIdentity } from '../repository/seal.js';

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
  /** With `addresses`: files that name one of them, and certificates whose subjectAltName does. */
  naming: { files: string[]; certs: string[] };
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
  addresses: string[] = [],
  identity?: AgeIdentity,
): Promise<NodeArchiveRead> {
  const want = plainDigest(a);
  const hash = createHash('sha256');
  let size = 0;
  let entries = 0;
  let etcdManifest: string | undefined;
  // Only small files whose text says whether they name an old address (kbur restore --to).
  const texts = new Map<string, string>();
  const parser = new Parser({
    onReadEntry: (entry: ReadEntry) => {
      entries++;
      const path = entry.path.replace(/^\.\//, '');
      const wanted = path === ARCHIVED_ETCD_MANIFEST || addresses.length > 0;
      if (!wanted || entry.type !== 'File' || entry.size > MAX_MANIFEST_BYTES || (path.startsWith('pki/') && !path.endsWith('.crt'))) {
        entry.resume();
        return;
      }
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (path === ARCHIVED_ETCD_MANIFEST) etcdManifest = text;
        if (addresses.length) texts.set(path, text);
      });
    },
  });
  let tarProblem: string | undefined;
  parser.on('warn', (_code: string, message: string | Error) => (tarProblem ??= `not a whole tar archive: ${errorMessage(message)}`));
  try {
    // Decrypted and decompressed when kbur sealed it; its stored bytes are checked on the way.
    const stream = await openPlain(repository, manifest, a, identity);
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
    return { problem: errorMessage(err), entries, naming: { files: [], certs: [] } };
  }
  const sha256 = hash.digest('hex');
  const problems = [
    ...(size !== want.size ? [`size ${size}, manifest says ${want.size}`] : []),
    ...(sha256 !== want.sha256 ? [`sha256 ${sha256}, manifest says ${want.sha256}`] : []),
    ...(tarProblem ? [tarProblem] : []),
  ];
  const naming = await whatNames(texts, addresses).catch((err: unknown) => {
    problems.push(`cannot read its certificates: ${errorMessage(err)}`);
    return { files: [], certs: [] };
  });
  return { ...(problems.length ? { problem: problems.join('; ') } : {}), etcdManifest, entries, naming };
}

async function whatNames(texts: Map<string, string>, addresses: string[]): Promise<{ files: string[]; certs: string[] }> {
  if (addresses.length === 0) return { files: [], certs: [] };
  // Loaded only for --to: every other kbur command starts without the X.509 library.
  const { ipSans, isCa } = await import('../../shared/x509.js');
  const old = new Map(addresses.map((x) => [x, x]));
  const files: string[] = [];
  const certs: string[] = [];
  for (const [path, text] of [...texts].sort(([a], [b]) => byCodeUnits(a, b))) {
    if (path.startsWith('pki/')) {
      if (!isCa(text) && ipSans(text).some((ip) => old.has(ip))) certs.push(path);
    } else {
      const found = new Set<string>();
      replaceAddresses(text, old, found);
      if (found.size) files.push(path);
    }
  }
  return { files, certs };
}
