import type { Readable, Writable } from 'node:stream';
import type { Manifest, Verification } from '../../shared/manifest.js';
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
}
