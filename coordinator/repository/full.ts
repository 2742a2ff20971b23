import { KburError } from '../../shared/errors.js';

/** ENOSPC or EDQUOT anywhere in an error's cause chain, or an error already saying "repository full". */
export function isRepositoryFull(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (KburError.hasCode(e, 'RESOURCE_EXHAUSTED')) return true;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') return true;
  }
  return false;
}

const MIB = 1 << 20;
const mib = (n: number): string => `${(n / MIB).toFixed(1)} MiB`;

/**
 * "repository full" with the figures an operator needs to make room: what is free of how much,
 * what this operation had written, and what it needed when that is known.
 */
export function repositoryFullError(
  err: unknown,
  f: { location: string; space?: { free: number; total: number }; written?: number; needed?: number },
): KburError {
  let quota = false;
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    quota ||= (e as NodeJS.ErrnoException).code === 'EDQUOT';
  }
  const errno = quota ? 'EDQUOT: quota exceeded' : 'ENOSPC';
  const figures = [
    f.space ? `${mib(f.space.free)} free of ${mib(f.space.total)}` : undefined,
    f.written !== undefined ? `this backup had written ${mib(f.written)}` : undefined,
    f.needed ? `it needs at least ${mib(f.needed)} (the etcd database size)` : undefined,
  ].filter(Boolean);
  return new KburError('RESOURCE_EXHAUSTED', `repository full (${errno}) at ${f.location}: ${figures.join('; ')}`, {
    cause: err,
    hint: 'make room in the repository (kbur prune, or a larger disk or quota), then run kbur backup again',
  });
}
