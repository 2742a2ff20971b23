import { join } from 'node:path';

// The names of what a restore moves aside, holds, unpacks or puts back: the agent gives them, the
// coordinator's plans and messages tell the operator where to look. Each carries the restore id.

/** Where the old data dir goes: beside it, named after the restore, never deleted by kbur. */
export function asideDataDir(dataDir: string, restoreId: string): string {
  return `${dataDir}.kbur-${restoreId}`;
}

/** Where a rollback moves the restored data dir, beside the old one's aside name. */
export function restoredDataDir(dataDir: string, restoreId: string): string {
  return `${asideDataDir(dataDir, restoreId)}-restored`;
}

/** Where the snapshot is restored to before it takes the data dir's place. */
export function workDataDir(dataDir: string, restoreId: string): string {
  return `${dataDir}.kbur-restore-${restoreId}`;
}

/** Held by kbur in the middle of a restore: the manifest then sits in a kbur-held-<id> folder beside manifests/. */
const HELD_PREFIX = 'kbur-held-';

/**
 * kbur's own folders inside the kubernetes dir, one per restore: manifests it holds, files it
 * replaced, an archive being unpacked, what a rollback took out. Inside it, so that moves are
 * renames and the agent's unit needs only that dir writable. Never archived, never restored.
 */
export type KburDirKind = 'held' | 'aside' | 'unpack' | 'restored';
export const KBUR_DIR = /^kbur-(held|aside|unpack|restored)-/;
export function kburDir(kubernetesDir: string, kind: KburDirKind, restoreId: string): string {
  return join(kubernetesDir, `kbur-${kind}-${restoreId}`);
}

/** The restore id of a kbur-held-<id> folder; undefined for any other name. */
export function heldRestoreId(entry: string): string | undefined {
  return entry.startsWith(HELD_PREFIX) ? entry.slice(HELD_PREFIX.length) : undefined;
}
