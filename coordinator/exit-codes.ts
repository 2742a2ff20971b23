import { KburError, asKburError } from '../shared/errors.js';

/** kbur's exit codes: named, unique, stable. Scripts may rely on them; README lists them. */
export const ExitCode = {
  OK: 0,
  INTERNAL: 1,
  BAD_CONFIG_OR_USAGE: 2,
  BACKUP_PARTIALLY_FAILED: 3,
  BACKUP_FAILED: 4,
  VERIFY_FAILED: 5,
  NOT_FOUND: 6,
  UNAVAILABLE: 7,
  PERMISSION_DENIED: 8,
  FAILED_PRECONDITION: 9,
  CANCELLED: 10,
  LOCKED: 11,
  LOCK_STALE: 12,
  REPOSITORY_FULL: 13,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The one mapping from an error to an exit code. */
export function exitCodeFor(err: unknown): ExitCode {
  const e: KburError = asKburError(err);
  switch (e.code) {
    case 'INVALID_CONFIG':
    case 'INVALID_ARGUMENT':
      return ExitCode.BAD_CONFIG_OR_USAGE;
    case 'NOT_FOUND':
      return ExitCode.NOT_FOUND;
    case 'UNAVAILABLE':
      return ExitCode.UNAVAILABLE;
    case 'PERMISSION_DENIED':
      return ExitCode.PERMISSION_DENIED;
    case 'FAILED_PRECONDITION':
      return ExitCode.FAILED_PRECONDITION;
    case 'DATA_LOSS':
      return ExitCode.VERIFY_FAILED;
    case 'CANCELLED':
      return ExitCode.CANCELLED;
    case 'INTERNAL':
      return ExitCode.INTERNAL;
    case 'LOCKED':
      return ExitCode.LOCKED;
    case 'LOCK_STALE':
      return ExitCode.LOCK_STALE;
    case 'RESOURCE_EXHAUSTED':
      return ExitCode.REPOSITORY_FULL;
  }
}
