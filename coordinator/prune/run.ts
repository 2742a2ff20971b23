import { KburError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { RetentionPolicy } from '../config.js';
import type { Repository } from '../repository/repository.js';
import { Journal } from '../restore/journal.js';
import { findLeftovers, type Leftover } from './leftovers.js';
import { selectRetention, type RetentionCandidate, type RetentionDecision } from './retention.js';

export interface PruneResult {
  dryRun: boolean;
  kept: RetentionDecision[];
  deleted: RetentionDecision[];
  /** Folders of interrupted backups, removed (or, in a dry run, that would be). */
  leftovers: Leftover[];
  /** Backup folders without a readable manifest that are not sure leftovers (a damaged manifest): left alone. */
  untouched: { id: string; reason: string }[];
}

/**
 * Applies the retention policy to the cluster's backups; only under the repository lock taken at
 * `lockedAt`. Deletes nothing with `dryRun`. Only folders with a backup id for a name are ever
 * looked at: anything else in the repository is not a kbur backup set and stays.
 */
export async function prune(opts: {
  repository: Repository;
  cluster: string;
  policy: RetentionPolicy;
  dryRun: boolean;
  lockedAt: Date;
  log: Logger;
  signal: AbortSignal;
}): Promise<PruneResult> {
  const { repository, cluster } = opts;
  const restoresOf = await restoresByBackup(repository, cluster);
  const candidates: RetentionCandidate[] = [];
  const listing = await repository.listBackups(cluster);
  for (const b of listing) {
    if (!b.manifest) continue;
    const verification = b.manifest.phase === 'Completed' ? await repository.readVerification(cluster, b.id) : undefined;
    candidates.push({
      id: b.id,
      startedAt: new Date(b.manifest.startedAt),
      phase: b.manifest.phase,
      verified: verification?.ok === true,
      restores: restoresOf.get(b.id) ?? [],
    });
  }
  const decisions = selectRetention(candidates, opts.policy);
  const leftovers = await findLeftovers(repository, cluster, opts.lockedAt);
  const untouched = listing
    .filter((b) => !b.manifest && !leftovers.some((l) => l.id === b.id))
    .map((b) => ({ id: b.id, reason: `left alone: ${b.problem ?? 'no manifest'}` }));
  const deleted = decisions.filter((d) => !d.keep);
  if (!opts.dryRun) {
    for (const id of [...deleted.map((d) => d.id), ...leftovers.map((l) => l.id)]) {
      opts.signal.throwIfAborted();
      await repository.deleteBackup(cluster, id);
      opts.log.info('backup set deleted', { backup: id });
    }
  }
  return { dryRun: opts.dryRun, kept: decisions.filter((d) => d.keep), deleted, leftovers, untouched };
}

/** backup id -> the restores whose journal names it. A journal that cannot be read stops prune: it might protect anything. */
async function restoresByBackup(repository: Repository, cluster: string): Promise<Map<string, string[]>> {
  const refs = new Map<string, string[]>();
  for (const restoreId of await repository.listRestores(cluster)) {
    let backupId: string;
    try {
      backupId = (await Journal.load(repository, cluster, restoreId)).data.backupId;
    } catch (err) {
      if (KburError.hasCode(err, 'NOT_FOUND')) continue; // a folder without a journal refers to nothing
      throw new KburError(
        'FAILED_PRECONDITION',
        `cannot read the journal of restore ${restoreId}: ${errorMessage(err)}; nothing was deleted`,
        {
          cause: err,
          hint: 'prune never deletes a backup a restore refers to, so it needs every journal: repair or move that restore folder away',
        },
      );
    }
    refs.set(backupId, [...(refs.get(backupId) ?? []), restoreId]);
  }
  return refs;
}
