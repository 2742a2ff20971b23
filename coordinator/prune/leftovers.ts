import { KburError } from '../../shared/errors.js';
import type { Repository } from '../repository/repository.js';

export interface Leftover {
  id: string;
  /** Why it is sure that backup is dead. */
  reason: string;
}

/** When a backup started, from its id (20261125T234512Z-07b3 is 23:45:12.123 UTC). */
export function backupIdTime(id: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-([0-9a-f]{3})/.exec(id);
  if (!m) throw new KburError('INVALID_ARGUMENT', `"${id}" is not a backup id`);
  const [, y, mo, d, h, mi, s, ms] = m;
  return new Date(Date.UTC(+y!, +mo! - 1, +d!, +h!, +mi!, +s!, parseInt(ms!, 16)));
}

/**
 * Backup folders an interrupted backup left: no manifest (never complete) and started before
 * `lockedAt`, the moment the caller took the repository lock. Every backup runs under the lock,
 * so one that started earlier and still has no manifest is dead: were it running, it would hold
 * the lock. A folder whose manifest is there but unreadable is not a leftover (it is looked into).
 */
export async function findLeftovers(repository: Repository, cluster: string, lockedAt: Date): Promise<Leftover[]> {
  const found: Leftover[] = [];
  for (const b of await repository.listBackups(cluster)) {
    if (b.manifest) continue;
    const started = backupIdTime(b.id);
    if (started >= lockedAt) continue;
    const noManifest = await repository.readManifest(cluster, b.id).then(
      () => false,
      (err: unknown) => KburError.hasCode(err, 'FAILED_PRECONDITION'),
    );
    if (!noManifest) continue;
    found.push({
      id: b.id,
      reason: `left by a backup interrupted at some point after ${started.toISOString()}: no manifest, started before this operation took the repository lock`,
    });
  }
  return found;
}

/** Removes what interrupted backups left; only under the repository lock. */
export async function removeLeftovers(repository: Repository, cluster: string, lockedAt: Date): Promise<Leftover[]> {
  const found = await findLeftovers(repository, cluster, lockedAt);
  for (const l of found) await repository.deleteBackup(cluster, l.id);
  return found;
}
