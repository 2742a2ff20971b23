import type { Readable, Writable } from 'node:stream';
import type { Manifest, Verification } from '../../shared/manifest.js';
import type { LockHolder } from './lock.js';
import type { FileDigest } from '../../shared/streams.js';

/** An artifact being written: it exists under its final name only after commit(). */
export interface ArtifactWriter {
  readonly stream: Writable;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/** Where one backup's files go while it runs. The manifest is written last, once, never replaced. */
export interface BackupWriter {
  readonly id: string;
  readonly location: string;
  artifact(relPath: string): Promise<ArtifactWriter>;
  /** Removes an artifact this backup wrote but will not list (a part of a failed dump). */
  discard(relPath: string): Promise<void>;
  writeManifest(manifest: Manifest): Promise<void>;
}

export interface BackupListing {
  id: string;
  /** Absent when the backup has no (readable) manifest: it is not complete. */
  manifest?: Manifest;
  problem?: string;
}

/**
 * A backup repository: a local directory (local.ts) or an S3-compatible bucket (s3.ts), with one layout:
 * <root>/<cluster>/backups/<id>/{manifest.json, etcd/snapshot.db, nodes/<node>/kubernetes.tar}.
 */
export interface Repository {
  readonly location: string;
  createBackup(cluster: string, id: string): Promise<BackupWriter>;
  listBackups(cluster: string): Promise<BackupListing[]>;
  readManifest(cluster: string, id: string): Promise<Manifest>;
  openArtifact(cluster: string, id: string, relPath: string): Promise<Readable>;
  /** Rereads an artifact whole: its size and sha256, and with `snapshot` etcd's own integrity hash (DATA_LOSS if it fails). */
  digestArtifact(cluster: string, id: string, relPath: string, opts: { snapshot: boolean; signal: AbortSignal }): Promise<FileDigest>;
  /**
   * The artifact as a file on this machine, for tools that take a file (etcdutl snapshot restore);
   * undefined where the repository is no filesystem (S3): read it with openArtifact instead.
   */
  localFile(cluster: string, id: string, relPath: string): string | undefined;
  /** Where an artifact lives (a path or an s3:// URL), for messages. */
  artifactLocation(cluster: string, id: string, relPath: string): string;
  writeVerification(cluster: string, id: string, verification: Verification): Promise<void>;
  readVerification(cluster: string, id: string): Promise<Verification | undefined>;
  /** <root>/<cluster>/restores/<restoreId>/journal.json, replaced atomically on every change. */
  writeJournal(cluster: string, restoreId: string, journal: string): Promise<void>;
  /** The journal's text, or undefined when there is none. */
  readJournal(cluster: string, restoreId: string): Promise<string | undefined>;
  /** Ids of every restore that has a folder under restores/. */
  listRestores(cluster: string): Promise<string[]>;

  /**
   * Deletes a backup set: manifest.json first (so a half-deleted set is never taken for a complete
   * one), then everything else in its folder. Only ever called under the repository lock.
   */
  deleteBackup(cluster: string, id: string): Promise<void>;
  /** Free and total bytes where the repository stores `cluster`, when the storage can say (not S3). */
  space(cluster: string): Promise<{ free: number; total: number } | undefined>;

  /**
   * The cluster's lock: one operation at a time. Taken whole in one step (local: an exclusive
   * create of the complete record; S3: a conditional put), never half-written. True when taken,
   * false when another holder has it (readLock says who).
   */
  tryLock(cluster: string, holder: LockHolder): Promise<boolean>;
  /** The current holder, or undefined when the lock is free. LOCK_STALE when its record is unreadable. */
  readLock(cluster: string): Promise<LockHolder | undefined>;
  /**
   * Extends the lease to `holder.expiresAt` if `holder.token` still holds the lock; false when it
   * does not any more. Never brings back a removed lock (local: only the file's mtime moves; S3: a
   * put conditional on the lock object's ETag).
   */
  renewLock(cluster: string, holder: LockHolder): Promise<boolean>;
  /**
   * Removes the lock if the holding named by `token` still has it, atomically against another
   * remover (two breakers of one stale lock: one wins); false when it is gone or someone else's.
   * `token` undefined removes whatever is there, even an unreadable record (`kbur unlock --force`).
   */
  removeLock(cluster: string, token: string | undefined): Promise<boolean>;
}
