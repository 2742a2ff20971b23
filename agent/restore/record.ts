import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkId } from '../../shared/manifest.js';
import { writeFileAtomic } from '../../shared/streams.js';

/**
 * What one restore changed on this node, kept in the agent's state dir so that a resumed restore
 * does not redo a step and a rollback knows exactly what to put back. Written atomically after
 * every change, before the step reports success.
 */
export interface RestoreRecord {
  restoreId: string;
  staged?: { path: string; size: number; sha256: string };
  /** Manifests moved out of manifests/: file name -> where it is held. */
  held: { name: string; from: string; to: string }[];
  /** systemd mode: the unit was stopped by this restore. */
  unitStopped?: boolean;
  /** The data dir as it was, moved aside; absent when there was none (a wiped disk). */
  dataDirAside?: string;
  /** True once the restored data dir is in place. */
  restored?: boolean;
  rolledBack?: boolean;
  /** --with-kubernetes-dir: files (relative to the kubernetes dir) the archive replaced or added. */
  kubernetes?: { aside: string; replaced: string[]; added: string[]; addedDirs?: string[]; done: boolean };
}

export function assertRestoreId(id: string): void {
  checkId(id, 'restore');
}

export function restoreDir(stateDir: string, restoreId: string): string {
  assertRestoreId(restoreId);
  return join(stateDir, 'restores', restoreId);
}

export async function readRecord(stateDir: string, restoreId: string): Promise<RestoreRecord> {
  try {
    return JSON.parse(await readFile(join(restoreDir(stateDir, restoreId), 'record.json'), 'utf8')) as RestoreRecord;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { restoreId, held: [] };
    throw err;
  }
}

export async function writeRecord(stateDir: string, record: RestoreRecord): Promise<void> {
  const dir = restoreDir(stateDir, record.restoreId);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(join(dir, 'record.json'), JSON.stringify(record, null, 2) + '\n');
}
