import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { checkArchive } from '../../shared/archive-check.js';
import { KburError, errorMessage } from '../../shared/errors.js';
import { MANIFEST_SCHEMA_VERSION, newBackupId, type Artifact, type EtcdMemberInfo, type Manifest } from '../../shared/manifest.js';
import { DigestTransform, digestFile, type FileDigest } from '../../shared/streams.js';
import { KBUR_VERSION } from '../../shared/version.js';
import type { CoordinatorConfig } from '../config.js';
import type { BackupWriter, Repository } from '../repository/repository.js';
import { createSealed, type SealRecord, type SealSettings } from '../repository/seal.js';
import { readSnapshotMembers } from '../scratch/bbolt.js';
import { ScratchEtcd, cancellable } from '../scratch/etcd.js';
import { SNAPSHOT_PATH, nodeArchivePath } from './run.js';

/** The etcd header of a snapshot taken by another tool: what a scratch etcd and the file itself tell. */
export interface ImportedSnapshot {
  digest: FileDigest;
  revision: number;
  keyCount: number;
  members: EtcdMemberInfo[];
  clusterVersion: string;
}

/**
 * Reads a plain `etcdctl snapshot save` file as a backup would have recorded it: etcd's own hash
 * checked, the member list from its database, revision and key count from a scratch etcd.
 */
export async function readForeignSnapshot(file: string, config: CoordinatorConfig, signal: AbortSignal): Promise<ImportedSnapshot> {
  await stat(file).catch((err: unknown) => {
    throw new KburError('INVALID_ARGUMENT', `cannot read ${file}: ${errorMessage(err)}`, { cause: err });
  });
  // etcd's own hash is checked beside the restore into the scratch etcd, which starts only once it held.
  const digest = digestFile(file, { snapshot: true, signal }).catch((err: unknown) => {
    throw KburError.is(err) && err.code === 'DATA_LOSS'
      ? new KburError('DATA_LOSS', `${file}: ${err.message}`, {
          cause: err,
          hint: "import takes a whole file written by etcdctl snapshot save (or etcd's Snapshot API)",
        })
      : err;
  });
  const scratch = await ScratchEtcd.start({
    snapshot: file,
    etcdBinary: config.scratch.etcd,
    restoreTool: config.scratch.restoreTool,
    dir: config.scratch.dir,
    check: digest,
    signal,
  });
  try {
    const { members, clusterVersion } = await readSnapshotMembers(file);
    // The same count a backup records: every key of the keyspace at the snapshot's revision.
    const all = await cancellable(signal, () =>
      scratch.client.kv.range({ key: Buffer.from([0]), range_end: Buffer.from([0]), count_only: true }),
    );
    return { digest: await digest, revision: Number(all.header.revision), keyCount: Number(all.count), members, clusterVersion };
  } finally {
    await scratch.close();
  }
}

/**
 * Turns a snapshot (and, optionally, nodes' /etc/kubernetes archives) into a Completed backup set:
 * every file is checked first, then copied into the repository with its sha256 rechecked on the
 * way, and the manifest written last.
 */
export async function importSnapshot(opts: {
  repository: Repository;
  config: CoordinatorConfig;
  file: string;
  archives: { node: string; file: string }[];
  /** Compression and encryption, as kbur.yaml sets them for backups. */
  seal: SealSettings;
  signal: AbortSignal;
}): Promise<Manifest> {
  const startedAt = new Date();
  const archives: { node: string; file: string; entries: number; digest: FileDigest }[] = [];
  for (const a of opts.archives) {
    try {
      const { entries } = await checkArchive(a.file);
      archives.push({ ...a, entries, digest: await digestFile(a.file, { signal: opts.signal }) });
    } catch (err) {
      throw new KburError('INVALID_ARGUMENT', `--kubernetes-dir-archive ${a.node}=${a.file}: ${errorMessage(err)}`, { cause: err });
    }
  }
  const snap = await readForeignSnapshot(opts.file, opts.config, opts.signal);
  const id = newBackupId(startedAt);
  const writer = await opts.repository.createBackup(opts.config.cluster, id);
  const artifacts: Artifact[] = [
    { kind: 'etcd-snapshot', node: '', ...(await copyChecked(writer, opts.seal, opts.file, SNAPSHOT_PATH, snap.digest, true)) },
  ];
  for (const a of archives) {
    const sealed = await copyChecked(writer, opts.seal, a.file, nodeArchivePath(a.node), a.digest, false);
    artifacts.push({ kind: 'kubernetes-dir', node: a.node, ...sealed, fileCount: a.entries });
  }
  const manifest: Manifest = {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    kburVersion: KBUR_VERSION,
    cluster: opts.config.cluster,
    id,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    phase: 'Completed',
    failures: [],
    etcd: {
      // Which member it came from is not in the file: the source is named instead.
      node: '',
      memberId: '',
      memberName: '',
      endpoint: `imported from ${resolve(opts.file)}`,
      version: snap.clusterVersion,
      clusterId: '',
      revision: snap.revision,
      keyCount: snap.keyCount,
      dbSize: snap.digest.size - 32,
      members: snap.members,
      fallbacks: [],
    },
    artifacts,
  };
  await writer.writeManifest(manifest);
  return manifest;
}

/** Copies a file into the backup set, sealed as configured; it must still be what was checked (size and sha256). */
async function copyChecked(
  writer: BackupWriter,
  seal: SealSettings,
  file: string,
  path: string,
  want: FileDigest,
  snapshot: boolean,
): Promise<SealRecord> {
  const out = await createSealed(writer, path, seal);
  const digest = new DigestTransform({ snapshot });
  try {
    // Not ended here: commit() ends it and waits for the sealing behind it.
    await pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), digest, out.stream, { end: false });
    const got = { size: digest.digest.size, sha256: digest.digest.sha256() };
    if (got.size !== want.size || got.sha256 !== want.sha256) {
      throw new KburError('DATA_LOSS', `${basename(file)} changed while it was imported (sha256 ${got.sha256}, checked ${want.sha256})`, {
        hint: 'import a file nothing writes to',
      });
    }
    await out.commit();
    return out.record(got);
  } catch (err) {
    await out.abort();
    throw err;
  }
}
